#!/usr/bin/env escript
%% OTP's own distributed-application failover, measured on this machine over
%% 127.0.0.1, as the reference for beamish's failover figures.
%%
%%   escript scripts/failover/otp_failover.escript [kills=20] [rate=1000] [ticktime=4] [heal=1] [timeout=600]
%%
%% Setup: fo_app.erl (next to this script) is compiled into a temp dir and run
%% as a distributed application on three `erl` nodes fo_{a,b,c}_<ospid>@127.0.0.1
%% started with
%%     -kernel distributed '[{fo_app, 0, [A, {B, C}]}]'
%%     -kernel sync_nodes_optional '[the other two]' -kernel sync_nodes_timeout 10000
%%     -kernel net_ticktime <ticktime>
%% and `application:start(fo_app)` on every node: OTP runs it on A, fails it
%% over to B or C (restart time 0) and takes it back when A returns. The app's
%% gen_server is registered as {global, fo_counter}. This script is a fourth,
%% visible distributed node (same cookie and net_ticktime) and monitors nodes.
%%
%% Measured:
%%   * kills rounds. A caller process calls
%%     gen_server:call({global, fo_counter}, where, 100) sequentially, one call
%%     every 1000/rate ms. Each round finds the node W that answers, kills its
%%     OS process with kill -9 and takes T0 = the moment the driver receives
%%     {nodedown, W} (time-stamped by a dedicated monitor_nodes process). The
%%     failover window is the time from T0 to the end of the first successful
%%     call answered by another node; failed counts the calls (exit: noproc,
%%     timeout, noconnection...) that ended between the kill and that success.
%%     W is then restarted with the same name and arguments, and the round ends
%%     once the app has settled back on A (OTP takes it over): `where` answered
%%     by A for 1 s without a failure, and fo_app running on A only.
%%     Prints: round=<i> killed=<node> window_ms=<W> failed=<F>
%%   * with heal=1, one partition round: SIGSTOP the node that runs the app,
%%     wait for the nodedown (net_ticktime) and the failover elsewhere, SIGCONT,
%%     and time from SIGCONT until the three nodes and the driver all report
%%     the same single pid for global:whereis_name(fo_counter) (polled with
%%     erpc every ~5 ms). Prints heal_ms=<H>, or heal_ms=timeout and the views
%%     if that takes over 30 s.
%%   * then one summary line (fixed keys; heal_ms=-1 when heal=0 or timeout):
%%     bench=failover runtime=erl window_min_ms=.. window_median_ms=..
%%     window_max_ms=.. failed_median=.. failed_max=.. kills=.. rate=.. heal_ms=..
%%
%% Results go to stdout; a time-stamped log of node events and the nodes' own
%% output (fo_app logs its StartType: normal, {failover, N}, {takeover, N}) goes
%% to stderr. Every node started is killed at the end (also on error, and on
%% the global timeout, default 600 s); a node also halts by itself when this
%% script dies, as it watches its stdin pipe. The nodes use the EPMD of the
%% environment (ERL_EPMD_PORT or 4369), started with `epmd -daemon` if needed.
%% The stderr log also gives, per round, the kill-to-nodedown time and the
%% takeover gap (calls failing while the app moves back to A).
%%
%% OTP behaviour this relies on or shows (OTP 25):
%%   * the .app needs start_phases (even []) for a failover to be started as
%%     {failover, Node}; without it application_controller says normal;
%%   * a takeover starts the new instance before stopping the old one, so
%%     fo_app releases the global name first (see fo_app:start/2);
%%   * kill -9 on localhost gives an immediate nodedown (the socket closes),
%%     so the window is dist_ac's restart, not net_ticktime; a SIGSTOPped
%%     node is only dropped after net_ticktime;
%%   * nothing reconnects a partition by itself: here the driver's erpc polls
%%     reconnect the resumed node, and global's name-clash resolution
%%     (random_exit_name) kills one of the two counters.
-mode(compile).

-define(CALL_TIMEOUT, 100).       % ms, each `where` call
-define(STEADY_MS, 1000).         % settled = answered by the preferred node this long
-define(STEP_TIMEOUT, 30000).     % ms, any single wait (boot, failover, settle)
-define(HEAL_TIMEOUT, 30000).     % ms, convergence after SIGCONT
-define(HEAL_POLL_MS, 5).         % ms between two polls of the views
-define(TAB, fo_failover_run).    % what cleanup/0 needs: OS pids, temp dir

%%% entry ---------------------------------------------------------------------

main(Args) ->
    persistent_term:put(fo_t_start, now_us()),
    Opts = try parse_args(Args)
           catch throw:{usage, Msg} ->
                   io:format("error: ~s~n", [Msg]),
                   io:format(standard_error, "~s", [usage()]),
                   halt(1)
           end,
    start_watchdog(maps:get(timeout, Opts)),
    try
        run(Opts),
        cleanup(),
        halt(0)
    catch
        Class:Reason:Stack ->
            io:format("error: ~p~n", [Reason]),
            log("~p:~p ~p", [Class, Reason, Stack]),
            cleanup(),
            halt(1)
    end.

usage() ->
    "usage: escript scripts/failover/otp_failover.escript "
    "[kills=20] [rate=1000] [ticktime=4] [heal=1] [timeout=600]\n".

parse_args(Args) ->
    Defaults = #{kills => 20, rate => 1000, ticktime => 4, heal => 1, timeout => 600},
    Opts = lists:foldl(fun parse_arg/2, Defaults, Args),
    Check = [{kills, 1}, {rate, 1}, {ticktime, 1}, {timeout, 10}],
    [throw({usage, io_lib:format("~p must be >= ~p", [K, Min])})
     || {K, Min} <- Check, maps:get(K, Opts) < Min],
    lists:member(maps:get(heal, Opts), [0, 1])
        orelse throw({usage, "heal must be 0 or 1"}),
    Opts.

parse_arg(Arg, Acc) ->
    case string:split(Arg, "=") of
        [K, V] ->
            Key = list_to_atom(K),
            maps:is_key(Key, Acc)
                orelse throw({usage, io_lib:format("unknown argument ~s", [Arg])}),
            try list_to_integer(V) of
                I -> Acc#{Key => I}
            catch error:badarg ->
                    throw({usage, io_lib:format("~s wants an integer", [K])})
            end;
        _ ->
            throw({usage, io_lib:format("bad argument ~s", [Arg])})
    end.

%%% the run -------------------------------------------------------------------

run(#{kills := Kills, rate := Rate, ticktime := Tick, heal := Heal}) ->
    Tag = os:getpid(),
    Root = code:root_dir(),
    Tmp = filename:join(tmp_root(), "fo_failover_" ++ Tag),
    ok = filelib:ensure_dir(filename:join([Tmp, "ebin", "x"])),
    ets:insert(?TAB, {tmpdir, Tmp}),
    Ebin = build_app(Root, Tmp),
    ensure_epmd(Root),
    Cookie = random_cookie(),
    Nodes = [A, B, C] = [list_to_atom(lists:concat(["fo_", X, "_", Tag, "@127.0.0.1"]))
                         || X <- [a, b, c]],
    start_driver_node(list_to_atom("fo_drv_" ++ Tag ++ "@127.0.0.1"), Cookie, Tick),
    start_node_watcher(),
    Cfg = #{erl => filename:join([Root, "bin", "erl"]), ebin => Ebin,
            cookie => Cookie, tick => Tick,
            dist => [{fo_app, 0, [A, {B, C}]}], nodes => Nodes},
    log("OTP ~s erts ~s; nodes ~p, net_ticktime ~p s, ~p calls/s",
        [erlang:system_info(otp_release), erlang:system_info(version), Nodes, Tick, Rate]),
    Launched = [{N, launch(N, Cfg)} || N <- Nodes],
    Pids0 = maps:from_list([{N, connect(N, OsPid)} || {N, OsPid} <- Launched]),
    Caller = start_caller(Rate),
    #{streak_calls := K0} = settle(A, Nodes),
    log("fo_app settled on ~s (~b calls in the last ~b ms)", [A, K0, ?STEADY_MS]),
    {Results, Pids, W} = kill_rounds(1, Kills, A, A, Cfg, Pids0, []),
    HealMs = case Heal of
                 1 -> heal_round(W, Nodes, Pids, Caller);
                 0 -> exit(Caller, kill), -1
             end,
    summary(Results, Kills, Rate, HealMs).

%% One round per kill: failover, restart, settle back on the preferred node.
kill_rounds(I, Kills, W, _Pref, _Cfg, Pids, Acc) when I > Kills ->
    {lists:reverse(Acc), Pids, W};
kill_rounds(I, Kills, W, Pref, Cfg, Pids, Acc) ->
    flush_node_events(),
    flush_calls(),
    {OsPid, BeamPid} = maps:get(W, Pids),
    Tk = now_us(),
    sh_kill("-9", BeamPid),
    {T0, Ts, By, Fails} = await_failover(W, Tk, deadline(?STEP_TIMEOUT)),
    WindowMs = (Ts - T0) / 1000,
    Failed = lists:sum([Cnt || {_, Cnt} <- Fails]),
    io:format("round=~b killed=~s window_ms=~.1f failed=~b~n", [I, W, WindowMs, Failed]),
    log("round ~b: nodedown ~.1f ms after kill -9, ~s answered ~.1f ms after "
        "nodedown; failures ~p", [I, (T0 - Tk) / 1000, By, WindowMs, Fails]),
    %% Restart W with the same name and arguments, once its OS process is gone
    %% (so that EPMD has dropped the old registration).
    receive {node_exit, W, OsPid, _} -> ok
    after ?STEP_TIMEOUT -> error({no_exit, W})
    end,
    Tr = now_us(),
    Pids1 = Pids#{W => connect(W, launch(W, Cfg))},
    receive {nodeup, W, _} -> ok
    after ?STEP_TIMEOUT -> error({no_nodeup, W})
    end,
    Tup = now_us(),
    #{since := Since, failed := TkFailed, fails := TkFails, last_other := LastOther} =
        settle(Pref, maps:get(nodes, Cfg)),
    Gap = case LastOther of
              undefined -> "n/a";
              _ -> io_lib:format("~.1f ms", [(Since - LastOther) / 1000])
          end,
    log("round ~b: ~s back, nodeup ~b ms after the restart; answers from ~s steady "
        "from ~.1f ms after the nodeup; takeover gap (last answer elsewhere to "
        "first of the streak) ~s, ~b calls failed ~p",
        [I, W, (Tup - Tr) div 1000, Pref, (Since - Tup) / 1000, Gap, TkFailed,
         lists:sort(maps:to_list(TkFails))]),
    kill_rounds(I + 1, Kills, Pref, Pref, Cfg, Pids1, [{WindowMs, Failed} | Acc]).

%% Consume call results and node events after the kill of W until both the
%% nodedown of W and a success from another node have been seen.
%% Returns {T0, Ts, By, [{FailureKind, Count}]}.
await_failover(W, Tk, Deadline) ->
    await_failover(W, Tk, Deadline, undefined, undefined, undefined, #{}).

await_failover(_W, _Tk, _Dl, T0, Ts, By, Fails) when T0 =/= undefined, Ts =/= undefined ->
    {T0, Ts, By, lists:sort(maps:to_list(Fails))};
await_failover(W, Tk, Dl, T0, Ts, By, Fails) ->
    receive
        {nodedown, W, T} when T0 =:= undefined ->
            await_failover(W, Tk, Dl, T, Ts, By, Fails);
        {call, _S, E, _} when E < Tk ->             % ended before the kill
            await_failover(W, Tk, Dl, T0, Ts, By, Fails);
        {call, _S, _E, {fail, Kind}} when Ts =:= undefined ->
            await_failover(W, Tk, Dl, T0, Ts, By,
                           maps:update_with(Kind, fun(N) -> N + 1 end, 1, Fails));
        {call, _S, E, {ok, N}} when Ts =:= undefined, N =/= W ->
            await_failover(W, Tk, Dl, T0, E, N, Fails);
        {call, _, _, _} ->                          % W still answering, or after Ts
            await_failover(W, Tk, Dl, T0, Ts, By, Fails)
    after remaining(Dl) ->
            error({no_failover, W, #{nodedown_seen => T0 =/= undefined,
                                     failures => Fails}})
    end.

%% Wait until `where` has been answered by Pref for ?STEADY_MS without a
%% failure or another answer in between, and fo_app runs on Pref only.
%% Returns #{since: start of the steady streak, failed: failed calls seen,
%% streak_calls: calls in the streak}.
settle(Pref, Nodes) ->
    settle(Pref, Nodes, deadline(?STEP_TIMEOUT),
           #{since => undefined, failed => 0, streak_calls => 0, last => none,
             fails => #{}, last_other => undefined}).

settle(Pref, Nodes, Dl, #{since := Since, failed := Failed, streak_calls := K} = St) ->
    receive
        {call, S, E, {ok, Pref}} ->
            Start = case Since of undefined -> S; _ -> Since end,
            St1 = St#{since := Start, streak_calls := K + 1, last := {ok, Pref}},
            case E - Start >= ?STEADY_MS * 1000 of
                false ->
                    settle(Pref, Nodes, Dl, St1);
                true ->
                    case running_on(Nodes) of
                        [Pref] ->
                            flush_calls(),
                            maps:remove(last, St1);
                        Other ->
                            settle(Pref, Nodes, Dl, St1#{since := undefined, streak_calls := 0,
                                                         last := {running_on, Other}})
                    end
            end;
        {call, _, E, R} ->
            St1 = St#{since := undefined, streak_calls := 0, last := R},
            St2 = case R of
                      {fail, Kind} ->
                          St1#{failed := Failed + 1,
                               fails := maps:update_with(Kind, fun(N) -> N + 1 end, 1,
                                                         maps:get(fails, St))};
                      {ok, _Other} ->
                          St1#{last_other := E}
                  end,
            settle(Pref, Nodes, Dl, St2)
    after remaining(Dl) ->
            error({not_settled, Pref, St#{running_on => running_on(Nodes)}})
    end.

%% The nodes on which fo_app is started (running locally).
running_on(Nodes) ->
    [N || N <- Nodes,
          case catch erpc:call(N, application, which_applications, [], 2000) of
              Apps when is_list(Apps) -> lists:keymember(fo_app, 1, Apps);
              _ -> false
          end].

%%% partition round ------------------------------------------------------------

heal_round(W, Nodes, Pids, Caller) ->
    flush_node_events(),
    flush_calls(),
    {_, BeamPid} = maps:get(W, Pids),
    Dl = deadline(?STEP_TIMEOUT),
    Tstop = now_us(),
    sh_kill("-STOP", BeamPid),
    Tnd = receive {nodedown, W, T} -> T
          after remaining(Dl) -> error({no_nodedown_after_sigstop, W})
          end,
    {Tfo, By} = await_answer_not_from(W, Dl),
    exit(Caller, kill),                 % only the view polls from here on
    log("heal: SIGSTOP ~s; nodedown after ~.1f ms, ~s answered ~.1f ms after nodedown",
        [W, (Tnd - Tstop) / 1000, By, (Tfo - Tnd) / 1000]),
    Tcont = now_us(),
    sh_kill("-CONT", BeamPid),
    case poll_views(Nodes, deadline(?HEAL_TIMEOUT)) of
        {ok, T1, Pid, _Views} ->
            HealMs = (T1 - Tcont) / 1000,
            io:format("heal_ms=~.1f~n", [HealMs]),
            log("heal: all four nodes see ~p (on ~s) ~.1f ms after SIGCONT",
                [Pid, node(Pid), HealMs]),
            %% What OTP leaves behind, a little later: one owner, or not?
            timer:sleep(2000),
            {_, _, Views2} = views(Nodes),
            log("heal: 2 s later the views are ~p; fo_app running on ~p",
                [Views2, running_on(Nodes)]),
            HealMs;
        {timeout, Views} ->
            io:format("heal_ms=timeout views=~0p~n", [Views]),
            log("heal: fo_app running on ~p", [running_on(Nodes)]),
            -1
    end.

await_answer_not_from(W, Dl) ->
    receive
        {call, _, E, {ok, N}} when N =/= W -> {E, N};
        {call, _, _, _} -> await_answer_not_from(W, Dl)
    after remaining(Dl) -> error({no_failover_after_sigstop, W})
    end.

%% Poll until every node, the driver included, reports the same single pid.
poll_views(Nodes, Dl) ->
    case views(Nodes) of
        {T, {true, Pid}, Views} ->
            {ok, T, Pid, Views};
        {T, false, Views} when T >= Dl ->
            {timeout, Views};
        {_, false, _} ->
            timer:sleep(?HEAL_POLL_MS),
            poll_views(Nodes, Dl)
    end.

%% {TimeWhenComplete, {true, Pid} | false, [{Node, View}]}
views(Nodes) ->
    Remote = [{N, try erpc:call(N, global, whereis_name, [fo_counter], 1000)
                  catch Class:Reason -> {Class, Reason}
                  end} || N <- Nodes],
    Views = Remote ++ [{node(), global:whereis_name(fo_counter)}],
    T = now_us(),
    Agreed = case lists:usort([V || {_, V} <- Views]) of
                 [Pid] when is_pid(Pid) -> {true, Pid};
                 _ -> false
             end,
    {T, Agreed, Views}.

%%% summary ------------------------------------------------------------------

summary(Results, Kills, Rate, HealMs) ->
    Windows = lists:sort([Wms || {Wms, _} <- Results]),
    Failed = lists:sort([F || {_, F} <- Results]),
    io:format("bench=failover runtime=erl window_min_ms=~.1f window_median_ms=~.1f "
              "window_max_ms=~.1f failed_median=~s failed_max=~b kills=~b rate=~b "
              "heal_ms=~s~n",
              [hd(Windows), median(Windows), lists:last(Windows),
               num(median(Failed)), lists:last(Failed), Kills, Rate, num(HealMs)]).

median(Sorted) ->
    N = length(Sorted),
    case N rem 2 of
        1 -> lists:nth(N div 2 + 1, Sorted);
        0 -> (lists:nth(N div 2, Sorted) + lists:nth(N div 2 + 1, Sorted)) / 2
    end.

%% An integer as is, a float with one decimal unless it is whole.
num(X) when is_integer(X) -> integer_to_list(X);
num(X) when X == round(X) -> integer_to_list(round(X));
num(X) -> io_lib:format("~.1f", [X]).

%%% the caller -----------------------------------------------------------------

%% Sequential `where` calls, one every 1000000 div Rate us (or back to back when
%% a call takes longer), each result sent to Main as {call, Start, End, Result}
%% with Result = {ok, Node} | {fail, Kind}.
start_caller(Rate) ->
    Main = self(),
    Interval = max(1, 1000000 div Rate),
    spawn(fun() -> caller(Main, Interval, now_us()) end).

caller(Main, Interval, Due) ->
    S = now_us(),
    R = try gen_server:call({global, fo_counter}, where, ?CALL_TIMEOUT) of
            Node -> {ok, Node}
        catch exit:Reason -> {fail, failure_kind(Reason)}
        end,
    E = now_us(),
    Main ! {call, S, E, R},
    %% Keep to the schedule (a late wake-up is made up by the next call),
    %% but start afresh after a call that overran it, e.g. a timeout.
    Next = case E > Due + 2 * Interval of
               true -> E;
               false -> Due + Interval
           end,
    sleep_until(Next),
    caller(Main, Interval, Next).

failure_kind({Kind, {gen_server, call, _}}) when is_atom(Kind) -> Kind;
failure_kind({{Kind, _}, {gen_server, call, _}}) when is_atom(Kind) -> Kind;
failure_kind(_) -> other.

%% Absolute timers on the monotonic clock have ms resolution and fire up to
%% 1 ms late, so aim at the start of the millisecond; sub-ms waits are skipped.
sleep_until(Us) ->
    Ms = Us div 1000,
    case Ms > erlang:monotonic_time(millisecond) of
        true ->
            Ref = erlang:start_timer(Ms, self(), tick, [{abs, true}]),
            receive {timeout, Ref, tick} -> ok end;
        false ->
            ok
    end.

%%% nodes ---------------------------------------------------------------------

%% The driver: a visible node with the cluster's cookie and net_ticktime,
%% listening on 127.0.0.1 only.
start_driver_node(Name, Cookie, Tick) ->
    ok = application:set_env(kernel, inet_dist_use_interface, {127, 0, 0, 1}),
    %% Keep stdout for results: the driver's own log reports (e.g. global's
    %% "disconnect ... to prevent overlapping partitions") go to stderr.
    ok = logger:remove_handler(default),
    ok = logger:add_handler(default, logger_std_h,
                            #{config => #{type => standard_error},
                              formatter => {logger_formatter, #{single_line => true}}}),
    start_driver_node(Name, Cookie, Tick, 20).

start_driver_node(Name, Cookie, Tick, Tries) ->
    case net_kernel:start(Name, #{name_domain => longnames, net_ticktime => Tick}) of
        {ok, _} ->
            true = erlang:set_cookie(node(), list_to_atom(Cookie));
        {error, Reason} when Tries =< 1 ->
            error({driver_distribution, Reason});
        {error, _} ->                   % EPMD may still be coming up
            timer:sleep(100),
            start_driver_node(Name, Cookie, Tick, Tries - 1)
    end.

%% A process of its own receives monitor_nodes messages, so that T0 is the
%% moment the driver's runtime delivered the nodedown, not the moment the main
%% loop got to it.
start_node_watcher() ->
    Main = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  ok = net_kernel:monitor_nodes(true),
                  Main ! Ref,
                  node_watcher(Main)
          end),
    receive Ref -> ok end.

node_watcher(Main) ->
    receive
        {Event, Node} when Event =:= nodeup; Event =:= nodedown ->
            T = now_us(),
            Main ! {Event, Node, T},
            log("~s ~s", [Event, Node]),
            node_watcher(Main)
    end.

%% Start one erl node; returns the OS pid of its port. A keeper process owns
%% the port, relays the node's output to stderr and reports its exit.
launch(Node, Cfg) ->
    Main = self(),
    Keeper = spawn(fun() -> keeper(Main, Node, Cfg) end),
    receive {launched, Keeper, OsPid} -> OsPid
    after 10000 -> error({launch_failed, Node})
    end.

keeper(Main, Node, #{erl := Erl} = Cfg) ->
    Port = open_port({spawn_executable, Erl},
                     [{args, node_args(Node, Cfg)}, exit_status, stderr_to_stdout,
                      {line, 4096}, binary]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    Key = {os_pids, Node, OsPid},
    ets:insert(?TAB, {Key, [OsPid]}),
    Main ! {launched, self(), OsPid},
    Short = hd(string:split(atom_to_list(Node), "@")),
    relay(Port, Main, Node, OsPid, Key, Short).

relay(Port, Main, Node, OsPid, Key, Short) ->
    receive
        {Port, {data, {_, Line}}} ->
            log("[~s] ~s", [Short, Line]),
            relay(Port, Main, Node, OsPid, Key, Short);
        {Port, {exit_status, Status}} ->
            ets:delete(?TAB, Key),
            log("[~s] OS process ~b exited, status ~b", [Short, OsPid, Status]),
            Main ! {node_exit, Node, OsPid, Status}
    end.

%% Every node is told the full node list, through `distributed` and
%% `sync_nodes_optional`. Arguments go straight to execve: no shell quoting.
node_args(Node, #{ebin := Ebin, cookie := Cookie, tick := Tick,
                  dist := Dist, nodes := Nodes}) ->
    Term = fun(T) -> lists:flatten(io_lib:format("~0p", [T])) end,
    %% Halt when the driver's end of the stdin pipe closes (the driver died),
    %% then start the application, loudly if that fails.
    Eval = "spawn(fun() -> P = open_port({fd, 0, 1}, [in, eof]),"
           "               receive {P, eof} -> erlang:halt(0) end end),"
           "case application:start(fo_app) of"
           "    ok -> ok;"
           "    Err -> io:format(standard_error, \"fo_app: application:start: ~p~n\", [Err]),"
           "           erlang:halt(3)"
           " end.",
    ["-name", atom_to_list(Node), "-setcookie", Cookie, "-noinput", "-pa", Ebin,
     "-kernel", "net_ticktime", integer_to_list(Tick),
     "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
     "-kernel", "distributed", Term(Dist),
     "-kernel", "sync_nodes_optional", Term(Nodes -- [Node]),
     "-kernel", "sync_nodes_timeout", "10000",
     "-eval", Eval].

%% Connect to a freshly launched node; returns {PortOsPid, BeamOsPid}. They
%% should be the same (erl execs erlexec, which execs beam), but the signals go
%% to the pid the node reports itself.
connect(Node, OsPid) ->
    connect(Node, OsPid, deadline(?STEP_TIMEOUT)).

connect(Node, OsPid, Dl) ->
    case net_kernel:connect_node(Node) of
        true ->
            BeamPid = list_to_integer(erpc:call(Node, os, getpid, [], 5000)),
            ets:insert(?TAB, {{os_pids, Node, OsPid}, lists:usort([OsPid, BeamPid])}),
            {OsPid, BeamPid};
        false ->
            receive
                {node_exit, Node, OsPid, Status} -> error({node_exited, Node, Status})
            after 50 ->
                    now_us() < Dl orelse error({node_not_up, Node}),
                    connect(Node, OsPid, Dl)
            end
    end.

%%% setup ---------------------------------------------------------------------

%% erlc fo_app.erl into Tmp/ebin, plus the application resource file.
build_app(Root, Tmp) ->
    Ebin = filename:join(Tmp, "ebin"),
    Src = filename:join(filename:dirname(escript:script_name()), "fo_app.erl"),
    Erlc = filename:join([Root, "bin", "erlc"]),
    {Status, Out} = run_cmd(Erlc, ["-o", Ebin, Src]),
    Status =:= 0 orelse error({erlc_failed, Status, Out}),
    App = {application, fo_app,
           [{description, "failover benchmark application"},
            {vsn, "1"},
            {modules, [fo_app]},
            {registered, []},
            {applications, [kernel, stdlib]},
            %% Without start_phases, application_controller starts a failed-
            %% over application with StartType normal, "to be backwards
            %% compatible"; with it (even empty) it passes {failover, Node}.
            {start_phases, []},
            {mod, {fo_app, []}}]},
    ok = file:write_file(filename:join(Ebin, "fo_app.app"), io_lib:format("~p.~n", [App])),
    Ebin.

%% `epmd -daemon` is a no-op when an EPMD already listens on the port.
ensure_epmd(Root) ->
    {Status, Out} = run_cmd(filename:join([Root, "bin", "epmd"]), ["-daemon"]),
    Status =:= 0 orelse error({epmd_failed, Status, Out}).

run_cmd(Exe, Args) ->
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, exit_status, stderr_to_stdout, binary]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc]);
        {Port, {exit_status, S}} -> {S, iolist_to_binary(lists:reverse(Acc))}
    after 60000 -> error({command_timeout, erlang:port_info(Port)})
    end.

tmp_root() ->
    case os:getenv("TMPDIR") of
        false -> "/tmp";
        "" -> "/tmp";
        Dir -> Dir
    end.

random_cookie() ->
    lists:flatten(["fo" | [io_lib:format("~2.16.0b", [B])
                           || <<B>> <= crypto:strong_rand_bytes(12)]]).

%%% cleanup and watchdog ----------------------------------------------------

%% The watchdog owns the table cleanup/0 reads, and ends the run if it lasts
%% longer than the global timeout.
start_watchdog(TimeoutS) ->
    Main = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  ?TAB = ets:new(?TAB, [named_table, public, set]),
                  Main ! Ref,
                  receive
                  after TimeoutS * 1000 ->
                          io:format("error: global timeout (~b s)~n", [TimeoutS]),
                          cleanup(),
                          halt(1)
                  end
          end),
    receive Ref -> ok end.

%% kill -9 every node OS process still recorded (SIGKILL also ends a stopped
%% one), then remove the temp dir.
cleanup() ->
    Entries = try ets:tab2list(?TAB) catch error:badarg -> [] end,
    Pids = lists:usort(lists:append([Ps || {{os_pids, _, _}, Ps} <- Entries])),
    [os:cmd(lists:flatten(["kill -9", [[$\s | integer_to_list(P)] || P <- Pids],
                           " 2>/dev/null"])) || Pids =/= []],
    [file:del_dir_r(Dir) || {tmpdir, Dir} <- Entries],
    ok.

%%% helpers -----------------------------------------------------------------

sh_kill(Signal, OsPid) ->
    _ = os:cmd("kill " ++ Signal ++ " " ++ integer_to_list(OsPid)),
    ok.

flush_calls() ->
    receive {call, _, _, _} -> flush_calls()
    after 0 -> ok
    end.

flush_node_events() ->
    receive
        {nodeup, _, _} -> flush_node_events();
        {nodedown, _, _} -> flush_node_events()
    after 0 -> ok
    end.

now_us() -> erlang:monotonic_time(microsecond).

deadline(Ms) -> now_us() + Ms * 1000.

remaining(Dl) -> max(0, (Dl - now_us()) div 1000).

log(Fmt, Args) ->
    T = (now_us() - persistent_term:get(fo_t_start)) / 1000000,
    io:format(standard_error, "~9.3f ~ts~n", [T, io_lib:format(Fmt, Args)]).
