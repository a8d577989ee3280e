%% The erl side of `tests/pg_erl.rs`: an `erl` node whose `pg` scopes a
%% beamish node (the test binary) joins.
%%
%% Started with `-eval`, which compiles and loads this file and calls
%% `start(Peer, Scopes, Joins, Mode)`: it starts each scope of Scopes
%% (`pg:start/1`), spawns a member for each `{Scope, Group}` of Joins (before
%% any connection), registers `ctl` and prints `ready`; with Mode `ping` it
%% first pings Peer.
%%
%% `ctl` answers `{From, Ref, Cmd}` with `From ! {Ref, Reply}`:
%%
%%   initial                   the members of Joins: [{Scope, Group, Pid}]
%%   {join, Scope, Group}      spawns a member that joins Group; its pid
%%   {join_again, Scope, Group, Pid}   Pid joins Group once more: ok
%%   {leave, Scope, Group, Pid}        pg:leave/3's result
%%   {members, Scope, Group}   pg:get_members/2, sorted
%%   {kill, Pid}               kills a member: ok once it is dead
%%   {send, Dest, Msg}         Dest ! Msg: ok
%%   ping                      connects to Peer: pong | pang

-module(pg_helper).
-export([start/4]).

start(Peer, Scopes, Joins, Mode) ->
    [{ok, _} = pg:start(S) || S <- Scopes],
    Initial = [{S, G, member_of(S, G)} || {S, G} <- Joins],
    Ctl = spawn(fun() -> ctl(Peer, Initial) end),
    true = register(ctl, Ctl),
    case Mode of
        ping -> io:format("ping ~p~n", [net_adm:ping(Peer)]);
        wait -> ok
    end,
    io:format("ready~n").

ctl(Peer, Initial) ->
    receive
        {From, Ref, initial} ->
            From ! {Ref, Initial};
        {From, Ref, Cmd} ->
            From ! {Ref, run(Peer, Cmd)};
        _ ->
            ok
    end,
    ctl(Peer, Initial).

member_of(Scope, Group) ->
    Self = self(),
    Pid = spawn(fun() -> ok = pg:join(Scope, Group, self()), Self ! {joined, self()}, member() end),
    receive {joined, Pid} -> Pid end.

run(_Peer, {join, Scope, Group}) ->
    member_of(Scope, Group);
run(_Peer, {join_again, Scope, Group, Pid}) ->
    pg:join(Scope, Group, Pid);
run(_Peer, {leave, Scope, Group, Pid}) ->
    pg:leave(Scope, Group, Pid);
run(_Peer, {members, Scope, Group}) ->
    lists:sort(pg:get_members(Scope, Group));
run(_Peer, {kill, Pid}) ->
    MRef = monitor(process, Pid),
    exit(Pid, kill),
    receive {'DOWN', MRef, process, Pid, _} -> ok end;
run(_Peer, {send, Dest, Msg}) ->
    Dest ! Msg,
    ok;
run(Peer, ping) ->
    net_adm:ping(Peer).

member() ->
    receive _ -> member() end.
