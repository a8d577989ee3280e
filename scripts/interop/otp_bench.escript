#!/usr/bin/env escript
-mode(compile).
%% OTP calls from erl into a node under test, N calls per round made by
%% CALLERS processes at once (each waits for its reply before the next):
%%   escript otp_bench.escript gen_call NUT_CMD [N] [CALLERS] [ROUNDS]
%%       gen_server:call({bench_kv, Nut}, {echo, I}) -> {ok, I}
%%   escript otp_bench.escript erpc NUT_CMD [N] [CALLERS] [ROUNDS]
%%       erpc:call(Nut, beamish_bench, echo, [I]) -> I
%%   escript otp_bench.escript cluster NUT_CMD [N] [_] [ROUNDS]
%%       two NUTs and this node, all running global and pg: N times
%%       global:register_name + unregister_name from here (the lock and
%%       the registration go through both NUTs), and pg:join here until a
%%       NUT's pg:get_members (asked with erpc) shows it. Prints
%%       register_us=R pg_join_us=P (means) for each round.
%% NUT_CMD gets --name NAME@127.0.0.1 --cookie COOKIE appended and must print
%% `ready`: `beamish node --bench-services`, or erl_otp_nut.sh beside this
%% file for the erl<->erl baseline. Prints calls_per_s=R for each round.
main([Mode, Cmd | Rest]) ->
    [N, Callers, Rounds] =
        [list_to_integer(A) || A <- Rest ++ lists:nthtail(length(Rest), ["100000", "1", "3"])],
    Suffix = os:getpid(),
    {ok, _} = net_kernel:start([list_to_atom("ob_" ++ Suffix ++ "@127.0.0.1"), longnames]),
    Cookie = "obcookie",
    erlang:set_cookie(node(), list_to_atom(Cookie)),
    case Mode of
        "cluster" ->
            Nuts = [start_nut(Cmd, Cookie, "obnut" ++ integer_to_list(K) ++ "_" ++ Suffix) || K <- [1, 2]],
            {ok, _} = pg:start(pg),
            [pong = net_adm:ping(Nut) || {Nut, _} <- Nuts],
            [wait_global({bench_node, Nut}, 200) || {Nut, _} <- Nuts],
            [Far | _] = [Nut || {Nut, _} <- Nuts],
            cluster_round(Far, min(N, 100), 0),
            [begin {R, P} = cluster_round(Far, N, I),
                   io:format("register_us=~b pg_join_us=~b~n", [R, P]) end
             || I <- lists:seq(1, Rounds)],
            [os:cmd("kill -9 -" ++ Pgid) || {_, Pgid} <- Nuts];
        _ ->
            {Nut, Pgid} = start_nut(Cmd, Cookie, "obnut_" ++ Suffix),
            Call = call_fun(list_to_atom(Mode), Nut),
            round(Call, min(N, 1000), Callers),
            Results = [round(Call, N, Callers) || _ <- lists:seq(1, Rounds)],
            [io:format("calls_per_s=~b~n", [R]) || R <- Results],
            io:format("best_calls_per_s=~b~n", [lists:max(Results)]),
            os:cmd("kill -9 -" ++ Pgid)
    end,
    halt(0).

start_nut(Cmd, Cookie, Name) ->
    Nut = list_to_atom(Name ++ "@127.0.0.1"),
    Port = open_port({spawn, "setsid sh -c 'echo pgid=$$; exec 3<&0; (cat <&3 >/dev/null; kill -9 -$$) >/dev/null 2>&1 & exec 3<&-; exec "
                             ++ Cmd ++ " --name " ++ atom_to_list(Nut) ++ " --cookie " ++ Cookie ++ "'"},
                     [{line, 4096}, exit_status, stderr_to_stdout]),
    {Nut, wait_ready(Port, none)}.

wait_global(Name, 0) -> io:format("global never showed ~p~n", [Name]), halt(1);
wait_global(Name, K) ->
    case global:whereis_name(Name) of
        undefined -> timer:sleep(50), wait_global(Name, K - 1);
        _ -> ok
    end.

%% N registrations and N joins; mean microseconds of each.
cluster_round(Far, N, Round) ->
    Self = self(),
    T0 = erlang:monotonic_time(microsecond),
    [begin
         Name = {bench_name, Round, I},
         yes = global:register_name(Name, Self),
         _ = global:unregister_name(Name)
     end || I <- lists:seq(1, N)],
    T1 = erlang:monotonic_time(microsecond),
    Joins = [begin
                 G = {bench_group, Round, I},
                 S = erlang:monotonic_time(microsecond),
                 ok = pg:join(G, Self),
                 seen(Far, G, Self),
                 D = erlang:monotonic_time(microsecond) - S,
                 ok = pg:leave(G, Self),
                 D
             end || I <- lists:seq(1, N)],
    {(T1 - T0) div N, lists:sum(Joins) div N}.

seen(Far, G, Pid) ->
    case lists:member(Pid, erpc:call(Far, pg, get_members, [G])) of
        true -> ok;
        false -> seen(Far, G, Pid)
    end.

call_fun(gen_call, Nut) ->
    fun(I) -> {ok, I} = gen_server:call({bench_kv, Nut}, {echo, I}) end;
call_fun(erpc, Nut) ->
    fun(I) -> I = erpc:call(Nut, beamish_bench, echo, [I]) end.

wait_ready(Port, Pgid) ->
    receive
        {Port, {data, {eol, "ready"}}} -> Pgid;
        {Port, {data, {eol, "pgid=" ++ P}}} -> wait_ready(Port, P);
        {Port, {data, _}} -> wait_ready(Port, Pgid);
        {Port, {exit_status, S}} -> io:format("NUT exited ~p~n", [S]), halt(2)
    after 120000 -> io:format("NUT not ready~n"), halt(2)
    end.

%% N calls by Callers processes; calls per second.
round(Call, N, Callers) ->
    Self = self(),
    Each = max(1, N div Callers),
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() -> [Call(I) || I <- lists:seq(1, Each)], Self ! {done, self()} end)
            || _ <- lists:seq(1, Callers)],
    [receive {done, P} -> ok after 60000 -> io:format("stalled~n"), halt(1) end || P <- Pids],
    Us = max(1, erlang:monotonic_time(microsecond) - T0),
    round(Each * Callers * 1000000 / Us).
