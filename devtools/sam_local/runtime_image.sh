#!/usr/bin/env bash
# Builds, once, a stand-in for public.ecr.aws/lambda/python:3.12 and prints its name.
#
# `make test-sam-local` passes it to `sam local invoke --invoke-image ... --skip-pull-image`
# because no image registry is reachable from this project's machines. A user's own
# `sam local invoke` never sees it and pulls the real image.
#
# It holds what SAM CLI's runtime emulator needs from a Lambda Python base image: a Python 3.12
# (the one given, copied at the path it was built for, with the shared libraries it links),
# awslambdaric and boto3 in /var/runtime, and /var/runtime/bootstrap running the handler.
# SAM CLI adds the emulator (shipped in its own package) on top.
#
# The name carries a hash of this script, the requirements and the Python, so a changed recipe
# builds a new image (and drops the older ones) and an unchanged one is reused from Docker's
# image store.
#
# Usage: runtime_image.sh PYTHON3.12
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python="${1:?usage: runtime_image.sh /path/to/python3.12}"
log() { echo "runtime image: $*" >&2; }

version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$version" != "3.12" ]; then
  log "needs Python 3.12 (the template's runtime); $python is $version"
  exit 1
fi
prefix="$("$python" -c 'import sys; print(sys.base_prefix)')"
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) log "unsupported machine $(uname -m)"; exit 1 ;;
esac
hash="$(
  { cat "$0" "$here/runtime-requirements.txt"; "$python" -VV; echo "$prefix"; } \
    | sha256sum | cut -c1-12
)"
# The hash is in the repository part, not only the tag: SAM CLI names the image it builds on top
# (with its runtime emulator) REPOSITORY:rapid-ARCH and reuses it while it exists, so a new
# recipe needs a new repository for SAM CLI to build afresh.
repo_prefix="auth0-user-log-forwarder/lambda-python-standin"
image="${repo_prefix}-${hash}:3.12-${arch}"

if docker image inspect "$image" >/dev/null 2>&1; then
  log "reusing $image"
  echo "$image"
  exit 0
fi

started=$SECONDS
if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap (Debian package)"
  apt-get install -y -qq debootstrap >/dev/null
fi
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # The machine's own Debian mirror: the only one it may reach.
  mirror="$(
    { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
      grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null || true; } \
      | awk '{print $2}' | grep -v security | head -n1 || true
  )"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

work="$(mktemp -d /var/tmp/lambda-standin.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/root"

log "debootstrap $codename from $mirror (a few minutes)"
# The shared libraries a CPython build links against (ssl, ffi, zlib, sqlite, bz2, lzma,
# readline, uuid, ncurses); minbase has libc and a shell.
debootstrap --variant=minbase \
  --include=libssl3,libffi8,zlib1g,libsqlite3-0,libbz2-1.0,liblzma5,libreadline8,libuuid1,libncursesw6,ca-certificates \
  "$codename" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }

log "Python $version from $prefix"
mkdir -p "$root$prefix"
tar -C "$prefix" \
  --exclude=./lib/python3.12/test --exclude=./lib/python3.12/idlelib \
  --exclude=./lib/python3.12/tkinter --exclude=./lib/python3.12/turtledemo \
  --exclude=./lib/python3.12/ensurepip --exclude=./lib/python3.12/site-packages \
  --exclude='./lib/python3.12/config-3.12-*/*.a' --exclude=./share \
  -c . | tar -C "$root$prefix" -x
mkdir -p "$root/var/lang/bin" "$root/var/task" "$root/var/runtime" "$root/opt" "$root$prefix/lib/python3.12/site-packages"
ln -s "$prefix/bin/python3.12" "$root/var/lang/bin/python3.12"
ln -s python3.12 "$root/var/lang/bin/python3"
ln -s python3.12 "$root/var/lang/bin/python"

log "awslambdaric and boto3 into /var/runtime"
PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --target "$root/var/runtime" -r "$here/runtime-requirements.txt" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
"$python" -c "import sys; sys.path.insert(0, '$root/var/runtime'); import awslambdaric, boto3" \
  || { log "awslambdaric or boto3 did not install"; exit 1; }

cat >"$root/var/runtime/bootstrap" <<'BOOTSTRAP'
#!/bin/sh
# Started by the runtime emulator with the handler in _HANDLER, as in the Lambda base image.
cd "${LAMBDA_TASK_ROOT:-/var/task}"
export PYTHONPATH="${LAMBDA_TASK_ROOT:-/var/task}:/opt/python:/var/runtime${PYTHONPATH:+:$PYTHONPATH}"
exec /var/lang/bin/python3.12 -m awslambdaric "$_HANDLER"
BOOTSTRAP
chmod 755 "$root/var/runtime/bootstrap"

# What the image does not need: documentation, locales, package caches.
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" \
  "$root/usr/share/locale" "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*

log "importing into Docker as $image"
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV TZ=:UTC' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task' \
  --change 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin' \
  --change 'WORKDIR /var/task' \
  --change 'ENTRYPOINT ["/var/runtime/bootstrap"]' \
  --message "stand-in for public.ecr.aws/lambda/python:3.12 (auth0-user-log-forwarder tests)" \
  - "$image" >/dev/null
# Older stand-ins, and the images SAM CLI built on them, are no longer used.
docker images --format '{{.Repository}}:{{.Tag}}' \
  | grep -E "^${repo_prefix}(-[0-9a-f]+)?:" | grep -v "^${repo_prefix}-${hash}:" \
  | xargs -r docker rmi >/dev/null 2>&1 || true
log "built $image in $((SECONDS - started)) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
echo "$image"
