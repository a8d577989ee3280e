#!/bin/sh
# A plain Erlang node serving beamish_bench.erl (the bench_kv gen_server and
# beamish_bench:echo/1), the erl<->erl baseline of otp_bench.escript:
#   escript otp_bench.escript gen_call "$PWD/erl_otp_nut.sh"
set -eu
name="" cookie=""
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name=$2; shift 2 ;;
        --cookie) cookie=$2; shift 2 ;;
        *) echo "erl_otp_nut.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
ebin=$(mktemp -d)
trap 'rm -rf "$ebin"' EXIT
erlc -o "$ebin" "$here/beamish_bench.erl"
erl -name "$name" -setcookie "$cookie" -noinput -pa "$ebin" -eval '
    ok = beamish_bench:start(),
    io:format("ready~n").'
