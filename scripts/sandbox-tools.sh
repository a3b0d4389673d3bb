#!/usr/bin/env bash
# The process backend's worker sandbox (docs/SECURITY.md): Debian's bubblewrap, libseccomp and
# util-linux's setpriv.
#
#   scripts/sandbox-tools.sh ensure   install what is missing with apt (as root; else it says what to install)
#
# Without them the supervisor still runs, and says at start and in GET /api/v1/health that its
# workers are not sandboxed (WORKER_SANDBOX=auto), or refuses to start workers (required).
set -euo pipefail

PACKAGES=(bubblewrap libseccomp2 util-linux)
APT_LOG=/var/log/plugin-platform-apt.log

say() { echo "sandbox-tools: $*" >&2; }

missing=()
for package in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$package")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $EUID -ne 0 ]]; then
    say "not root: install ${missing[*]} with apt-get for the worker sandbox (workers run unsandboxed meanwhile)"
    exit 0
fi
say "installing ${missing[*]} with apt (log: $APT_LOG)"
# Another apt run (a colleague's build, unattended upgrades) may hold the lock: wait for it.
apt-get -o DPkg::Lock::Timeout=600 update -qq >>"$APT_LOG" 2>&1
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >>"$APT_LOG" 2>&1
