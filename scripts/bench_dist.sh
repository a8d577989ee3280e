#!/usr/bin/env bash
# Distribution echo throughput, in one run so the figures are comparable:
#   1. erl <-> erl      throughput.escript against erl_echo_nut.sh (the baseline)
#   2. beamish <-> erl  throughput.escript against target/release/examples/interop_node
#                       (skipped with a note when it is not built)
# and the ratio beamish/erl. Runs under a lock so benches on a shared machine do
# not overlap, on a private EPMD.
#   scripts/bench_dist.sh [N] [WINDOW] [ROUNDS]      (defaults 100000 100 3)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100000}
WINDOW=${2:-100}
ROUNDS=${3:-3}
LOCK=${BENCH_LOCK:-/tmp/bench.lock}
NUT=target/release/examples/interop_node
INTEROP=scripts/interop

for tool in erl escript epmd flock setsid; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench_dist.sh: '$tool' not found (Erlang: scripts/install_erlang.sh)" >&2
        exit 1
    }
done

exec 9>"$LOCK"
echo "== waiting for $LOCK"
flock 9

# A private EPMD on a free port, killed on exit.
port=$(erl -noshell -eval '{ok, L} = gen_tcp:listen(0, [{ip, {127,0,0,1}}]), {ok, P} = inet:port(L), io:format("~b", [P]), halt().')
epmd -port "$port" -address 127.0.0.1 &
epmd_pid=$!
out=$(mktemp -d)
trap 'kill "$epmd_pid" 2>/dev/null || true; rm -rf "$out"' EXIT
export ERL_EPMD_PORT=$port
for _ in $(seq 50); do
    epmd -port "$port" -names >/dev/null 2>&1 && break
    sleep 0.1
done

run() { # run LABEL NUT_CMD: prints the escript's lines, keeps them in $out/LABEL
    local label=$1 cmd=$2
    echo "== $label: escript throughput.escript $cmd $N $WINDOW $ROUNDS"
    escript "$INTEROP/throughput.escript" "$cmd" "$N" "$WINDOW" "$ROUNDS" | tee "$out/$label"
}
best() { sed -n 's/^best_roundtrips_per_s=//p' "$out/$1"; }
ooo() { sed -n 's/.*out_of_order=//p' "$out/$1" | sort -n | tail -1; }

run erl-erl "$PWD/$INTEROP/erl_echo_nut.sh"
erl_best=$(best erl-erl)

echo
echo "bench=dist pair=erl-erl n=$N window=$WINDOW best_roundtrips_per_s=$erl_best out_of_order=$(ooo erl-erl)"
if [ -x "$NUT" ]; then
    run beamish-erl "$PWD/$NUT"
    beamish_best=$(best beamish-erl)
    echo "bench=dist pair=beamish-erl n=$N window=$WINDOW best_roundtrips_per_s=$beamish_best out_of_order=$(ooo beamish-erl)"
    awk -v b="$beamish_best" -v e="$erl_best" \
        'BEGIN { printf "ratio beamish-erl/erl-erl = %.2f (target >= 1.00)\n", b / e }'
else
    echo "bench=dist pair=beamish-erl skipped: $NUT is not built" \
        "(cargo build --release -p beamish --example interop_node)"
fi
echo "bench=dist pair=beamish-beamish skipped: \`beamish bench dist\` does not exist yet"
