#!/usr/bin/env bash
# Distribution echo throughput, in one run so the figures are comparable, under a
# lock so benches on a shared machine do not overlap.
#
#   scripts/bench_dist.sh [N] [WINDOW] [ROUNDS] [key=value...]   (defaults 100000 100 3)
#       `beamish bench dist`: beamish<->beamish, erl<->erl and beamish<->erl, one
#       line each, then the ratios beamish<->erl / erl<->erl and
#       beamish<->beamish / erl<->erl. key=value goes to the workload as is
#       (threads=, nut_threads=: scheduler threads of the two beamish nodes,
#       0 for one per core; see `beamish bench --list dist`).
#   scripts/bench_dist.sh --escript [N] [WINDOW] [ROUNDS]
#       the escript-only path: throughput.escript against erl_echo_nut.sh
#       (erl<->erl) and against `beamish node --threads $NUT_THREADS` (default 1,
#       as the workload's nut_threads) (beamish<->erl) on a private EPMD, and the
#       ratio beamish/erl. No beamish<->beamish.
#
# Both use target/release/beamish (BEAMISH=path to use another build); build it
# first: cargo build --release. The lock is /tmp/bench.lock (BENCH_LOCK=path).
set -euo pipefail
cd "$(dirname "$0")/.."

escript_only=false
if [ "${1:-}" = "--escript" ]; then
    escript_only=true
    shift
fi
positional=()
keys=()
for arg in "$@"; do
    case "$arg" in
        *=*) keys+=("$arg") ;;
        *) positional+=("$arg") ;;
    esac
done
N=${positional[0]:-100000}
WINDOW=${positional[1]:-100}
ROUNDS=${positional[2]:-3}
LOCK=${BENCH_LOCK:-/tmp/bench.lock}
BEAMISH=${BEAMISH:-target/release/beamish}
NUT_THREADS=${NUT_THREADS:-1}
INTEROP=scripts/interop

[ -x "$BEAMISH" ] || {
    echo "bench_dist.sh: $BEAMISH is not built (cargo build --release)" >&2
    exit 1
}
BEAMISH=$(cd "$(dirname "$BEAMISH")" && pwd)/$(basename "$BEAMISH")
command -v flock >/dev/null 2>&1 || {
    echo "bench_dist.sh: 'flock' not found (util-linux)" >&2
    exit 1
}

exec 9>"$LOCK"
echo "== waiting for $LOCK" >&2
flock 9

if ! $escript_only; then
    exec "$BEAMISH" bench dist "n=$N" "window=$WINDOW" "rounds=$ROUNDS" ${keys[@]+"${keys[@]}"}
fi

[ ${#keys[@]} -eq 0 ] || {
    echo "bench_dist.sh: --escript takes no key=value" >&2
    exit 2
}
for tool in erl escript epmd setsid; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "bench_dist.sh: '$tool' not found (Erlang: scripts/install_erlang.sh)" >&2
        exit 1
    }
done

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
ooo() { sed -n 's/.*out_of_order=//p' "$out/$1" | awk '{ s += $1 } END { print s + 0 }'; }

run erl-erl "\"$PWD/$INTEROP/erl_echo_nut.sh\""
erl_best=$(best erl-erl)
run beamish-erl "\"$BEAMISH\" node --threads $NUT_THREADS"
beamish_best=$(best beamish-erl)

echo
echo "bench=dist runtime=erl peer=erl roundtrips_per_s=$erl_best out_of_order=$(ooo erl-erl) n=$N window=$WINDOW rounds=$ROUNDS"
echo "bench=dist runtime=beamish peer=erl roundtrips_per_s=$beamish_best out_of_order=$(ooo beamish-erl) n=$N window=$WINDOW rounds=$ROUNDS nut_threads=$NUT_THREADS"
awk -v b="$beamish_best" -v e="$erl_best" \
    'BEGIN { printf "bench=dist runtime=beamish/erl peer=erl/erl roundtrips_per_s=%.2f\n", b / e }'
