#!/usr/bin/env escript
%% -*- erlang -*-
%%! -kernel connect_all false
-module(contract).
-mode(compile).
%% The interop contract (CONTRACT.md), checked from a real Erlang node against
%% a node under test (NUT):
%%
%%   escript contract.escript [OPTIONS] NUT_CMD
%%
%% NUT_CMD (one shell word list, e.g. target/release/examples/interop_node) is
%% run as `NUT_CMD --name nut_<pid>@127.0.0.1 --cookie C` in its own session; it
%% must print `ready` within --ready-timeout seconds. The suite then prints one
%% line per check, `PASS name`, `FAIL name: why` or `SKIP name: why`, and exits
%% 1 if any check failed (2 if it could not run at all).
%%
%% Options:
%%   --ticks            also run the tick checks (they take about 90 s)
%%   --funs             also echo funs (export and local), which the contract
%%                      does not list
%%   --only SUBSTRING   run only the checks whose name contains SUBSTRING
%%                      (may be repeated; start.ready always runs)
%%   --skip SUBSTRING   leave out the checks whose name contains SUBSTRING
%%                      (may be repeated)
%%   --verbose          echo the NUT's output as it comes (prefixed `nut| `)
%%   --ready-timeout S  seconds to wait for `ready` (default 120)
%%
%% EPMD: the tester, the NUT and the helper nodes use ERL_EPMD_PORT (default
%% 4369). If no EPMD answers there, the suite starts `epmd -daemon` on it.
%% Helper nodes are `erl` peers started with the `peer` module (controlled over
%% stdio, so the tester connects to them only when a check needs it).
%%
%% The NUT is killed (SIGKILL to its process group) at the end, and also when
%% this escript dies: a watcher in its session kills the group when the pipe
%% from this emulator closes.

-define(T, 10000).              % wait for one reply
-define(QUIET, 500).            % how long "nothing arrives" is watched
-define(CHECK_TIMEOUT, 60000).  % bound on one check
-define(BIG_TIMEOUT, 180000).   % bound on a check that moves 10 MB or waits for ticks
-define(THIRD, 'third_node@127.0.0.1').
-define(THIRD_CREATION, 16#ABCDEF01).

%% Distribution flags (erts/emulator/beam/dist.h).
-define(DFLAG_PUBLISHED, 16#1).
-define(DFLAG_DIST_HDR_ATOM_CACHE, 16#2000).
-define(DFLAG_FRAGMENTS, 16#800000).
%% The contract's minimum: it has neither DIST_HDR_ATOM_CACHE nor FRAGMENTS,
%% so a raw peer with these flags must get pass-through (112) frames only.
-define(CONTRACT_FLAGS, 16#403070FBD).

required_flags() ->
    [{"PUBLISHED", 16#1}, {"EXTENDED_REFERENCES", 16#4}, {"DIST_MONITOR", 16#8},
     {"FUN_TAGS", 16#10}, {"DIST_MONITOR_NAME", 16#20}, {"NEW_FUN_TAGS", 16#80},
     {"EXTENDED_PIDS_PORTS", 16#100}, {"EXPORT_PTR_TAG", 16#200}, {"BIT_BINARIES", 16#400},
     {"NEW_FLOATS", 16#800}, {"UTF8_ATOMS", 16#10000}, {"MAP_TAG", 16#20000},
     {"BIG_CREATION", 16#40000}, {"HANDSHAKE_23", 16#1000000}, {"UNLINK_ID", 16#2000000},
     {"V4_NC", 1 bsl 34}].

%% ===========================================================================
%% Main

main(Args) ->
    Opts = parse_args(Args, #{ticks => false, funs => false, verbose => false, only => [], skip => [],
                              ready_timeout => 120, cmd => []}),
    Cmd = case maps:get(cmd, Opts) of
              [] -> usage();
              Words -> lists:join(" ", lists:reverse(Words))
          end,
    process_flag(trap_exit, true),
    ets:new(contract, [named_table, public, set]),
    ets:new(contract_helpers, [named_table, public, bag]),
    Suffix = os:getpid(),
    EpmdPort = ensure_epmd(),
    Tester = list_to_atom("contract_" ++ Suffix ++ "@127.0.0.1"),
    case net_kernel:start([Tester, longnames]) of
        {ok, _} -> ok;
        Err -> io:format("FAIL setup: cannot start distribution on ~s: ~p~n", [Tester, Err]), halt(2)
    end,
    Cookie = "contract_cookie_" ++ Suffix,
    erlang:set_cookie(node(), list_to_atom(Cookie)),
    Nut = list_to_atom("nut_" ++ Suffix ++ "@127.0.0.1"),
    io:format("contract: NUT ~s, tester ~s, epmd port ~b, OTP ~s~n  NUT_CMD: ~s~n",
              [Nut, Tester, EpmdPort, erlang:system_info(otp_release), Cmd]),
    Ctx0 = #{nut => Nut, cookie => Cookie, suffix => Suffix, opts => Opts,
             epmd_port => EpmdPort, cmd => lists:flatten(Cmd)},
    Owner = start_nut(Ctx0),
    Ctx = Ctx0#{owner => Owner},
    Results = try run_all(Ctx)
              after cleanup(Ctx)
              end,
    Fails = [N || {N, {fail, _}} <- Results],
    Passes = [N || {N, ok} <- Results],
    Skips = [N || {N, {skip, _}} <- Results],
    io:format("~ncontract: ~b passed, ~b failed, ~b skipped~n",
              [length(Passes), length(Fails), length(Skips)]),
    case Fails of
        [] -> halt(0);
        _ ->
            io:format("failed: ~s~n", [lists:join(" ", Fails)]),
            halt(1)
    end.

usage() ->
    io:format(standard_error,
              "usage: escript contract.escript [--ticks] [--funs] [--verbose] [--only SUBSTRING]... [--skip SUBSTRING]...~n"
              "                                [--ready-timeout SECONDS] NUT_CMD~n", []),
    halt(2).

parse_args([], Opts) -> Opts;
parse_args(["--ticks" | R], O) -> parse_args(R, O#{ticks := true});
parse_args(["--funs" | R], O) -> parse_args(R, O#{funs := true});
parse_args(["--verbose" | R], O) -> parse_args(R, O#{verbose := true});
parse_args(["--only", S | R], O = #{only := L}) -> parse_args(R, O#{only := [S | L]});
parse_args(["--skip", S | R], O = #{skip := L}) -> parse_args(R, O#{skip := [S | L]});
parse_args(["--ready-timeout", S | R], O) -> parse_args(R, O#{ready_timeout := list_to_integer(S)});
parse_args(["--" ++ _ = Opt | _], _) ->
    io:format(standard_error, "contract.escript: unknown option ~s~n", [Opt]), usage();
parse_args([W | R], O = #{cmd := C}) -> parse_args(R, O#{cmd := [W | C]}).

run_all(Ctx) ->
    Ready = ready_check(Ctx),
    case Ready of
        {_, ok} ->
            NutPid = try spawn_echo(Ctx) catch _:_ -> undefined end,
            Ctx1 = Ctx#{nut_pid => NutPid},
            [Ready | lists:append([run_check(C, Ctx1) || C <- checks(Ctx1)])];
        _ ->
            [Ready]
    end.

%% ===========================================================================
%% The checks: {Name, Timeout, Fun(Ctx) -> ok | {ok, Info} | {skip, Why} |
%% {multi, [{SubName, ok | {ok, Info} | {fail, Why}}]}}; a failure is thrown
%% with fail/2.

checks(Ctx = #{opts := Opts}) ->
    Funs = maps:get(funs, Opts),
    Terms = roundtrip_terms(Ctx),
    [{"start.epmd_registration", ?CHECK_TIMEOUT, fun check_epmd_registration/1},
     {"dist.ping", ?CHECK_TIMEOUT, fun check_ping/1},
     {"dist.is_auth_gen_call", ?CHECK_TIMEOUT, fun check_is_auth/1},
     {"dist.handshake_flags", ?CHECK_TIMEOUT, fun check_handshake_flags/1},
     {"dist.advertises_atom_cache_and_fragments", ?CHECK_TIMEOUT, fun check_cache_and_fragments/1},
     {"dist.wrong_cookie_no_challenge_ack", ?CHECK_TIMEOUT, fun check_wrong_cookie_raw/1},
     {"dist.wrong_cookie_pang", ?CHECK_TIMEOUT, fun check_wrong_cookie_pang/1},
     {"dist.passthrough_to_peer_without_fragments", ?CHECK_TIMEOUT, fun check_passthrough/1},
     {"start.creation", ?CHECK_TIMEOUT, fun check_creation/1},
     {"echo.registered", ?CHECK_TIMEOUT, fun check_echo_registered/1},
     {"echo.spawn", ?CHECK_TIMEOUT, fun check_spawn/1},
     {"echo.ignores_other_messages", ?CHECK_TIMEOUT, fun check_ignores_other/1}]
    ++ [{"echo.roundtrip." ++ N, timeout_for(N), fun(C) -> roundtrip({echo, maps:get(nut, C)}, T) end}
        || {N, T} <- Terms]
    ++ [{"echo.roundtrip_via_pid." ++ N, timeout_for(N), fun(C) -> roundtrip(spawn_echo(C), T) end}
        || {N, T} <- Terms, lists:member(N, via_pid_subset())]
    ++ case Funs of
           true -> [{"echo.roundtrip.fun." ++ N, ?CHECK_TIMEOUT, fun(C) -> roundtrip({echo, maps:get(nut, C)}, T) end}
                    || {N, T} <- fun_terms()];
           false -> []
       end
    ++ [{"echo.crash", ?CHECK_TIMEOUT, fun check_crash/1},
        {"echo.link_me", ?CHECK_TIMEOUT, fun check_link_me/1},
        {"echo.trap", ?CHECK_TIMEOUT, fun check_trap/1},
        {"echo.monitor", ?CHECK_TIMEOUT, fun check_monitor/1},
        {"echo.monitor_erl_pid", ?CHECK_TIMEOUT, fun check_monitor_erl_pid/1},
        {"echo.monitor_dead_pid", ?CHECK_TIMEOUT, fun check_monitor_dead_pid/1},
        {"echo.monitor_node_unreachable", ?CHECK_TIMEOUT, fun check_monitor_node_unreachable/1},
        {"echo.monitor_node_goes_away", ?CHECK_TIMEOUT, fun check_monitor_node_goes_away/1},
        {"echo.send_pid", ?CHECK_TIMEOUT, fun check_send_pid/1},
        {"echo.send_local_name", ?CHECK_TIMEOUT, fun check_send_local_name/1},
        {"echo.send_name_node", ?CHECK_TIMEOUT, fun check_send_name_node/1},
        {"echo.send_name_own_node", ?CHECK_TIMEOUT, fun check_send_name_own_node/1},
        {"link.crash_kills_linked_erl_process", ?CHECK_TIMEOUT, fun check_link_crash_kills/1},
        {"link.unlink", ?CHECK_TIMEOUT, fun check_unlink/1},
        {"link.dead_pid_noproc", ?CHECK_TIMEOUT, fun check_link_dead/1},
        {"monitor.dead_pid_noproc", ?CHECK_TIMEOUT, fun check_monitor_dead_noproc/1},
        {"monitor.unknown_name_noproc", ?CHECK_TIMEOUT, fun check_monitor_unknown_name/1},
        {"exit.kill", ?CHECK_TIMEOUT, fun check_exit_kill/1},
        {"exit.kill_not_trappable", ?CHECK_TIMEOUT, fun check_exit_kill_trapping/1},
        {"exit.normal_ignored", ?CHECK_TIMEOUT, fun check_exit_normal_ignored/1},
        {"exit.other_kills", ?CHECK_TIMEOUT, fun check_exit_other_kills/1},
        {"exit.trap_sees_exit", ?CHECK_TIMEOUT, fun check_trap_sees_exit/1},
        {"exit.trap_sees_normal", ?CHECK_TIMEOUT, fun check_trap_sees_normal/1},
        {"exit.trap_sees_link_exit", ?CHECK_TIMEOUT, fun check_trap_sees_link_exit/1},
        {"exit.link_normal_ignored", ?CHECK_TIMEOUT, fun check_link_normal_ignored/1},
        {"exit.link_other_kills", ?CHECK_TIMEOUT, fun check_link_other_kills/1},
        {"exit.link_killed", ?CHECK_TIMEOUT, fun check_link_killed/1},
        {"dist.unknown_name_dropped", ?CHECK_TIMEOUT, fun check_unknown_name_dropped/1},
        {"dist.dead_pid_dropped", ?CHECK_TIMEOUT, fun check_dead_pid_dropped/1},
        {"dist.old_creation_pid", ?CHECK_TIMEOUT, fun check_old_creation/1},
        {"dist.auto_connect", ?CHECK_TIMEOUT, fun check_auto_connect/1},
        {"dist.connection_loss", ?CHECK_TIMEOUT, fun check_connection_loss/1},
        {"dist.ticks", ?BIG_TIMEOUT, fun check_ticks/1},
        {"start.ready_once_and_running", ?CHECK_TIMEOUT, fun check_still_running/1},
        {"dist.nodedown_when_nut_killed", ?CHECK_TIMEOUT, fun check_nut_killed/1}].

timeout_for(Name) ->
    case lists:member(Name, big_terms()) of
        true -> ?BIG_TIMEOUT;
        false -> ?CHECK_TIMEOUT
    end.

big_terms() ->
    ["binary.1mb", "binary.10mb", "bitstring.1mb_plus_5_bits", "list.100k_ints", "list.100k_mixed",
     "tuple.100k", "string.65535", "string.65536"].

via_pid_subset() ->
    ["int.i64_min", "float.neg_zero", "atom.utf8_lambda", "binary.1mb", "bitstring.255_3_2",
     "string.abc", "list.improper", "tuple.100k", "map.1000_mixed_keys", "pid.third",
     "ref.third_5_words", "port.third_v4", "nest.mixed_1000"].

%% ---------------------------------------------------------------- start.*

ready_check(Ctx = #{owner := Owner}) ->
    Secs = maps:get(ready_timeout, maps:get(opts, Ctx)),
    T0 = erlang:monotonic_time(millisecond),
    R = receive
            {Owner, ready} ->
                {ok, io_lib:format("after ~b ms", [erlang:monotonic_time(millisecond) - T0])};
            {Owner, exited, Status} ->
                {fail, io_lib:format("the NUT exited with status ~p before printing ready", [Status])}
        after Secs * 1000 ->
                {fail, io_lib:format("no `ready` line within ~b s", [Secs])}
        end,
    Res = report("start.ready", R),
    case Res of
        {fail, _} -> print_nut_log(Ctx);
        ok -> ok
    end,
    {"start.ready", Res}.

check_epmd_registration(#{nut := Nut}) ->
    case epmd_port_please(short_name(Nut)) of
        {ok, #{type := 77, proto := 0, high := 6, low := 6, port := P}} ->
            {ok, io_lib:format("port ~b, type 77, protocol 0, versions 6..6", [P])};
        {ok, #{type := Ty, proto := Pr, high := H, low := L}} ->
            %% OTP 25's own erl registers versions 5..6 here.
            fail("PORT2_RESP has node type ~b, protocol ~b, versions ~b..~b; want 77, 0, 6..6",
                 [Ty, Pr, L, H]);
        {error, Why} ->
            fail("EPMD does not know the NUT right after `ready`: ~p", [Why])
    end.

check_creation(Ctx = #{nut := Nut}) ->
    Echo = echo_pid(Ctx),
    Spawned = spawn_echo(Ctx),
    C1 = creation(Echo),
    C2 = creation(Spawned),
    [fail("~s has creation 0", [What]) || {What, 0} <- [{"the echo pid", C1}, {"a spawned pid", C2}]],
    C1 =:= C2 orelse fail("the echo pid has creation ~b, a spawned pid ~b", [C1, C2]),
    node(Echo) =:= Nut orelse fail("the echo pid is on ~p", [node(Echo)]),
    case ets:lookup(contract, nut_creation) of
        [{_, C1}] -> {ok, io_lib:format("~b, as in the handshake", [C1])};
        [{_, H}] -> fail("pids have creation ~b, the handshake said ~b", [C1, H]);
        [] -> {ok, io_lib:format("~b (no handshake creation to compare)", [C1])}
    end.

check_still_running(#{owner := Owner}) ->
    Owner ! {self(), info},
    receive
        {Owner, info, #{exit := undefined, ready := 1}} -> ok;
        {Owner, info, #{exit := undefined, ready := N}} -> fail("printed `ready` ~b times", [N]);
        {Owner, info, #{exit := S}} -> fail("the NUT exited on its own (status ~p)", [S])
    after ?T -> fail("the NUT owner does not answer", [])
    end.

%% ----------------------------------------------------------------- dist.*

check_ping(#{nut := Nut}) ->
    case net_adm:ping(Nut) of
        pong -> ok;
        pang -> fail("net_adm:ping returned pang", [])
    end.

check_is_auth(#{nut := Nut}) ->
    case catch gen_server:call({net_kernel, Nut}, {is_auth, node()}, ?T) of
        yes -> ok;
        Other -> fail("gen_server:call({net_kernel, NUT}, {is_auth, node()}) gave ~s", [short(Other)])
    end.

check_handshake_flags(Ctx = #{cookie := Cookie}) ->
    #{flags := Flags, creation := Creation, name := Name, socket := S} =
        raw_handshake(Ctx, ?CONTRACT_FLAGS, Cookie),
    gen_tcp:close(S),
    ets:insert(contract, {nut_flags, Flags}),
    ets:insert(contract, {nut_creation, Creation}),
    Missing = [F || {F, Bit} <- required_flags(), Flags band Bit =:= 0],
    Creation =/= 0 orelse fail("creation 0 in the challenge", []),
    Name =:= atom_to_binary(maps:get(nut, Ctx)) orelse fail("the challenge names ~s", [Name]),
    case Missing of
        [] -> {ok, io_lib:format("flags 16#~.16B, creation ~b", [Flags, Creation])};
        _ -> fail("flags 16#~.16B lack ~s", [Flags, lists:join(", ", Missing)])
    end.

check_cache_and_fragments(_Ctx) ->
    case ets:lookup(contract, nut_flags) of
        [] -> fail("no flags (dist.handshake_flags failed)", []);
        [{_, F}] ->
            Missing = [N || {N, B} <- [{"DIST_HDR_ATOM_CACHE", ?DFLAG_DIST_HDR_ATOM_CACHE},
                                       {"FRAGMENTS", ?DFLAG_FRAGMENTS}], F band B =:= 0],
            case Missing of
                [] -> {ok, "so erl's big and repeated-atom messages in this suite use both"};
                _ -> fail("~s not advertised: erl never uses them, so the contract's 'understands' "
                          "cannot be checked", [lists:join(" and ", Missing)])
            end
    end.

check_wrong_cookie_raw(Ctx) ->
    #{socket := S, status := closed_without_ack} =
        raw_handshake(Ctx, ?CONTRACT_FLAGS, "not_the_cookie"),
    gen_tcp:close(S),
    ok.

check_wrong_cookie_pang(Ctx = #{nut := Nut}) ->
    {Peer, _Node, _} = start_helper(Ctx, "wrongcookie", "not_the_cookie"),
    R = peer:call(Peer, net_adm, ping, [Nut], ?T * 2),
    stop_helper(Peer),
    R =:= pang orelse fail("ping from a node with another cookie gave ~p", [R]),
    ok.

%% A raw peer without DIST_HDR_ATOM_CACHE and FRAGMENTS sends a 200 KB
%% binary to `echo`; every frame back must be a tick or a pass-through (112)
%% frame, and the reply must be the term.
check_passthrough(Ctx = #{cookie := Cookie}) ->
    #{socket := S, our_name := Me, our_creation := MyCreation} =
        raw_handshake(Ctx, ?CONTRACT_FLAGS, Cookie),
    ok = inet:setopts(S, [{packet, 4}]),
    From = make_pid(binary_to_atom(Me), 1, 0, MyCreation),
    Ref = make_ref(),
    Big = pattern(200000),
    Ctrl = term_to_binary({6, From, '', echo}, [{minor_version, 2}]),
    Msg = term_to_binary({From, Ref, Big}, [{minor_version, 2}]),
    ok = gen_tcp:send(S, [112, Ctrl, Msg]),
    R = passthrough_reply(S, From, {Ref, Big}, 0, erlang:monotonic_time(millisecond) + ?T),
    gen_tcp:close(S),
    R.

passthrough_reply(S, From, Want, Frames, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case gen_tcp:recv(S, 0, Left) of
        {ok, <<>>} ->
            ok = gen_tcp:send(S, <<>>),
            passthrough_reply(S, From, Want, Frames, Deadline);
        {ok, <<112, Rest/binary>>} ->
            {Ctl, Used} = binary_to_term(Rest, [used]),
            <<_:Used/binary, MsgBin/binary>> = Rest,
            case Ctl of
                {Op, _, From} when Op =:= 2; Op =:= 22 ->
                    case binary_to_term(MsgBin) of
                        Want -> {ok, io_lib:format("reply in pass-through frames (op ~b), ~b other frames",
                                                   [Op, Frames])};
                        Other -> fail("the reply differs: ~s", [short(Other)])
                    end;
                _ ->
                    passthrough_reply(S, From, Want, Frames + 1, Deadline)
            end;
        {ok, <<131, 68, _/binary>>} ->
            fail("sent a DIST_HEADER (131,68) to a peer without DIST_HDR_ATOM_CACHE", []);
        {ok, <<131, T, _/binary>>} when T =:= 69; T =:= 70 ->
            fail("sent a fragment (131,~b) to a peer without FRAGMENTS", [T]);
        {ok, <<B, _/binary>>} ->
            fail("sent a frame starting with ~b", [B]);
        {error, Why} ->
            fail("no reply to a REG_SEND from a raw peer: ~p", [Why])
    end.

check_unknown_name_dropped(#{nut := Nut}) ->
    monitor_node(Nut, true),
    {no_such_name_contract, Nut} ! {self(), make_ref(), hello},
    roundtrip({echo, Nut}, after_unknown_name),
    quiet_nodedown(Nut),
    monitor_node(Nut, false),
    ok.

check_dead_pid_dropped(Ctx = #{nut := Nut}) ->
    P = dead_nut_pid(Ctx),
    monitor_node(Nut, true),
    R = make_ref(),
    P ! {self(), R, hello},
    roundtrip({echo, Nut}, after_dead_pid),
    no_message(R, "a reply from a dead pid"),
    quiet_nodedown(Nut),
    monitor_node(Nut, false),
    ok.

check_old_creation(Ctx = #{nut := Nut}) ->
    P = spawn_echo(Ctx),
    C = creation(P),
    Old = with_creation(P, case C of 16#FFFFFFFF -> 1; _ -> C + 1 end),
    monitor_node(Nut, true),
    R = make_ref(),
    Old ! {self(), R, hello},
    no_message(R, "a reply through a pid with another creation"),
    roundtrip(P, still_alive),
    quiet_nodedown(Nut),
    monitor_node(Nut, false),
    ok.

%% The NUT connects to a node it has never talked to, by {Name, Node} and by
%% pid (after the helper dropped the connection).
check_auto_connect(Ctx = #{nut := Nut}) ->
    {Peer, H, _} = start_helper(Ctx, "third"),
    Sink = start_sink(Peer),
    not lists:member(Nut, peer:call(Peer, erlang, nodes, [])) orelse fail("already connected", []),
    T1 = {by_name, make_ref()},
    sent = call({echo, Nut}, [send, {sink, H}, T1]),
    R1 = expect_sink(H, T1, "the send to {sink, Helper}"),
    true = peer:call(Peer, erlang, disconnect_node, [Nut]),
    wait_until(fun() -> not lists:member(Nut, peer:call(Peer, erlang, nodes, [])) end, "disconnect"),
    T2 = {by_pid, make_ref()},
    sent = call({echo, Nut}, [send, Sink, T2]),
    R2 = expect_sink(H, T2, "the send to the helper's pid"),
    stop_helper(Peer),
    {multi, [{"by_name", R1}, {"by_pid", R2}]}.

expect_sink(H, T, What) ->
    receive
        {sink, H, T} -> ok
    after ?T -> {fail, lists:flatten(io_lib:format("~s never arrived", [What]))}
    end.

%% A helper node's process P links to two NUT processes (one trapping) and one
%% NUT process monitors P; a fourth watches the helper node. Then the helper
%% is killed with SIGKILL.
check_connection_loss(Ctx = #{nut := Nut}) ->
    Self = self(),
    {Peer, H, OsPid} = start_helper(Ctx, "loss"),
    [Linked, Trapping, Monitoring, NodeWatch] = [spawn_echo(Ctx) || _ <- [1, 2, 3, 4]],
    trapping = call(Trapping, [trap]),
    P = peval(Peer,
              "spawn(fun() ->"
              "  [begin R = make_ref(), E ! {self(), R, link_me},"
              "         receive {R, linked} -> ok after 10000 -> exit(no_link) end end || E <- Es],"
              "  To ! {helper_linked, self()},"
              "  receive stop -> ok end"
              " end).",
              [{'Es', [Linked, Trapping]}, {'To', Self}]),
    receive {helper_linked, P} -> ok after ?T -> fail("the helper's process did not link", []) end,
    monitoring = call(Monitoring, [monitor, P]),
    monitoring_node = call(NodeWatch, [monitor_node, H]),
    M = erlang:monitor(process, Linked),
    monitor_node(Nut, true),
    kill_os_pid(OsPid),
    Deadline = erlang:monotonic_time(millisecond) + 15000,
    Got = fun(Pat, What) -> await(Pat, Deadline, What) end,
    Results =
        [{"link_noconnection",
          Got(fun({'DOWN', M0, process, _, noconnection}) when M0 =:= M -> true; (_) -> false end,
              "the linked NUT process did not die with noconnection")},
         {"trapped_link_exit_seen",
          Got(fun({exit_seen, P0, noconnection}) when P0 =:= P -> true; (_) -> false end,
              "no {exit_seen, HelperPid, noconnection}")},
         {"monitor_down_noconnection",
          Got(fun({down_seen, P0, noconnection}) when P0 =:= P -> true; (_) -> false end,
              "no {down_seen, HelperPid, noconnection}")},
         {"monitor_node_nodedown",
          Got(fun({nodedown_seen, H0}) when H0 =:= H -> true; (_) -> false end,
              "no {nodedown_seen, Helper}")}],
    %% The NUT itself must still be there.
    receive {nodedown, Nut} -> fail("the tester lost the NUT too", []) after 0 -> ok end,
    roundtrip({echo, Nut}, after_loss),
    monitor_node(Nut, false),
    stop_helper(Peer),
    {multi, Results}.

%% Ticks: three helpers connect to the NUT. `idle` then does nothing, `sender`
%% only sends (to an unknown name, so the NUT never answers), `silent` is
%% stopped with SIGSTOP. After 80 s the first two must still be connected
%% (both sides), and the NUT must have dropped the third after roughly its
%% tick timeout (60 s).
check_ticks(#{opts := #{ticks := false}}) ->
    {skip, "takes ~90 s; run with --ticks"};
check_ticks(Ctx = #{nut := Nut}) ->
    Self = self(),
    Helpers = [{Role, start_helper(Ctx, "tick_" ++ atom_to_list(Role))} || Role <- [idle, sender, silent]],
    [pong = peer:call(Peer, net_adm, ping, [Nut]) || {_, {Peer, _, _}} <- Helpers],
    Watch = spawn_echo(Ctx),
    [monitoring_node = call(Watch, [monitor_node, H]) || {_, {_, H, _}} <- Helpers],
    [peval(Peer, "spawn(fun() -> monitor_node(Nut, true),"
                 "  receive {nodedown, N} -> To ! {helper_nodedown, node(), N} end end).",
           [{'Nut', Nut}, {'To', Self}])
     || {Role, {Peer, _, _}} <- Helpers, Role =/= silent],
    {_, {SenderPeer, _, _}} = lists:keyfind(sender, 1, Helpers),
    peval(SenderPeer, "spawn(fun F() -> {no_such_name_contract, Nut} ! tick_test,"
                      " timer:sleep(200), F() end).", [{'Nut', Nut}]),
    {_, {_, Idle, _}} = lists:keyfind(idle, 1, Helpers),
    {_, {_, Sender, _}} = lists:keyfind(sender, 1, Helpers),
    {_, {_, Silent, SilentOs}} = lists:keyfind(silent, 1, Helpers),
    %% The delayed CONT frees the helper even if this escript dies meanwhile
    %% (a stopped node cannot notice that its control pipe closed).
    os:cmd("kill -STOP " ++ SilentOs ++ " && (sleep 150; kill -CONT " ++ SilentOs ++ ") >/dev/null 2>&1 &"),
    T0 = erlang:monotonic_time(millisecond),
    Events = collect_for(T0 + 85000, []),
    os:cmd("kill -CONT " ++ SilentOs),
    [stop_helper(P) || {_, {P, _, _}} <- Helpers],
    Lost = fun(H) -> [E || E = {_, {Tag, X, _}} <- Events, Tag =:= helper_nodedown, X =:= H]
                         ++ [E || E = {_, {nodedown_seen, X}} <- Events, X =:= H] end,
    Up = fun(H) -> case Lost(H) of
                       [] -> ok;
                       [{At, _} | _] -> {fail, lists:flatten(io_lib:format("dropped after ~b s", [(At - T0) div 1000]))}
                   end end,
    Dropped = case [At || {At, {nodedown_seen, X}} <- Events, X =:= Silent] of
                  [At | _] when At - T0 >= 30000, At - T0 =< 100000 ->
                      {ok, io_lib:format("after ~b s", [(At - T0) div 1000])};
                  [At | _] -> {fail, lists:flatten(io_lib:format("dropped after ~b s, want 30..100 s",
                                                                 [(At - T0) div 1000]))};
                  [] -> {fail, "the NUT never dropped a peer that stopped"}
              end,
    {multi, [{"idle_connection_stays_up", Up(Idle)},
             {"sending_peer_stays_up", Up(Sender)},
             {"silent_peer_dropped", Dropped}]}.

collect_for(Until, Acc) ->
    Left = Until - erlang:monotonic_time(millisecond),
    receive
        M when Left > 0 -> collect_for(Until, [{erlang:monotonic_time(millisecond), M} | Acc])
    after max(0, Left) -> lists:reverse(Acc)
    end.

%% Last check: SIGKILL the NUT; the tester sees nodedown, DOWN noconnection
%% and EXIT noconnection.
check_nut_killed(Ctx = #{nut := Nut, owner := Owner}) ->
    process_flag(trap_exit, true),
    P = spawn_echo(Ctx),
    linked = call(P, [link_me]),
    M = erlang:monitor(process, P),
    monitor_node(Nut, true),
    Owner ! {self(), kill},
    receive {Owner, killed} -> ok after ?T -> fail("could not kill the NUT", []) end,
    Deadline = erlang:monotonic_time(millisecond) + 15000,
    {multi,
     [{"nodedown", await(fun({nodedown, N}) -> N =:= Nut; (_) -> false end, Deadline, "no nodedown")},
      {"monitor_noconnection",
       await(fun({'DOWN', M0, process, _, noconnection}) -> M0 =:= M; (_) -> false end, Deadline,
             "no DOWN noconnection")},
      {"link_noconnection",
       await(fun({'EXIT', P0, noconnection}) -> P0 =:= P; (_) -> false end, Deadline,
             "no EXIT noconnection")}]}.

%% ----------------------------------------------------------------- echo.*

check_echo_registered(#{nut := Nut}) ->
    roundtrip({echo, Nut}, {hello, [1, 2, 3]}).

check_spawn(Ctx = #{nut := Nut}) ->
    P = spawn_echo(Ctx),
    node(P) =:= Nut orelse fail("the new pid ~p is on ~p", [P, node(P)]),
    P =/= echo_pid(Ctx) orelse fail("spawn returned the echo process itself", []),
    roundtrip(P, from_spawned),
    P2 = call(P, [spawn]),
    (is_pid(P2) andalso node(P2) =:= Nut andalso P2 =/= P) orelse fail("a spawned process's spawn gave ~p", [P2]),
    roundtrip(P2, from_grandchild).

check_ignores_other(Ctx = #{nut := Nut}) ->
    P = spawn_echo(Ctx),
    R = make_ref(),
    NotPid = binary_to_term(term_to_binary(R)),
    Junk = [hello, {self(), R}, {NotPid, R, x}, {self(), R, a, b}, {self(), R, a, b, c},
            {self(), R, a, b, c, d}, [self(), R, x], #{from => self()}, <<"x">>],
    [Dest ! J || Dest <- [P, {echo, Nut}], J <- Junk],
    no_message(R, "a reply to a message that is not a request"),
    roundtrip(P, still_going),
    roundtrip({echo, Nut}, still_going).

check_crash(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    R = make_ref(),
    P ! {self(), R, crash},
    expect_down(M, {crashed, R}).

check_link_me(Ctx) ->
    process_flag(trap_exit, true),
    P = spawn_echo(Ctx),
    linked = call(P, [link_me]),
    {links, Links} = process_info(self(), links),
    lists:member(P, Links) orelse fail("the LINK had not arrived when the reply did", []),
    R = make_ref(),
    P ! {self(), R, crash},
    receive
        {'EXIT', P, {crashed, R}} -> ok;
        {'EXIT', P, Other} -> fail("EXIT with ~s", [short(Other)])
    after ?T -> fail("no EXIT from the linked process that crashed", [])
    end.

check_trap(Ctx) ->
    P = spawn_echo(Ctx),
    trapping = call(P, [trap]),
    exit(P, because),
    receive {exit_seen, Self, because} when Self =:= self() -> ok
    after ?T -> fail("no {exit_seen, Tester, because}", [])
    end,
    roundtrip(P, still_alive).

check_monitor(Ctx) ->
    [P1, P2] = [spawn_echo(Ctx), spawn_echo(Ctx)],
    monitoring = call(P1, [monitor, P2]),
    R = make_ref(),
    P2 ! {self(), R, crash},
    expect_msg({down_seen, P2, {crashed, R}}).

check_monitor_erl_pid(Ctx) ->
    P = spawn_echo(Ctx),
    L = spawn(fun() -> receive go -> exit(bye) end end),
    monitoring = call(P, [monitor, L]),
    L ! go,
    expect_msg({down_seen, L, bye}).

check_monitor_dead_pid(Ctx) ->
    P = spawn_echo(Ctx),
    L = dead_local_pid(),
    monitoring = call(P, [monitor, L]),
    expect_msg({down_seen, L, noproc}).

check_monitor_node_unreachable(Ctx = #{suffix := Suffix}) ->
    N = list_to_atom("nobody_" ++ Suffix ++ "@127.0.0.1"),
    P = spawn_echo(Ctx),
    monitoring_node = call(P, [monitor_node, N]),
    expect_msg({nodedown_seen, N}, 15000).

check_monitor_node_goes_away(Ctx = #{nut := Nut}) ->
    {Peer, H, OsPid} = start_helper(Ctx, "away"),
    start_sink(Peer),
    T = {connect, make_ref()},
    sent = call({echo, Nut}, [send, {sink, H}, T]),
    receive {sink, H, T} -> ok after ?T -> fail("the NUT could not reach the helper", []) end,
    P = spawn_echo(Ctx),
    monitoring_node = call(P, [monitor_node, H]),
    kill_os_pid(OsPid),
    R = expect_msg({nodedown_seen, H}, 15000),
    stop_helper(Peer),
    R.

check_send_pid(#{nut := Nut}) ->
    T = {to_pid, make_ref()},
    sent = call({echo, Nut}, [send, self(), T]),
    expect_msg(T).

check_send_local_name(#{nut := Nut}) ->
    R = make_ref(),
    sent = call({echo, Nut}, [send, echo, {self(), R, via_local_name}]),
    expect_msg({R, via_local_name}).

check_send_name_node(_Ctx = #{nut := Nut}) ->
    Name = list_to_atom("contract_sink_" ++ integer_to_list(erlang:unique_integer([positive]))),
    register(Name, self()),
    T = {to_name, make_ref()},
    sent = call({echo, Nut}, [send, {Name, node()}, T]),
    expect_msg(T).

check_send_name_own_node(#{nut := Nut}) ->
    R = make_ref(),
    sent = call({echo, Nut}, [send, {echo, Nut}, {self(), R, via_name_node}]),
    expect_msg({R, via_name_node}).

%% --------------------------------------------------------- link.*, exit.*

check_link_crash_kills(Ctx) ->
    P = spawn_echo(Ctx),
    Self = self(),
    R = make_ref(),
    {L, M} = spawn_monitor(fun() ->
                                   linked = call(P, [link_me]),
                                   Self ! {self(), linked},
                                   receive never -> ok end
                           end),
    receive {L, linked} -> ok after ?T -> fail("link_me from an erl process failed", []) end,
    P ! {self(), R, crash},
    expect_down(M, {crashed, R}).

check_unlink(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    {L, LM} = spawn_monitor(fun() -> link(P), unlink(P), exit(boom) end),
    receive {'DOWN', LM, process, L, boom} -> ok after ?T -> fail("helper did not exit", []) end,
    roundtrip(P, after_unlink),
    receive {'DOWN', M, process, P, Why} -> fail("died with ~s after an unlink", [short(Why)]) after 0 -> ok end.

check_link_dead(Ctx) ->
    process_flag(trap_exit, true),
    P = dead_nut_pid(Ctx),
    link(P),
    receive {'EXIT', P, noproc} -> ok;
            {'EXIT', P, Other} -> fail("EXIT with ~s", [short(Other)])
    after ?T -> fail("no {'EXIT', Pid, noproc} for a link to a dead pid", [])
    end.

check_monitor_dead_noproc(Ctx) ->
    P = dead_nut_pid(Ctx),
    M = erlang:monitor(process, P),
    expect_down(M, noproc).

check_monitor_unknown_name(#{nut := Nut}) ->
    M = erlang:monitor(process, {no_such_name_contract, Nut}),
    expect_down(M, noproc).

check_exit_kill(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    exit(P, kill),
    expect_down(M, killed).

check_exit_kill_trapping(Ctx) ->
    P = spawn_echo(Ctx),
    trapping = call(P, [trap]),
    M = erlang:monitor(process, P),
    exit(P, kill),
    expect_down(M, killed),
    receive {exit_seen, _, kill} -> fail("a trapping process saw kill as a message", []) after 0 -> ok end.

check_exit_normal_ignored(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    exit(P, normal),
    roundtrip(P, still_alive),
    receive {'DOWN', M, process, P, Why} -> fail("died with ~s", [short(Why)]) after 0 -> ok end.

check_exit_other_kills(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    exit(P, {some, reason}),
    expect_down(M, {some, reason}).

check_trap_sees_exit(Ctx) ->
    P = spawn_echo(Ctx),
    trapping = call(P, [trap]),
    exit(P, {some, reason}),
    Self = self(),
    expect_msg({exit_seen, Self, {some, reason}}),
    roundtrip(P, still_alive).

check_trap_sees_normal(Ctx) ->
    P = spawn_echo(Ctx),
    trapping = call(P, [trap]),
    exit(P, normal),
    Self = self(),
    expect_msg({exit_seen, Self, normal}),
    roundtrip(P, still_alive).

check_trap_sees_link_exit(Ctx) ->
    P = spawn_echo(Ctx),
    trapping = call(P, [trap]),
    L = spawn(fun() -> link(P), receive go -> exit(boom) end end),
    wait_linked(L, P),
    L ! go,
    expect_msg({exit_seen, L, boom}),
    roundtrip(P, still_alive).

check_link_normal_ignored(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    L = spawn(fun() -> link(P), receive go -> ok end end),
    wait_linked(L, P),
    L ! go,
    wait_dead(L),
    roundtrip(P, still_alive),
    receive {'DOWN', M, process, P, Why} -> fail("died with ~s", [short(Why)]) after 0 -> ok end.

check_link_other_kills(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    L = spawn(fun() -> link(P), receive go -> exit(boom) end end),
    wait_linked(L, P),
    L ! go,
    expect_down(M, boom).

check_link_killed(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    L = spawn(fun() -> link(P), receive never -> ok end end),
    wait_linked(L, P),
    exit(L, kill),
    expect_down(M, killed).

%% ===========================================================================
%% Terms for the echo round trips.

roundtrip_terms(#{nut := Nut} = Ctx) ->
    NutPid = maps:get(nut_pid, Ctx, undefined),
    NutCreation = case NutPid of undefined -> 1; _ -> creation(NutPid) end,
    Hello = list_to_atom([$h, 16#E9, $l, $l, $o]),
    Lambda = list_to_atom([955]),
    Port = hd(erlang:ports()),
    [{"int.0", 0}, {"int.255", 255}, {"int.256", 256}, {"int.neg_1", -1},
     {"int.i32_max", 2147483647}, {"int.i32_min", -2147483648},
     {"int.i32_max_plus_1", 2147483648}, {"int.i32_min_minus_1", -2147483649},
     {"int.i64_max", 9223372036854775807}, {"int.i64_min", -9223372036854775808},
     {"int.u64_max", 18446744073709551615}, {"int.u64_max_plus_1", 18446744073709551616},
     {"int.neg_u64_max_plus_1", -18446744073709551616},
     {"big.255_bytes", (1 bsl 2040) - 1}, {"big.256_bytes", 1 bsl 2040},
     {"big.4000_bits", (1 bsl 3999) + 12345}, {"big.neg_4000_bits", -((1 bsl 3999) + 12345)},
     {"big.10_pow_3000", pow10(3000)}, {"big.65536_bits", (1 bsl 65535) + 1},
     {"float.zero", float_bits(0)}, {"float.neg_zero", float_bits(16#8000000000000000)},
     {"float.1_5", 1.5}, {"float.neg_0_1", -0.1},
     {"float.subnormal_min", float_bits(1)}, {"float.subnormal_max", float_bits(16#000FFFFFFFFFFFFF)},
     {"float.max", float_bits(16#7FEFFFFFFFFFFFFF)}, {"float.neg_max", float_bits(16#FFEFFFFFFFFFFFFF)},
     {"float.neg_zero_in_list", [0.0, float_bits(16#8000000000000000), 0.0]},
     {"atom.empty", ''}, {"atom.ok", ok}, {"atom.utf8_latin1", Hello}, {"atom.utf8_lambda", Lambda},
     {"atom.255_chars", list_to_atom(lists:duplicate(255, $a))},
     {"atom.255_lambdas", list_to_atom(lists:duplicate(255, 955))},
     {"atom.many_repeated", lists:append(lists:duplicate(50, [ok, error, Lambda, Hello, '', undefined]))},
     {"binary.empty", <<>>}, {"binary.small", <<"hello">>},
     {"binary.64k_plus_1", pattern(65537)}, {"binary.1mb", rand:bytes(1 bsl 20)},
     {"binary.10mb", rand:bytes(10000000)},
     {"binary.sub_binary", binary:part(pattern(1000), 3, 500)},
     {"bitstring.1_3", <<1:3>>}, {"bitstring.255_3_2", <<255, 3:2>>}, {"bitstring.7_bits", <<16#7F:7>>},
     {"bitstring.1mb_plus_5_bits", <<(pattern(1 bsl 20))/binary, 21:5>>},
     {"string.empty", ""}, {"string.abc", "abc"}, {"string.bytes_0_255", lists:seq(0, 255)},
     {"string.65535", lists:duplicate(65535, $x)}, {"string.65536", lists:duplicate(65536, $x)},
     {"string.unicode", [955, 233, 8364, 16#1F600]},
     {"list.100k_ints", lists:seq(1000, 101000 - 1)},
     {"list.100k_mixed", [mixed(I) || I <- lists:seq(1, 100000)]},
     {"list.improper", [1 | 2]}, {"list.improper_3", [a, b | c]},
     {"list.improper_binary_tail", [1, 2 | <<"t">>]}, {"list.of_nils", [[], [], [[]]]},
     {"tuple.empty", {}}, {"tuple.2", {a, b}},
     {"tuple.255", list_to_tuple(lists:seq(1, 255))}, {"tuple.256", list_to_tuple(lists:seq(1, 256))},
     {"tuple.100k", list_to_tuple([mixed(I) || I <- lists:seq(1, 100000)])},
     {"map.empty", #{}}, {"map.small", #{a => 1, b => <<"two">>, c => [3]}},
     {"map.32_keys", maps:from_list([{K, K} || K <- lists:seq(1, 32)])},
     {"map.33_keys", maps:from_list([{K, K} || K <- lists:seq(1, 33)])},
     {"map.1000_mixed_keys", big_map()},
     {"map.compound_keys",
      #{{1, 2} => tuple, [x, y] => list, #{k => v} => map, <<"bin">> => binary, 1.0 => float,
        1 => integer, "str" => string, [] => nil, atom => atom, self() => pid,
        <<1:3>> => bitstring, (1 bsl 100) => big, {#{a => [1]}, [#{}]} => nested}},
     {"pid.erl", self()}, {"ref.erl", make_ref()}, {"port.erl", Port},
     {"pid.erl_dead", dead_local_pid()},
     {"pid.nut", case NutPid of undefined -> '$missing'; _ -> NutPid end},
     {"pid.nut_other_creation",
      case NutPid of undefined -> '$missing'; _ -> with_creation(NutPid, NutCreation bxor 16#5A5A) end},
     {"ref.nut", make_ref(Nut, NutCreation, [16#3FFFF, 16#FFFFFFFF, 16#3FFF])},
     {"port.nut", make_port(Nut, NutCreation, 7)},
     {"pid.third", make_pid(?THIRD, 123, 4, ?THIRD_CREATION)},
     {"pid.third_big_ids", make_pid(?THIRD, 16#FFFFFFFF, 16#FFFFFFFF, ?THIRD_CREATION)},
     {"pid.third_creation_max", make_pid(?THIRD, 5, 0, 16#FFFFFFFF)},
     {"ref.third_3_words", make_ref(?THIRD, ?THIRD_CREATION, [1, 2, 3])},
     {"ref.third_5_words", make_ref(?THIRD, ?THIRD_CREATION, [16#3FFFF, 16#FFFFFFFF, 16#FFFFFFFF, 7, 8])},
     {"port.third", make_port(?THIRD, ?THIRD_CREATION, 42)},
     {"port.third_v4", make_port(?THIRD, ?THIRD_CREATION, 16#123456789AB)},
     {"nest.list_1000", nest(fun(X) -> [X] end, 1000, [])},
     {"nest.tuple_1000", nest(fun(X) -> {X} end, 1000, {})},
     {"nest.map_1000", nest(fun(X) -> #{k => X} end, 1000, #{})},
     {"nest.mixed_1000", nest(fun(X) -> [{ok, #{v => X}}] end, 334, done)},
     {"mixed.all_kinds",
      {ok, -1, 1 bsl 70, 1.5, float_bits(16#8000000000000000), Lambda, <<"b">>, <<5:3>>, "s",
       [1 | 2], {}, #{k => [v]}, self(), make_ref(), Port,
       make_pid(?THIRD, 1, 2, ?THIRD_CREATION)}}].

%% Beyond the contract's list of terms: funs (EXPORT_EXT and NEW_FUN_EXT; the
%% NUT never calls them, it only has to keep them as they came).
fun_terms() ->
    Y = 42,
    [{"export_lists_map_2", fun lists:map/2},
     {"closure", fun(X) -> X + Y end},
     {"in_tuple", {ok, fun erlang:self/0, fun() -> Y end}}].

mixed(I) ->
    case I rem 7 of
        0 -> I;
        1 -> -I * 1000000007;
        2 -> element(1 + I rem 3, {a, b, list_to_atom([955])});
        3 -> <<I:32>>;
        4 -> I / 3;
        5 -> {I};
        6 -> [I]
    end.

big_map() ->
    maps:from_list(
      lists:append(
        [[{I, I},
          {-(1 bsl 70) - I, neg_big},
          {list_to_atom("key_" ++ integer_to_list(I)), <<I:16>>},
          {<<"bin", I:16>>, [I]},
          {{t, I}, float(I)},
          {I + 0.5, {I}},
          {[I, I], #{}},
          {#{I => I}, "v"}]
         || I <- lists:seq(1, 125)])).

%% ===========================================================================
%% Requests to echo processes.

roundtrip(_Dest, '$missing') ->
    fail("no pid of the NUT to send (its spawn failed)", []);
roundtrip(Dest, T) ->
    Ref = make_ref(),
    Dest ! {self(), Ref, T},
    receive
        {Ref, Back} ->
            case same(Back, T) of
                true -> ok;
                false -> fail("~s", [diff(T, Back)])
            end
    after ?T * 3 -> fail("no reply (sent ~s)", [short(T)])
    end.

same(A, B) ->
    A =:= B andalso term_to_binary(A, [{minor_version, 2}]) =:= term_to_binary(B, [{minor_version, 2}]).

diff(Sent, Back) ->
    BS = term_to_binary(Sent, [{minor_version, 2}]),
    BB = term_to_binary(Back, [{minor_version, 2}]),
    Prefix = binary:longest_common_prefix([BS, BB]),
    lists:flatten(io_lib:format("the reply differs (=:= ~p; term_to_binary ~b vs ~b bytes, first difference at byte ~b): "
                                "sent ~s, got ~s",
                                [Sent =:= Back, byte_size(BS), byte_size(BB), Prefix, short(Sent), short(Back)])).

call(Dest, Req) ->
    Ref = make_ref(),
    Dest ! list_to_tuple([self(), Ref | Req]),
    receive {Ref, R} -> R
    after ?T -> fail("no reply to ~s", [short(hd(Req))])
    end.

spawn_echo(#{nut := Nut}) ->
    case call({echo, Nut}, [spawn]) of
        P when is_pid(P), node(P) =:= Nut -> P;
        Other -> fail("spawn answered ~s", [short(Other)])
    end.

%% The registered echo's pid: it shows up in our monitored_by once it
%% monitors us (monitors never kill, unlike a link).
echo_pid(#{nut := Nut}) ->
    Self = self(),
    monitoring = call({echo, Nut}, [monitor, Self]),
    {monitored_by, By} = process_info(self(), monitored_by),
    case [P || P <- By, node(P) =:= Nut] of
        [P | _] -> P;
        [] -> fail("echo's monitor of the tester did not show up", [])
    end.

dead_nut_pid(Ctx) ->
    P = spawn_echo(Ctx),
    M = erlang:monitor(process, P),
    exit(P, kill),
    receive {'DOWN', M, process, P, _} -> P after ?T -> fail("could not kill ~p", [P]) end.

dead_local_pid() ->
    {P, M} = spawn_monitor(fun() -> ok end),
    receive {'DOWN', M, process, P, _} -> P end.

expect_msg(Msg) -> expect_msg(Msg, ?T).

expect_msg(Msg, Timeout) ->
    receive Msg -> ok
    after Timeout -> fail("~s did not arrive", [short(Msg)])
    end.

expect_down(M, Reason) ->
    receive
        {'DOWN', M, process, _, R} when R =:= Reason -> ok;
        {'DOWN', M, process, _, R} -> fail("DOWN with ~s, want ~s", [short(R), short(Reason)])
    after ?T -> fail("no DOWN (want reason ~s)", [short(Reason)])
    end.

no_message(Ref, What) ->
    receive {Ref, _} = M -> fail("~s: ~s", [What, short(M)])
    after ?QUIET -> ok
    end.

quiet_nodedown(Nut) ->
    receive {nodedown, Nut} -> fail("the connection to the NUT went down", [])
    after 0 -> ok
    end.

%% Waits until L is linked to P (so the link reached the NUT before the next
%% signal from L, which goes the same way).
wait_linked(L, P) ->
    wait_until(fun() -> case process_info(L, links) of
                            {links, Ls} -> lists:member(P, Ls);
                            undefined -> false
                        end end, "link").

wait_dead(L) ->
    wait_until(fun() -> not is_process_alive(L) end, "exit").

wait_until(F, What) -> wait_until(F, What, 100).
wait_until(_F, What, 0) -> fail("gave up waiting for the ~s", [What]);
wait_until(F, What, N) ->
    case F() of
        true -> ok;
        false -> timer:sleep(50), wait_until(F, What, N - 1)
    end.

%% Waits for a message for which Pred holds; the others are put back (at
%% the end of the mailbox) for later waits.
await(Pred, Deadline, What) -> await(Pred, Deadline, What, []).

await(Pred, Deadline, What, Skipped) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        M -> case Pred(M) of
                 true -> requeue(Skipped), ok;
                 false -> await(Pred, Deadline, What, [M | Skipped])
             end
    after Left -> requeue(Skipped), {fail, What}
    end.

requeue(Skipped) ->
    [self() ! M || M <- lists:reverse(Skipped)],
    ok.

%% ===========================================================================
%% Raw EPMD and handshake.

epmd_port() ->
    case init:get_argument(epmd_port) of
        {ok, [[P | _] | _]} -> list_to_integer(P);
        _ -> 4369
    end.

ensure_epmd() ->
    Port = epmd_port(),
    case gen_tcp:connect({127, 0, 0, 1}, Port, [], 1000) of
        {ok, S} -> gen_tcp:close(S);
        {error, _} ->
            Epmd = case os:find_executable("epmd") of
                       false -> io:format("FAIL setup: epmd not found (run scripts/install_erlang.sh)~n"), halt(2);
                       E -> E
                   end,
            os:cmd(Epmd ++ " -port " ++ integer_to_list(Port) ++ " -daemon"),
            wait_until_epmd(Port, 50),
            io:format("contract: started `epmd -daemon` on port ~b (it keeps running)~n", [Port])
    end,
    Port.

wait_until_epmd(Port, 0) -> io:format("FAIL setup: no EPMD on port ~b~n", [Port]), halt(2);
wait_until_epmd(Port, N) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [], 200) of
        {ok, S} -> gen_tcp:close(S);
        _ -> timer:sleep(100), wait_until_epmd(Port, N - 1)
    end.

epmd_port_please(Short) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, epmd_port(), [binary, {active, false}], 5000),
    ok = gen_tcp:send(S, <<(1 + byte_size(Short)):16, 122, Short/binary>>),
    Resp = recv_until_closed(S, <<>>),
    case Resp of
        <<119, 0, Port:16, Type, Proto, High:16, Low:16, NLen:16, _Name:NLen/binary, _/binary>> ->
            {ok, #{port => Port, type => Type, proto => Proto, high => High, low => Low}};
        <<119, Result, _/binary>> -> {error, {port2_resp_result, Result}};
        _ -> {error, {bad_reply, Resp}}
    end.

recv_until_closed(S, Acc) ->
    case gen_tcp:recv(S, 0, 5000) of
        {ok, B} -> recv_until_closed(S, <<Acc/binary, B/binary>>);
        {error, _} -> gen_tcp:close(S), Acc
    end.

%% The initiator's side of the version 6 handshake, as a node called
%% rawpeer_<pid>_<n>@127.0.0.1. With the right cookie it returns the NUT's
%% flags, creation and name and the open socket (still {packet, 2}); with a
%% wrong one it checks that the NUT closes without a challenge ack.
raw_handshake(#{nut := Nut, cookie := RightCookie, suffix := Suffix}, Flags, Cookie) ->
    Port = case epmd_port_please(short_name(Nut)) of
               {ok, #{port := P}} -> P;
               {error, Why} -> fail("EPMD has no port for the NUT: ~p", [Why])
           end,
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {packet, 2}, {active, false}, {nodelay, true}], 5000),
    Me = iolist_to_binary(["rawpeer_", Suffix, "_", integer_to_list(erlang:unique_integer([positive])), "@127.0.0.1"]),
    MyCreation = rand:uniform(16#FFFFFFF0) + 1,
    ok = gen_tcp:send(S, <<$N, Flags:64, MyCreation:32, (byte_size(Me)):16, Me/binary>>),
    case gen_tcp:recv(S, 0, ?T) of
        {ok, <<$s, "ok">>} -> ok;
        {ok, <<$s, Status/binary>>} -> fail("handshake status ~s", [Status]);
        Other1 -> fail("no handshake status: ~p", [Other1])
    end,
    {PFlags, Chal, PCreation, PName} =
        case gen_tcp:recv(S, 0, ?T) of
            {ok, <<$N, F:64, Ch:32, Cr:32, NLen:16, N:NLen/binary>>} -> {F, Ch, Cr, N};
            {ok, <<$n, _/binary>>} -> fail("the NUT sent an old challenge ('n'), want 'N' (version 6)", []);
            Other2 -> fail("no challenge: ~p", [Other2])
        end,
    MyChal = rand:uniform(16#FFFFFFFF) - 1,
    ok = gen_tcp:send(S, <<$r, MyChal:32, (digest(Cookie, Chal))/binary>>),
    Ack = gen_tcp:recv(S, 0, ?T),
    Base = #{flags => PFlags, creation => PCreation, name => PName, socket => S,
             our_name => Me, our_creation => MyCreation},
    case {Cookie =:= RightCookie, Ack} of
        {true, {ok, <<$a, D/binary>>}} ->
            D =:= digest(Cookie, MyChal) orelse fail("wrong digest in the challenge ack", []),
            Base#{status => ok};
        {true, Other3} -> fail("no challenge ack: ~p", [Other3]);
        {false, {error, closed}} -> Base#{status => closed_without_ack};
        {false, {ok, <<$a, _/binary>>}} -> fail("sent a challenge ack to a wrong cookie", []);
        {false, {error, timeout}} -> fail("kept the connection open ~b ms after a wrong digest", [?T]);
        {false, Other4} -> fail("after a wrong digest: ~p", [Other4])
    end.

digest(Cookie, Challenge) ->
    erlang:md5([Cookie, integer_to_list(Challenge)]).

%% ===========================================================================
%% The NUT process: run in its own session by an owner process that keeps its
%% output.

start_nut(Ctx) ->
    Main = self(),
    spawn_link(fun() -> nut_owner(Main, Ctx) end).

nut_owner(Main, #{cmd := Cmd, nut := Nut, cookie := Cookie, opts := Opts}) ->
    Setsid = case os:find_executable("setsid") of
                 false -> io:format("FAIL setup: setsid not found (util-linux)~n"), halt(2);
                 S -> S
             end,
    %% $$ is the session's process group. The background job reads a copy of
    %% this emulator's pipe and kills the group when it closes; it does not
    %% hold the output pipe, so the port still sees the NUT exit.
    Script = "echo pgid=$$; exec 3<&0; (cat <&3 >/dev/null; kill -9 -$$) >/dev/null 2>&1 & exec 3<&-; "
             "exec " ++ Cmd ++ " \"$@\"",
    Port = open_port({spawn_executable, Setsid},
                     [{args, ["-w", "/bin/sh", "-c", Script, "nut", "--name", atom_to_list(Nut), "--cookie", Cookie]},
                      {line, 4096}, exit_status, stderr_to_stdout, hide]),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    owner_loop(#{main => Main, port => Port, os_pid => OsPid, pgid => undefined, ready => 0,
                 lines => queue:new(), count => 0, exit => undefined, partial => [],
                 verbose => maps:get(verbose, Opts)}).

owner_loop(St = #{port := Port, main := Main}) ->
    receive
        {Port, {data, {noeol, Chunk}}} ->
            owner_loop(St#{partial := maps:get(partial, St) ++ Chunk});
        {Port, {data, {eol, Chunk}}} ->
            Line = maps:get(partial, St) ++ Chunk,
            owner_loop(owner_line(string:trim(Line, trailing, "\r\n "), St#{partial := []}));
        {Port, {exit_status, S}} ->
            case maps:get(ready, St) of
                0 -> Main ! {self(), exited, S};
                _ -> ok
            end,
            owner_loop(St#{exit := S});
        {From, info} ->
            From ! {self(), info, maps:with([pgid, os_pid, ready, exit], St)},
            owner_loop(St);
        {From, log} ->
            From ! {self(), log, queue:to_list(maps:get(lines, St))},
            owner_loop(St);
        {From, kill} ->
            kill_nut(St),
            From ! {self(), killed},
            owner_loop(St);
        {'EXIT', _, _} ->
            kill_nut(St)
    end.

owner_line("pgid=" ++ P, St = #{pgid := undefined}) ->
    St#{pgid := P};
owner_line(Line, St = #{ready := N, main := Main}) ->
    maps:get(verbose, St) andalso io:format("  nut| ~s~n", [Line]),
    St1 = keep_line(Line, St),
    case Line of
        "ready" when N =:= 0 -> Main ! {self(), ready}, St1#{ready := 1};
        "ready" -> St1#{ready := N + 1};
        _ -> St1
    end.

keep_line(Line, St = #{lines := Q, count := C}) ->
    Q1 = queue:in(Line, Q),
    case C >= 200 of
        true -> St#{lines := queue:drop(Q1)};
        false -> St#{lines := Q1, count := C + 1}
    end.

kill_nut(#{pgid := undefined, os_pid := OsPid}) -> kill_os_pid(integer_to_list(OsPid));
kill_nut(#{pgid := Pgid}) -> os:cmd("kill -9 -" ++ Pgid).

print_nut_log(#{owner := Owner}) ->
    Owner ! {self(), log},
    receive
        {Owner, log, Lines} ->
            io:format("  NUT output (last ~b lines):~n", [length(Lines)]),
            [io:format("  nut| ~s~n", [L]) || L <- Lines]
    after 2000 -> ok
    end.

cleanup(#{owner := Owner}) ->
    [kill_os_pid(OsPid) || {_, OsPid} <- ets:tab2list(contract_helpers)],
    Owner ! {self(), info},
    receive
        {Owner, info, #{exit := undefined}} ->
            Owner ! {self(), kill},
            receive {Owner, killed} -> ok after 5000 -> ok end;
        {Owner, info, _} -> ok
    after 5000 -> ok
    end.

%% ===========================================================================
%% Helper nodes (peer, controlled over stdio).

start_helper(Ctx = #{cookie := Cookie}, Prefix) ->
    start_helper(Ctx, Prefix, Cookie).

start_helper(#{suffix := Suffix}, Prefix, Cookie) ->
    Name = list_to_atom(Prefix ++ "_" ++ Suffix ++ "_" ++ integer_to_list(erlang:unique_integer([positive]))),
    case peer:start(#{name => Name, host => "127.0.0.1", longnames => true, connection => standard_io,
                      args => ["-setcookie", Cookie, "-kernel", "connect_all", "false", "-start_epmd", "false"]}) of
        {ok, Peer, Node} ->
            OsPid = peer:call(Peer, os, getpid, []),
            ets:insert(contract_helpers, {Peer, OsPid}),
            {Peer, Node, OsPid};
        Err -> fail("cannot start a helper node: ~p", [Err])
    end.

stop_helper(Peer) ->
    catch peer:stop(Peer),
    [kill_os_pid(OsPid) || {_, OsPid} <- ets:lookup(contract_helpers, Peer)],
    ets:delete(contract_helpers, Peer),
    ok.

%% A process registered as `sink` on the helper that forwards everything to
%% the caller as {sink, HelperNode, Msg}.
start_sink(Peer) ->
    peval(Peer, "Pid = spawn(fun F() -> receive M -> To ! {sink, node(), M}, F() end end),"
                "register(sink, Pid), Pid.", [{'To', self()}]).

%% Evaluates Erlang source on a helper (its modules, not this escript's).
peval(Peer, Src, Bindings) ->
    {ok, Toks, _} = erl_scan:string(Src),
    {ok, Exprs} = erl_parse:parse_exprs(Toks),
    B = lists:foldl(fun({K, V}, Acc) -> erl_eval:add_binding(K, V, Acc) end, erl_eval:new_bindings(), Bindings),
    {value, V, _} = peer:call(Peer, erl_eval, exprs, [Exprs, B], ?T),
    V.

kill_os_pid(OsPid) ->
    os:cmd("kill -9 " ++ OsPid).

%% ===========================================================================
%% Running and reporting checks.

run_check({Name, Timeout, Fun}, Ctx = #{opts := #{only := Only, skip := Skip}}) ->
    Has = fun(S) -> string:find(Name, S) =/= nomatch end,
    case (Only =:= [] orelse lists:any(Has, Only)) andalso not lists:any(Has, Skip) of
        false -> [];
        true ->
            Main = self(),
            {Pid, M} = spawn_monitor(fun() -> Main ! {self(), result, run_fun(Fun, Ctx)} end),
            R = receive
                    {Pid, result, Res} ->
                        erlang:demonitor(M, [flush]),
                        Res;
                    {'DOWN', M, process, Pid, Why} ->
                        {fail, io_lib:format("the check process died: ~s", [short(Why)])}
                after Timeout ->
                        exit(Pid, kill),
                        {fail, io_lib:format("timed out after ~b s", [Timeout div 1000])}
                end,
            case R of
                {multi, Subs} ->
                    [{Name ++ "." ++ S, report(Name ++ "." ++ S, SR)} || {S, SR} <- Subs];
                _ ->
                    [{Name, report(Name, R)}]
            end
    end.

run_fun(Fun, Ctx) ->
    try Fun(Ctx) of
        ok -> ok;
        true -> ok;
        {ok, Info} -> {ok, Info};
        {skip, Why} -> {skip, Why};
        {multi, L} -> {multi, L};
        {fail, Why} -> {fail, Why};
        Other -> {fail, io_lib:format("the check returned ~s", [short(Other)])}
    catch
        throw:{fail, Why} -> {fail, Why};
        C:E:St -> {fail, io_lib:format("~p:~s at ~s", [C, short(E), short(hd(St))])}
    end.

report(Name, ok) -> io:format("PASS ~s~n", [Name]), ok;
report(Name, {ok, Info}) -> io:format("PASS ~s (~s)~n", [Name, one_line(Info)]), ok;
report(Name, {skip, Why}) -> io:format("SKIP ~s: ~s~n", [Name, one_line(Why)]), {skip, Why};
report(Name, {fail, Why}) -> io:format("FAIL ~s: ~s~n", [Name, one_line(Why)]), {fail, Why}.

one_line(Text) ->
    S = lists:flatten(io_lib:format("~ts", [Text])),
    Flat = [case Ch of $\n -> $\s; _ -> Ch end || Ch <- S],
    case length(Flat) > 600 of
        true -> lists:sublist(Flat, 600) ++ "...";
        false -> Flat
    end.

fail(Fmt, Args) ->
    throw({fail, lists:flatten(io_lib:format(Fmt, Args))}).

short(T) ->
    S = lists:flatten(io_lib:format("~W", [T, 6])),
    case length(S) > 200 of
        true -> lists:sublist(S, 200) ++ "...";
        false -> S
    end.

%% ===========================================================================
%% Terms.

short_name(Node) ->
    [Short | _] = string:split(atom_to_list(Node), "@"),
    list_to_binary(Short).

atom_ext(Atom) ->
    B = atom_to_binary(Atom, utf8),
    case byte_size(B) of
        N when N < 256 -> <<119, N, B/binary>>;
        N -> <<118, N:16, B/binary>>
    end.

make_pid(Node, Id, Serial, Creation) ->
    binary_to_term(<<131, 88, (atom_ext(Node))/binary, Id:32, Serial:32, Creation:32>>).

make_ref(Node, Creation, Words) ->
    binary_to_term(<<131, 90, (length(Words)):16, (atom_ext(Node))/binary, Creation:32,
                     << <<W:32>> || W <- Words >>/binary>>).

make_port(Node, Creation, Id) ->
    binary_to_term(<<131, 120, (atom_ext(Node))/binary, Id:64, Creation:32>>).

%% The creation of a pid: the last 4 bytes of its NEW_PID_EXT.
creation(Pid) ->
    B = term_to_binary(Pid, [{minor_version, 2}]),
    binary:decode_unsigned(binary:part(B, byte_size(B) - 4, 4)).

with_creation(Pid, Creation) ->
    B = term_to_binary(Pid, [{minor_version, 2}]),
    Head = binary:part(B, 0, byte_size(B) - 4),
    binary_to_term(<<Head/binary, Creation:32>>).

float_bits(Bits) ->
    <<F/float>> = <<Bits:64>>,
    F.

pattern(N) ->
    list_to_binary([I rem 251 || I <- lists:seq(0, N - 1)]).

pow10(0) -> 1;
pow10(N) -> 10 * pow10(N - 1).

nest(_F, 0, Acc) -> Acc;
nest(F, N, Acc) -> nest(F, N - 1, F(Acc)).
