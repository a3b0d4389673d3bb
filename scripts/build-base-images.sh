#!/usr/bin/env bash
# Build the local worker base images without any container registry (Debian 12, root):
#
#   plugin-platform/python-base:local  Debian bookworm minbase + python3 + PyPI grpcio/protobuf
#   plugin-platform/java-base:local    Debian bookworm minbase + JRE 17 + Debian's grpc-java jars
#   plugin-platform/node-base:local    Debian bookworm minbase + Debian's Node.js
#
#   scripts/build-base-images.sh [python|java|node|all]     (default: all)
#
# Each image is built only when missing; `docker image rm` it to force a rebuild.
# Debian's python3-grpcio/python3-protobuf are too old for our generated code, so the Python
# image gets the PyPI wheels pinned in requirements.txt (host and images must match).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${PLUGIN_PLATFORM_CACHE:-/var/cache/plugin-platform}
APT_LOG=/var/log/plugin-platform-apt.log
PYTHON_IMAGE=plugin-platform/python-base:local
JAVA_IMAGE=plugin-platform/java-base:local
NODE_IMAGE=plugin-platform/node-base:local
# libguava-java: grpc-netty needs Guava at run time, and libgrpc-java does not depend on it.
JAVA_PACKAGES=openjdk-17-jre-headless,libgrpc-java,libguava-java,libnetty-java,libperfmark-java,libprotobuf-java,libgoogle-gson-java
# Left out of the image: docs, man pages, translations.
TAR_EXCLUDES=(--exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/locale)

log() { echo "build-base-images: $*" >&2; }
die() { log "error: $*"; exit 1; }

TMP=$(mktemp -d /var/tmp/plugin-platform-base.XXXXXX)
cleanup() {
  # A failed debootstrap can leave /proc or /sys mounted inside the rootfs: unmount first,
  # and never let rm cross into another file system.
  findmnt -rno TARGET | grep -F "$TMP/" | sort -r | xargs -r umount -l || true
  rm -rf --one-file-system "$TMP"
}
trap cleanup EXIT

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }

# The version pinned as NAME==VERSION in requirements.txt.
pin() {
  local v
  v=$(sed -n "s/^$1==\([^ ;#]*\).*/\1/p" "$ROOT/requirements.txt" | head -n 1)
  [[ -n $v ]] || die "no '$1==<version>' pin in $ROOT/requirements.txt"
  echo "$v"
}

apt_install() {
  # A fresh machine has empty apt lists: update only when the install fails.
  log "installing $* with apt (log: $APT_LOG)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y "$@" || { apt-get update && apt-get install -y "$@"; }; } >>"$APT_LOG" 2>&1 ||
    { tail -n 30 "$APT_LOG" >&2; die "apt-get install $* failed"; }
}

# pip on the host only downloads wheels and unpacks them into the rootfs (--target).
PIP=()
find_pip() {
  if [[ -x $ROOT/.venv/bin/pip ]]; then PIP=("$ROOT/.venv/bin/pip")
  else
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    PIP=(python3 -m pip)
  fi
}

# debootstrap ROOTFS with the given extra packages; .debs are cached for the next build.
bootstrap() {
  local rootfs=$1 include=$2 started=$SECONDS blog=/var/log/plugin-platform-debootstrap-${1##*/}.log
  command -v debootstrap >/dev/null || apt_install debootstrap
  mkdir -p "$CACHE/debootstrap"
  log "debootstrap $SUITE minbase + $include (log: $blog)"
  debootstrap --variant=minbase --include="$include" --cache-dir="$CACHE/debootstrap" \
    "$SUITE" "$rootfs" "$MIRROR" >"$blog" 2>&1 ||
    { tail -n 30 "$blog" >&2; die "debootstrap failed"; }
  # apt indexes and caches are useless in an image that never runs apt.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*
  log "debootstrap done in $((SECONDS - started)) s"
}

# docker import the rootfs; the remaining arguments are --change options.
import_rootfs() {
  local rootfs=$1 image=$2
  shift 2
  tar -C "$rootfs" --numeric-owner "${TAR_EXCLUDES[@]}" -c . | docker import "$@" - "$image" >/dev/null
}

build_python() {
  local image=$PYTHON_IMAGE started=$SECONDS
  local grpcio protobuf rootfs=$TMP/python pyver site platform
  grpcio=$(pin grpcio)
  protobuf=$(pin protobuf)
  if image_exists "$image"; then
    # An image with other grpcio/protobuf versions than requirements.txt pins is rebuilt.
    if [[ $(docker image inspect -f '{{index .Config.Labels "org.plugin-platform.grpcio"}} {{index .Config.Labels "org.plugin-platform.protobuf"}}' "$image") == "$grpcio $protobuf" ]]; then
      log "$image exists ($(image_size "$image")), skipping"; return
    fi
    log "$image carries other grpcio/protobuf versions than requirements.txt pins: rebuilding"
  fi
  bootstrap "$rootfs" python3
  pyver=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  site=/usr/local/lib/python$pyver/dist-packages # on Debian's sys.path, outside dpkg's files
  platform=manylinux2014_$(uname -m)
  find_pip
  local wheel_opts=(--only-binary=:all: --python-version "$pyver" --implementation cp --platform "$platform")
  log "fetching grpcio==$grpcio protobuf==$protobuf wheels for cp${pyver/./} $platform"
  mkdir -p "$CACHE/wheels"
  "${PIP[@]}" download -q "${wheel_opts[@]}" -d "$CACHE/wheels" "grpcio==$grpcio" "protobuf==$protobuf" >&2
  "${PIP[@]}" install -q --no-index --find-links "$CACHE/wheels" "${wheel_opts[@]}" --no-compile \
    --target "$rootfs$site" "grpcio==$grpcio" "protobuf==$protobuf" >&2
  # Compile with the image's own interpreter: the container's root file system is read-only.
  chroot "$rootfs" python3 -m compileall -q "$site" >/dev/null
  chroot "$rootfs" python3 -c 'import grpc, google.protobuf' || die "grpc/protobuf do not import in the image"
  log "importing $image"
  import_rootfs "$rootfs" "$image" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1' \
    --change "LABEL org.plugin-platform.grpcio=$grpcio org.plugin-platform.protobuf=$protobuf" \
    --change 'CMD ["python3"]'
  log "$image built in $((SECONDS - started)) s, size $(image_size "$image")"
}

build_java() {
  local image=$JAVA_IMAGE started=$SECONDS rootfs=$TMP/java grpc_java
  if image_exists "$image"; then
    # An image built from another package list (an older version of this script) is rebuilt.
    if [[ $(docker image inspect -f '{{index .Config.Labels "org.plugin-platform.packages"}}' "$image") == "$JAVA_PACKAGES" ]]; then
      log "$image exists ($(image_size "$image")), skipping"; return
    fi
    log "$image was built from other packages than $JAVA_PACKAGES: rebuilding it"
  fi
  bootstrap "$rootfs" "$JAVA_PACKAGES"
  # shellcheck disable=SC2016 # ${Version} is dpkg-query's field, not a shell variable
  grpc_java=$(chroot "$rootfs" dpkg-query -W -f '${Version}' libgrpc-java)
  log "importing $image"
  import_rootfs "$rootfs" "$image" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.plugin-platform.grpc-java=$grpc_java org.plugin-platform.packages=$JAVA_PACKAGES" \
    --change 'CMD ["java", "-version"]'
  # Checked in a container, not by chroot: java finds libjli.so through /proc/self/exe.
  docker run --rm --network none "$image" java -version >/dev/null 2>&1 ||
    { docker image rm "$image" >/dev/null; die "java does not run in $image"; }
  log "$image built in $((SECONDS - started)) s, size $(image_size "$image")"
}

build_node() {
  local image=$NODE_IMAGE started=$SECONDS rootfs=$TMP/node version
  if image_exists "$image"; then log "$image exists ($(image_size "$image")), skipping"; return; fi
  # The worker's npm packages (@grpc/grpc-js, @grpc/proto-loader) are plain JavaScript: they are
  # copied into the worker image from plugin_workers/node/node_modules, not installed here.
  bootstrap "$rootfs" nodejs
  version=$(chroot "$rootfs" node --version) || die "node does not run in the rootfs"
  log "importing $image"
  import_rootfs "$rootfs" "$image" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL org.plugin-platform.node=$version" \
    --change 'CMD ["node", "--version"]'
  log "$image built in $((SECONDS - started)) s, size $(image_size "$image")"
}

target=${1:-all}
case $target in python | java | node | all) ;; *) echo "usage: $0 [python|java|node|all]" >&2; exit 2 ;; esac
[[ $(id -u) == 0 ]] || die "must run as root (debootstrap, chroot)"
"$ROOT/scripts/docker-engine.sh" ensure
# One build at a time: two concurrent runs would both debootstrap and race on the tag.
exec 9>/run/lock/plugin-platform-base-images.lock
flock 9
case $target in
  python) build_python ;;
  java) build_java ;;
  node) build_node ;;
  all) build_python; build_java; build_node ;;
esac
