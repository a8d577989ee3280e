#!/bin/sh
# A plain Erlang node that implements the whole interop contract (the `echo`
# process and everything it spawns follow the protocol of CONTRACT.md's table).
# It is the reference that contract.escript is checked against:
#   escript contract.escript "$PWD/erl_contract_nut.sh"
# (erl_echo_nut.sh only answers {From, Ref, Term}: it is the throughput baseline.)
set -eu
name="" cookie=""
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name=$2; shift 2 ;;
        --cookie) cookie=$2; shift 2 ;;
        *) echo "erl_contract_nut.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$name" ] && [ -n "$cookie" ] || { echo "usage: erl_contract_nut.sh --name NAME@HOST --cookie COOKIE" >&2; exit 2; }
# State of an echo process: who asked it to trap exits (`none` until then), its
# monitors (monitor ref -> asker) and its node monitors (node -> askers, one
# per monitor_node request, oldest first).
exec erl -name "$name" -setcookie "$cookie" -noinput -kernel connect_all false -eval '
    New = #{trap => none, mons => #{}, nodes => #{}},
    Loop = fun Loop(St = #{trap := Trap, mons := Mons, nodes := Nodes}) ->
        receive
            {From, Ref, spawn} when is_pid(From) ->
                From ! {Ref, spawn(fun() -> Loop(New) end)},
                Loop(St);
            {From, Ref, crash} when is_pid(From) ->
                exit({crashed, Ref});
            {From, Ref, link_me} when is_pid(From) ->
                link(From),
                From ! {Ref, linked},
                Loop(St);
            {From, Ref, trap} when is_pid(From) ->
                process_flag(trap_exit, true),
                From ! {Ref, trapping},
                Loop(St#{trap := From});
            {From, Ref, monitor, Pid} when is_pid(From) ->
                M = erlang:monitor(process, Pid),
                From ! {Ref, monitoring},
                Loop(St#{mons := Mons#{M => From}});
            {From, Ref, monitor_node, Node} when is_pid(From), is_atom(Node) ->
                erlang:monitor_node(Node, true),
                From ! {Ref, monitoring_node},
                Loop(St#{nodes := Nodes#{Node => maps:get(Node, Nodes, []) ++ [From]}});
            {From, Ref, send, Dest, Term} when is_pid(From) ->
                catch erlang:send(Dest, Term),
                From ! {Ref, sent},
                Loop(St);
            {From, Ref, Term} when is_pid(From) ->
                From ! {Ref, Term},
                Loop(St);
            {'"'"'EXIT'"'"', Pid, Reason} when is_pid(Trap) ->
                Trap ! {exit_seen, Pid, Reason},
                Loop(St);
            {'"'"'DOWN'"'"', M, process, Pid, Reason} when is_map_key(M, Mons) ->
                maps:get(M, Mons) ! {down_seen, Pid, Reason},
                Loop(St#{mons := maps:remove(M, Mons)});
            {nodedown, Node} when is_map_key(Node, Nodes) ->
                [To | Rest] = maps:get(Node, Nodes),
                To ! {nodedown_seen, Node},
                Loop(St#{nodes := case Rest of [] -> maps:remove(Node, Nodes); _ -> Nodes#{Node := Rest} end});
            _ ->
                Loop(St)
        end
    end,
    register(echo, spawn(fun() -> Loop(New) end)),
    io:format("ready~n").'
