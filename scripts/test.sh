#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, unit, integration and
# doc tests, and the loom models of the lock-free protocols.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== tools (the interop tests need erl, escript and epmd; the UI tests tmux and chromium)"
scripts/install_tools.sh || echo "test.sh: scripts/install_tools.sh failed" >&2
for tool in erl escript epmd tmux chromium; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "test.sh: '$tool' is still missing after scripts/install_tools.sh;" \
            "the tests that need it cannot run. Install it and retry." >&2
        exit 1
    fi
done

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "== tests (debug: overflow checks and debug assertions on)"
cargo test --workspace
echo "== tests (release: the timings users get)"
cargo test --workspace --release
echo "== loom models"
RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
    cargo test -p beamish --lib --release --target-dir target/loom
