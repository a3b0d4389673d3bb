#!/usr/bin/env bash
# Build the Java PPP worker: build/ppp-java-worker.jar (runnable with `java -jar`).
#
# Needs no network besides Debian's apt: the JDK, grpc-java, protobuf and Netty all come as
# Debian packages (see ENVIRONMENT.md, "Java gRPC from Debian packages"), installed here when
# missing. Re-running is cheap: nothing is rebuilt when the jar is newer than every input.
#
# Usage: plugin_workers/java/build.sh [--force]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROTO_DIR="$(cd "$HERE/../../protos" && pwd)"
PROTO_FILE=plugin_protocol.proto
BUILD="$HERE/build"
JAR="$BUILD/ppp-java-worker.jar"
MAIN_CLASS=platform.workers.WorkerMain
JAVA_LIB=/usr/share/java

PACKAGES=(openjdk-17-jdk-headless libgrpc-java protobuf-compiler protobuf-compiler-grpc-java-plugin
          libprotobuf-java libnetty-java libperfmark-java)
# What the worker loads at run time; the jar's manifest points at these absolute paths.
RUNTIME_JARS=(grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
              protobuf guava perfmark-api netty-common netty-buffer netty-transport netty-resolver
              netty-codec netty-codec-http netty-codec-http2 netty-handler
              netty-transport-native-unix-common netty-transport-native-epoll)
# Generated stubs carry @javax.annotation.Generated: needed to compile, never at run time.
COMPILE_ONLY_JARS=(geronimo-annotation-1.3-spec)

say() { echo "build.sh: $*"; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

ensure_packages() {
    local missing=() package
    for package in "${PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
            missing+=("$package")
        fi
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    say "missing Debian packages: ${missing[*]}"
    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} with apt-get"
        sudo=(sudo)
    fi
    # Another apt run (a colleague's build, unattended upgrades) may hold the lock: wait for it.
    local apt=("${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600)
    say "running: apt-get update"
    "${apt[@]}" update -q
    say "running: apt-get install -y ${PACKAGES[*]}"
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q "${PACKAGES[@]}"
}

jar_paths() {  # jar_paths SEPARATOR NAME... -> /usr/share/java/NAME.jar joined by SEPARATOR
    local separator="$1" name joined=""
    shift
    for name in "$@"; do
        [[ -f "$JAVA_LIB/$name.jar" ]] || die "$JAVA_LIB/$name.jar not found (is its Debian package installed?)"
        joined+="${joined:+$separator}$JAVA_LIB/$name.jar"
    done
    printf '%s' "$joined"
}

up_to_date() {
    [[ -f "$JAR" ]] || return 1
    # Any input newer than the jar (sources, resources, the .proto, this script) means rebuild.
    [[ -z "$(find "$HERE/src" "$PROTO_DIR/$PROTO_FILE" "$HERE/build.sh" -newer "$JAR" -print -quit)" ]]
}

write_manifest() {  # Class-Path lines are wrapped: a manifest line may hold at most 72 bytes.
    local manifest="$1" name first=1
    {
        echo "Manifest-Version: 1.0"
        echo "Main-Class: $MAIN_CLASS"
        for name in "${RUNTIME_JARS[@]}"; do
            if ((first)); then
                echo "Class-Path: $JAVA_LIB/$name.jar"
                first=0
            else
                # A continuation line starts with one space; the second space separates entries.
                echo "  $JAVA_LIB/$name.jar"
            fi
        done
    } >"$manifest"
}

build() {
    local runtime_classpath compile_classpath
    runtime_classpath="$(jar_paths : "${RUNTIME_JARS[@]}")"
    compile_classpath="$runtime_classpath:$(jar_paths : "${COMPILE_ONLY_JARS[@]}")"

    # Start from empty output directories so that deleted sources leave no stale classes.
    rm -rf "$BUILD/gen" "$BUILD/classes"
    mkdir -p "$BUILD/gen" "$BUILD/classes"

    say "generating Java stubs from protos/$PROTO_FILE"
    protoc -I"$PROTO_DIR" \
        --java_out="$BUILD/gen" \
        --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin --grpc-java_out="$BUILD/gen" \
        "$PROTO_DIR/$PROTO_FILE"

    say "compiling"
    local sources="$BUILD/sources.txt"
    find "$BUILD/gen" "$HERE/src/main/java" -name '*.java' | sort >"$sources"
    javac --release 17 -encoding UTF-8 -nowarn -Xlint:-options \
        -cp "$compile_classpath" -d "$BUILD/classes" "@$sources"
    cp -R "$HERE/src/main/resources/." "$BUILD/classes/"

    say "packing build/$(basename "$JAR")"
    write_manifest "$BUILD/MANIFEST.MF"
    # Pack next to the target, then rename: a worker starting meanwhile never sees half a jar.
    jar --create --file "$JAR.tmp" --manifest "$BUILD/MANIFEST.MF" -C "$BUILD/classes" .
    mv -f "$JAR.tmp" "$JAR"
}

main() {
    local force=0
    case "${1:-}" in
        "") ;;
        --force) force=1 ;;
        *) die "usage: $0 [--force]" ;;
    esac
    ensure_packages
    mkdir -p "$BUILD"
    # Serialise concurrent builds (e.g. two test sessions) so they never interleave outputs.
    exec 9>"$BUILD/.lock"
    flock 9
    if ((!force)) && up_to_date; then
        say "build/$(basename "$JAR") is up to date"
        return
    fi
    build
}

main "$@"
