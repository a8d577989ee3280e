#!/usr/bin/env bash
# Installs what the tests need beyond Rust: Erlang/OTP (scripts/install_erlang.sh),
# tmux (the terminal UI tests drive `beamish observer` in it) and chromium (the
# web dashboard tests load it headless). Idempotent: installs only what is
# missing. scripts/test.sh calls this first.
set -euo pipefail
cd "$(dirname "$0")"

./install_erlang.sh

missing=()
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_tools.sh: no apt-get here; install ${missing[*]} yourself" >&2
    exit 1
fi
echo "== installing ${missing[*]}"
"${SUDO[@]}" apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
command -v tmux >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1
