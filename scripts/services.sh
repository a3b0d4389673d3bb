#!/usr/bin/env bash
# PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) for the deployment tests (Debian 12, root).
#
#   scripts/services.sh ensure     start whichever does not answer (installed with apt if missing)
#   scripts/services.sh available  exit 0 if both answer, 1 otherwise (quiet)
#
# On the project's machines both run as services already; this only starts one that stopped.
# A PostgreSQL installed here is set up the way those machines have it: trust authentication
# for loopback connections only. See docs/DEPLOYMENT.md (Tests).
set -euo pipefail

WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-30}
APT_LOG=/var/log/plugin-platform-apt.log

log() { echo "services: $*" >&2; }

# Bash's /dev/tcp: no client tools needed to ask.
postgres_answers() { timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432' 2>/dev/null; }
redis_answers() {
  # shellcheck disable=SC2016  # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379 && printf "PING\r\n" >&3 && read -r reply <&3 && [[ $reply == +PONG* ]]' 2>/dev/null
}

wait_for() {
  local name=$1 check=$2 deadline=$((SECONDS + WAIT_SECONDS))
  until $check; do
    if ((SECONDS >= deadline)); then
      log "$name did not answer within ${WAIT_SECONDS}s"
      return 1
    fi
    sleep 0.5
  done
}

# Debian's clusters are /etc/postgresql/VERSION/main; the newest one is ours.
# shellcheck disable=SC2012  # version numbers only
pg_version() { ls /etc/postgresql | sort -V | tail -n 1; }

apt_install() {
  log "installing $* with apt (log: $APT_LOG)"
  apt-get update -qq >>"$APT_LOG" 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$APT_LOG" 2>&1
}

ensure_postgres() {
  postgres_answers && return 0
  if [[ ! -d /etc/postgresql ]] || [[ -z "$(ls /etc/postgresql)" ]]; then
    apt_install postgresql
    local hba
    hba=/etc/postgresql/$(pg_version)/main/pg_hba.conf
    # First match wins: loopback TCP connections are trusted, as on the project's machines.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  local version
  version=$(pg_version)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL postgres_answers
}

ensure_redis() {
  redis_answers && return 0
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for Redis redis_answers
}

case "${1:-}" in
  ensure)
    ensure_postgres
    ensure_redis
    ;;
  available)
    postgres_answers && redis_answers
    ;;
  *)
    echo "usage: $0 ensure|available" >&2
    exit 2
    ;;
esac
