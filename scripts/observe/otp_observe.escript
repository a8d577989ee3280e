#!/usr/bin/env escript
%%! +P 4000000 +S 2:2
%% The erl run of `beamish bench observe`: Idle processes waiting in a
%% receive, Busy ones computing for ever, and Refreshes refreshes a second
%% apart of what observer_cli's process view does through recon: the
%% reductions, registered name, memory and mailbox length of every process
%% (process_info/2), the difference with the previous snapshot, and the top
%% 10 by each.
%%
%% refresh_cpu_ms: the refresh before the busy processes start (they wait
%% for a go), at high priority: nothing else runs and process_info never
%% waits for a process to be scheduled, so its wall time is its CPU time,
%% the BEAM's best case. (Suspending 100,000 busy processes instead takes
%% minutes: erlang:suspend_process/1 waits for each to be scheduled.)
%% refresh_wall_ms: the same refresh while the busy processes run, as an
%% observer_cli user waits for it. process_info of a process that is
%% running or runnable waits until it is scheduled (OTP 21+ handles it as a
%% signal), so this takes about a millisecond per busy process; it is
%% measured only up to 200,000 processes (minutes beyond) and printed as
%% "-" above.
%%
%% Prints: bench=observe runtime=erl peer=erl refresh_cpu_ms=M
%%         refresh_wall_ms=M|- observer_mb=M
-mode(compile).

main([Idle, Busy, Refreshes]) ->
    [I, B, R] = [list_to_integer(A) || A <- [Idle, Busy, Refreshes]],
    _ = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, I)],
    Busies = [spawn(fun() -> receive go -> busy(N) end end) || N <- lists:seq(1, B)],
    process_flag(priority, high),
    {Times, Words} = refresh(R, reds(snapshot()), [], 0),
    _ = [P ! go || P <- Busies],
    timer:sleep(1000),
    Loaded = case I + B =< 200000 of
                 true ->
                     {LT, _} = refresh(1, reds(snapshot()), [], 0),
                     io_lib:format("~.1f", [median(LT)]);
                 false -> "-"
             end,
    Mb = Words * erlang:system_info(wordsize) / 1.0e6,
    io:format("bench=observe runtime=erl peer=erl refresh_cpu_ms=~.1f "
              "refresh_wall_ms=~s observer_mb=~.1f~n", [median(Times), Loaded, Mb]),
    halt(0).

busy(N) -> busy((N * 1103515245 + 12345) band 16#3fffffff).

refresh(0, _Prev, Times, Words) -> {Times, Words};
refresh(K, Prev, Times, _Words) ->
    timer:sleep(1000),
    T0 = erlang:monotonic_time(microsecond),
    Snap = snapshot(),
    Deltas = [{Pid, Red - maps:get(Pid, Prev, 0), Mem, Q, Name}
              || {Pid, Red, Mem, Q, Name} <- maps:values(Snap)],
    _Top = {top(2, Deltas), top(3, Deltas), top(4, Deltas)},
    T1 = erlang:monotonic_time(microsecond),
    Words = erts_debug:flat_size(Snap) + erts_debug:flat_size(Deltas),
    refresh(K - 1, reds(Snap), [(T1 - T0) / 1000 | Times], Words).

reds(Snap) -> maps:from_list([{P, Red} || {P, Red, _, _, _} <- maps:values(Snap)]).

snapshot() ->
    maps:from_list(
      [{P, {P, Red, Mem, Q, Name}}
       || P <- erlang:processes(),
          [{reductions, Red}, {memory, Mem}, {message_queue_len, Q},
           {registered_name, Name}] <-
              [erlang:process_info(P, [reductions, memory, message_queue_len,
                                       registered_name])]]).

top(Field, Rows) ->
    lists:sublist(lists:reverse(lists:keysort(Field, Rows)), 10).

median(L) -> lists:nth(length(L) div 2 + 1, lists:sort(L)).
