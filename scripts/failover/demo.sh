#!/usr/bin/env bash
# Failover you can watch: three beamish nodes on 127.0.0.1 (the `failover`
# example, three OS processes) run a singleton and a distributed supervisor
# of 8 children; a client node calls them all at 1,000 calls/s. The script
# SIGKILLs the node that runs the singleton (and starts it again), then
# SIGSTOPs the node that runs it next, past the tick timeout, and SIGCONTs
# it. The client prints each outage: how long after the nodedown the
# service answered again, and the calls that failed in between.
#
#   scripts/failover/demo.sh [SECONDS]      (default 25)
#
# FAILOVER_BIN: the built example (else it is built here, release).
# EPMD_PORT: the port of the private epmd (else a random one).
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-25}
if [ "$secs" -lt 20 ]; then
    echo "demo.sh: at least 20 seconds" >&2
    exit 2
fi
bin=${FAILOVER_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release -p beamish --example failover
    bin=target/release/examples/failover
fi
command -v epmd >/dev/null 2>&1 || bash scripts/install_erlang.sh
port=${EPMD_PORT:-$((20000 + RANDOM % 20000))}
tag=$$
logs=$(mktemp -d)
names=("fo_a_$tag@127.0.0.1" "fo_b_$tag@127.0.0.1" "fo_c_$tag@127.0.0.1")
pids=(0 0 0)

# A private epmd: an embedded one would die with the first node killed.
epmd -port "$port" -address 127.0.0.1 2>/dev/null &
epmd_pid=$!
disown "$epmd_pid"

cleanup() {
    for p in "${pids[@]}" ${client_pid:-}; do
        if [ "$p" != 0 ]; then
            kill -CONT "$p" 2>/dev/null || true
            kill -9 "$p" 2>/dev/null || true
        fi
    done
    kill "$epmd_pid" 2>/dev/null || true
    rm -rf "$logs"
}
trap cleanup EXIT

say() {
    echo "[$(date -u +%H:%M:%S.%3N)] script: $*"
}

peers_of() {
    local i=$1 out=() j
    for j in 0 1 2; do
        [ "$j" != "$i" ] && out+=("${names[$j]}")
    done
    (IFS=,; echo "${out[*]}")
}

start_node() {
    local i=$1 log="$logs/node$1.log"
    : >"$log"
    "$bin" node "${names[$i]}" --peers "$(peers_of "$i")" --epmd-port "$port" >"$log" 2>&1 &
    pids[$i]=$!
    disown "$!"
    for _ in $(seq 1 200); do
        grep -q '^ready' "$log" && return 0
        sleep 0.05
    done
    echo "demo.sh: ${names[$i]} did not start:" >&2
    cat "$log" >&2
    exit 1
}

index_of() {
    local j
    for j in 0 1 2; do
        [ "${names[$j]}" = "$1" ] && echo "$j" && return 0
    done
    echo "demo.sh: unknown node $1" >&2
    exit 1
}

singleton_node() {
    "$bin" where "where_${tag}_$RANDOM@127.0.0.1" --peers "$(IFS=,; echo "${names[*]}")" \
        --epmd-port "$port" 2>>"$logs/where.log"
}

# Wait for epmd.
for _ in $(seq 1 100); do
    epmd -port "$port" -names >/dev/null 2>&1 && break
    sleep 0.05
done

for i in 0 1 2; do start_node "$i"; done
say "three nodes up: ${names[*]}"
"$bin" client "fo_client_$tag@127.0.0.1" --peers "$(IFS=,; echo "${names[*]}")" \
    --epmd-port "$port" --seconds "$secs" --children 8 --rate 1000 2>"$logs/client.log" &
client_pid=$!
sleep 3

victim=$(singleton_node)
v=$(index_of "$victim")
say "SIGKILL $victim (it runs the singleton)"
kill -9 "${pids[$v]}"
sleep 3
say "start $victim again"
start_node "$v"
sleep 2

victim=$(singleton_node)
v=$(index_of "$victim")
say "SIGSTOP $victim (it runs the singleton) for 8 s; net_ticktime is 4 s"
kill -STOP "${pids[$v]}"
sleep 8
say "SIGCONT $victim"
kill -CONT "${pids[$v]}"

if ! wait "$client_pid"; then
    client_pid=
    echo "demo.sh: the client failed:" >&2
    cat "$logs/client.log" >&2
    exit 1
fi
client_pid=
say "done"
