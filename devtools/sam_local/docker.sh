#!/usr/bin/env bash
# A Docker daemon for `make test-sam-local`.
#
#   docker.sh up     make sure a daemon answers: reuse a running one; otherwise install Debian's
#                    docker.io if dockerd is missing, and start dockerd (vfs storage driver:
#                    overlay is not available on this project's machines)
#   docker.sh down   stop the dockerd that `up` started, and only that one (by its pid)
#
# State (pid, log) lives in $SAM_LOCAL_STATE (default .sam-local/, ignored by git).
set -euo pipefail

state="${SAM_LOCAL_STATE:-.sam-local}"
pidfile="$state/dockerd.pid"
log() { echo "docker: $*" >&2; }

up() {
  mkdir -p "$state"
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    log "reusing the running daemon ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      log "no Docker daemon answers and dockerd is not installed; install Docker and start it"
      return 1
    fi
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq docker.io >/dev/null
  fi
  log "starting dockerd (storage driver ${DOCKERD_STORAGE_DRIVER:-vfs}), log in $state/dockerd.log"
  dockerd --storage-driver="${DOCKERD_STORAGE_DRIVER:-vfs}" >"$state/dockerd.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then
      log "dockerd $(docker version -f '{{.Server.Version}}') is up (pid $(cat "$pidfile"))"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      break
    fi
    sleep 0.5
  done
  log "dockerd did not come up; the end of its log:"
  tail -n 20 "$state/dockerd.log" >&2
  return 1
}

down() {
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  rm -f "$pidfile"
  kill -0 "$pid" 2>/dev/null || return 0
  log "stopping the dockerd this test started (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  log "dockerd (pid $pid) did not stop in 30 s"
  return 1
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
