#!/usr/bin/env bash
# Installs Erlang/OTP (erl, erlc, escript, epmd) from the distribution's packages
# when `erl` is not on PATH. Idempotent: does nothing when Erlang is already there.
# The interop tests and scripts/interop/ need it; scripts/test.sh calls this first.
set -euo pipefail

if command -v erl >/dev/null 2>&1; then
    exit 0
fi

# Use sudo only when we are not root and sudo exists.
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_erlang.sh: no apt-get here; install Erlang/OTP (erl, escript, epmd) yourself" >&2
    exit 1
fi

echo "== installing Erlang (erlang-nox)"
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y erlang-nox

command -v erl >/dev/null 2>&1
