#!/usr/bin/env bash
# Make a Docker Engine available on a machine with no container registry (Debian 12, root).
#
#   scripts/docker-engine.sh ensure     install docker.io if needed, start dockerd, wait for it
#   scripts/docker-engine.sh available  exit 0 if an engine answers, 1 otherwise (quiet)
#
# Why bridge "none": workers need no network (PPP runs over a Unix socket) and nothing here may
# send traffic to a private-range address such as docker0's 172.17.0.0/16.
# See docs/DOCKER.md and /work/shared/design/ENVIRONMENT.md.
set -euo pipefail

DAEMON_JSON=/etc/docker/daemon.json
LOG=/var/log/dockerd.log
WAIT_SECONDS=${DOCKER_WAIT_SECONDS:-60}
LOCK=/run/lock/plugin-platform-docker-engine.lock
APT_LOG=/var/log/plugin-platform-apt.log

log() { echo "docker-engine: $*" >&2; }

# `docker info` bounded in time: a wedged daemon must not hang CI.
answers() { timeout "${1:-5}" docker info >/dev/null 2>&1; }

engine_version() { docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null || echo unknown; }

wait_for_engine() {
  local deadline=$((SECONDS + WAIT_SECONDS))
  until answers 2; do
    if ((SECONDS >= deadline)); then
      log "dockerd did not answer within ${WAIT_SECONDS}s; last lines of $LOG:"
      tail -n 30 "$LOG" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

ensure() {
  if answers 5; then
    log "engine already running: $(engine_version)"
    return 0
  fi
  # Two callers (make + CI step) must not both install or start a daemon.
  mkdir -p "$(dirname "$LOCK")"
  exec 9>"$LOCK"
  flock 9
  if answers 5; then
    log "engine started by another caller: $(engine_version)"
    return 0
  fi

  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io with apt (log: $APT_LOG)"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io; } >>"$APT_LOG" 2>&1; then
      log "apt-get failed; last lines of $APT_LOG:"
      tail -n 30 "$APT_LOG" >&2
      return 1
    fi
  fi

  if [[ ! -e $DAEMON_JSON ]]; then
    log "writing $DAEMON_JSON (no bridge network, no iptables)"
    mkdir -p "$(dirname "$DAEMON_JSON")"
    printf '{"bridge": "none", "iptables": false}\n' >"$DAEMON_JSON"
  elif ! grep -q '"bridge": *"none"' "$DAEMON_JSON"; then
    log "warning: $DAEMON_JSON exists without \"bridge\": \"none\"; leaving it as is"
  fi

  # A daemon that is starting (or stuck) must not get a sibling: a second dockerd with
  # bridge none would delete the first one's docker0.
  if pgrep -x dockerd >/dev/null; then
    log "dockerd process already present; waiting for it instead of starting another"
  else
    log "starting dockerd (log: $LOG)"
    # setsid: the daemon must outlive this script and the CI step's process group.
    setsid dockerd >>"$LOG" 2>&1 </dev/null &
  fi
  wait_for_engine
  log "engine ready: $(engine_version)"
}

case "${1:-}" in
  ensure) ensure ;;
  available) answers 5 ;;
  *)
    echo "usage: $0 ensure|available" >&2
    exit 2
    ;;
esac
