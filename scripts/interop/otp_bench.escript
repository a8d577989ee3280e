#!/usr/bin/env escript
%%! -hidden
-mode(compile).
%% OTP calls from erl into a node under test, N calls per round made by
%% CALLERS processes at once (each waits for its reply before the next):
%%   escript otp_bench.escript gen_call NUT_CMD [N] [CALLERS] [ROUNDS]
%%       gen_server:call({bench_kv, Nut}, {echo, I}) -> {ok, I}
%%   escript otp_bench.escript erpc NUT_CMD [N] [CALLERS] [ROUNDS]
%%       erpc:call(Nut, beamish_bench, echo, [I]) -> I
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
    Nut = list_to_atom("obnut_" ++ Suffix ++ "@127.0.0.1"),
    Port = open_port({spawn, "setsid sh -c 'echo pgid=$$; exec 3<&0; (cat <&3 >/dev/null; kill -9 -$$) >/dev/null 2>&1 & exec 3<&-; exec "
                             ++ Cmd ++ " --name " ++ atom_to_list(Nut) ++ " --cookie " ++ Cookie ++ "'"},
                     [{line, 4096}, exit_status, stderr_to_stdout]),
    Pgid = wait_ready(Port, none),
    Call = call_fun(list_to_atom(Mode), Nut),
    round(Call, min(N, 1000), Callers),
    Results = [round(Call, N, Callers) || _ <- lists:seq(1, Rounds)],
    [io:format("calls_per_s=~b~n", [R]) || R <- Results],
    io:format("best_calls_per_s=~b~n", [lists:max(Results)]),
    os:cmd("kill -9 -" ++ Pgid),
    halt(0).

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
