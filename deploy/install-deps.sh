#!/bin/sh
# Installs the Debian 12 packages huiqi needs to build, test and run. Idempotent:
# it calls apt-get only when something is missing. Run as root (or through sudo).
set -eu

PKGS="build-essential pkg-config libuv1-dev libjansson-dev libhiredis-dev node-llhttp
libcurl4-openssl-dev libssl-dev redis-server redis-tools curl python3 ca-certificates"
# Extra packages for `make bench` (peers and load generators).
if [ "${1:-}" = "--bench" ]; then
    PKGS="$PKGS wrk nginx-light libroaring-dev postgresql libpq-dev"
fi
# Extra packages for `make test-valgrind`.
if [ "${1:-}" = "--valgrind" ]; then
    PKGS="$PKGS valgrind"
fi
# Extra packages for `make fuzz` (clang with libFuzzer).
if [ "${1:-}" = "--fuzz" ]; then
    PKGS="$PKGS clang libclang-rt-14-dev"
fi
# Extra packages for `make format`, `make check-format` and `make lint`.
if [ "${1:-}" = "--lint" ]; then
    PKGS="$PKGS clang-format cppcheck"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Debian's redis-server package starts a system-wide Redis on 6379 where an init
# system runs; huiqi never uses it (it starts its own on a free port).
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
