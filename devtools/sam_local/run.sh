#!/usr/bin/env bash
# `make test-sam-local`: Docker, the stand-in runtime image, then check.py (sam build, the local
# stack, five `sam local invoke`s, the checks). Stops the dockerd it started and removes the
# containers it left, whatever the outcome.
#
# Needs: PYTHON312 (a python3.12), SAM (the sam executable); the Makefile passes both.
set -euo pipefail
cd "$(dirname "$0")/../.."

python312="${PYTHON312:?set PYTHON312 to a python3.12 (the template runtime)}"
sam="${SAM:?set SAM to the sam executable}"
export SAM_LOCAL_STATE="${SAM_LOCAL_STATE:-.sam-local}"
mkdir -p "$SAM_LOCAL_STATE"
started=$SECONDS

bash devtools/sam_local/docker.sh up
containers_before="$SAM_LOCAL_STATE/containers-before"
docker ps -aq --no-trunc | sort >"$containers_before"

cleanup() {
  status=$?
  # Containers this run created and did not remove (SAM CLI removes its own when it can).
  leftovers="$(docker ps -aq --no-trunc 2>/dev/null | sort | comm -13 "$containers_before" - || true)"
  if [ -n "$leftovers" ]; then
    echo "removing $(echo "$leftovers" | wc -l) leftover container(s)" >&2
    echo "$leftovers" | xargs docker rm -f >/dev/null 2>&1 || true
  fi
  if [ "${KEEP_DOCKERD:-0}" != 1 ]; then
    bash devtools/sam_local/docker.sh down || status=1
  fi
  echo "make test-sam-local: $((SECONDS - started)) s wall time in all (exit $status)"
  exit "$status"
}
trap cleanup EXIT

image_started=$SECONDS
image="$(bash devtools/sam_local/runtime_image.sh "$python312")"
echo "stand-in runtime image ready in $((SECONDS - image_started)) s: $image"

.venv/bin/python -m devtools.sam_local.check \
  --sam "$sam" --invoke-image "$image" --python312 "$python312" \
  --state-dir "$SAM_LOCAL_STATE"
