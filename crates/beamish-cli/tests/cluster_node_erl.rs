//! The `cluster_node` example against a real `erl` node: `kv` through
//! `gen_server`, `beamish_demo` through `erpc` and `rpc`, the `global`
//! name and `pg` group of `kv`, `--peers`, and the `counter` singleton
//! through a kill and a partition.

#[path = "../../beamish/tests/support/erl.rs"]
mod erl;

use std::process::Command;
use std::time::Duration;

use erl::{Epmd, ErlNode, Proc, example_binary, node_name, unique_name};

const COOKIE: &str = "clustercookie";

#[test]
fn erlang_uses_kv_demo_global_and_pg_of_cluster_node() {
    let bin = example_binary("cluster_node");
    let epmd = Epmd::start();
    let short = unique_name("cn");
    let nut = node_name(&short);
    let mut cmd = Command::new(bin);
    cmd.args(["--name", &nut, "--cookie", COOKIE, "--ticktime", "20"]);
    epmd.configure(&mut cmd);
    let mut node = Proc::spawn("cluster_node", cmd);
    node.expect_line("ready", Duration::from_secs(30));

    let code = format!(
        r#"
N = '{nut}', Name = '{short}',
Kv = {{kv, N}},
Check = fun(What, true) -> io:format("ok ~s~n", [What]);
           (What, Other) -> io:format("FAIL ~s: ~p~n", [What, Other]), halt(1) end,
Check("put", gen_server:call(Kv, {{put, x, 1}}) =:= ok),
Check("get", gen_server:call(Kv, {{get, x}}) =:= {{ok, 1}}),
Check("delete", gen_server:call(Kv, {{delete, x}}) =:= ok),
Check("get_deleted", gen_server:call(Kv, {{get, x}}) =:= not_found),
Check("unknown", gen_server:call(Kv, bogus) =:= {{error, {{unknown_request, bogus}}}}),
gen_server:cast(Kv, {{put, c, 2}}),
Check("cast", gen_server:call(Kv, {{get, c}}) =:= {{ok, 2}}),
Check("crash",
    case catch gen_server:call(Kv, crash) of
        {{'EXIT', {{{{crashed, kv}}, {{gen_server, call, _}}}}}} -> true;
        Crash -> Crash
    end),
Restarted = fun R(0) -> false;
                R(K) -> case catch gen_server:call(Kv, {{get, c}}, 500) of
                            not_found -> true;
                            _ -> timer:sleep(100), R(K - 1)
                        end end,
Check("restarted_empty", Restarted(20)),
WaitK = fun WK(0) -> undefined; WK(K) -> case gen_server:call(Kv, {{global_whereis, {{kv, Name}}}}) of
    P0 when is_pid(P0) -> P0; _ -> timer:sleep(100), WK(K - 1) end end,
Pid = WaitK(30),
Check("kv_pid", is_pid(Pid) andalso node(Pid) =:= N),
Check("call_timeout", case catch gen_server:call(Pid, {{sleep, 500}}, 100) of
    {{'EXIT', {{timeout, _}}}} -> true; T -> T end),
timer:sleep(700),
Check("no_late_reply", receive Late -> Late after 0 -> true end),
Check("erpc_add", erpc:call(N, beamish_demo, add, [1, 2]) =:= 3),
Check("erpc_add_big", erpc:call(N, beamish_demo, add, [1 bsl 100, -(1 bsl 99)]) =:= 1 bsl 99),
Check("erpc_echo", erpc:call(N, beamish_demo, echo, [{{a, "s", <<1>>, [1.5]}}]) =:= {{a, "s", <<1>>, [1.5]}}),
Check("erpc_fail", try erpc:call(N, beamish_demo, fail, [oops]) catch error:{{exception, oops, _}} -> true; C:E -> {{C, E}} end),
Check("erpc_timeout", try erpc:call(N, beamish_demo, sleep, [1000], 100) catch error:{{erpc, timeout}} -> true; C2:E2 -> {{C2, E2}} end),
Check("erpc_undef", try erpc:call(N, beamish_demo, nope, []) catch error:{{exception, undef, _}} -> true; C3:E3 -> {{C3, E3}} end),
Check("rpc_add", rpc:call(N, beamish_demo, add, [1, 2]) =:= 3),
Check("multicall", erpc:multicall([N], beamish_demo, add, [1, 2]) =:= [{{ok, 3}}]),
WaitG = fun W(0) -> undefined; W(K) -> case global:whereis_name({{kv, Name}}) of
    P when is_pid(P) -> P; _ -> timer:sleep(100), W(K - 1) end end,
GP = WaitG(30),
Check("global_kv", is_pid(GP) andalso node(GP) =:= N),
Check("global_call", gen_server:call({{global, {{kv, Name}}}}, {{get, nothing}}) =:= not_found),
Self = self(),
yes = global:register_name(erl_probe, Self),
WaitW = fun W2(0) -> false; W2(K) -> case gen_server:call(Kv, {{global_whereis, erl_probe}}) of
    Self -> true; _ -> timer:sleep(100), W2(K - 1) end end,
Check("global_whereis", WaitW(30)),
{{ok, _}} = pg:start_link(),
Member = spawn(fun() -> receive stop -> ok end end),
ok = pg:join(beamish_kv, Member),
WaitP = fun W3(0) -> {{last, gen_server:call(Kv, {{pg_members, beamish_kv}}), pg:get_members(beamish_kv)}}; W3(K) -> Ms = gen_server:call(Kv, {{pg_members, beamish_kv}}),
    case lists:member(Member, Ms) andalso length(Ms) >= 2 of
        true -> true; false -> timer:sleep(100), W3(K - 1) end end,
Check("pg_members", WaitP(30)),
%% Sorted by Erlang's term order: pids of two nodes, numbers far apart.
More = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 6)],
ok = pg:join(beamish_kv, More),
WaitP2 = fun W4(0) -> false; W4(K) -> Ms2 = gen_server:call(Kv, {{pg_members, beamish_kv}}),
    case length(Ms2) >= 8 of true -> Ms2; false -> timer:sleep(100), W4(K - 1) end end,
Sorted = WaitP2(30),
Check("pg_members_sorted", Sorted =:= lists:sort(Sorted) andalso Sorted =/= false),
Check("sys_get_state", case catch sys:get_state(Kv) of L when is_list(L) -> true; X -> X end),
Check("sys_get_status", case catch sys:get_status(Kv) of {{status, _, _, _}} -> true; X2 -> X2 end),
%% Bad input: none of it may crash kv (its pid stays) or the node.
KvPid = gen_server:call(Kv, {{global_whereis, {{kv, Name}}}}),
[Kv ! Bad || Bad <- [{{'$gen_call', not_a_from, {{get, c}}}}, {{'$gen_call', {{Self, make_ref(), x}}, {{get, c}}}},
                     {{'$gen_call'}}, {{'$gen_call', {{Self}}, {{get, c}}}}, {{'$gen_cast'}}, {{'$gen_cast', a, b}},
                     {{system, not_a_from, get_state}}, {{'$gen_call', {{not_a_pid, make_ref()}}, {{get, c}}}}]],
Check("bad_from_survived", gen_server:call(Kv, {{get, nothing}}) =:= not_found
      andalso gen_server:call(Kv, {{global_whereis, {{kv, Name}}}}) =:= KvPid),
%% A reply tag that is not a reference: answered {{Tag, Reply}}, as gen:reply does.
Kv ! {{'$gen_call', {{Self, my_tag}}, {{get, nothing}}}},
Check("non_ref_tag", receive {{my_tag, R0}} -> R0 =:= not_found after 5000 -> no_reply end),
%% Spawn requests with garbage: each gets a spawn reply and a 'DOWN', none a hang.
SpawnDown = fun(SpM, SpF, SpA) ->
    SpReq = erlang:spawn_request(N, SpM, SpF, SpA, [monitor]),
    receive
        {{spawn_reply, SpReq, ok, SpPid}} ->
            receive {{'DOWN', SpReq, process, SpPid, SpWhy}} -> {{down, SpWhy}} after 5000 -> no_down end;
        {{spawn_reply, SpReq, error, SpErr}} -> {{error, SpErr}}
    after 5000 -> no_spawn_reply
    end end,
Check("spawn_unknown_fn", element(1, SpawnDown(no_such_module, f, [1])) =:= down),
Check("spawn_bad_execute_call", element(1, SpawnDown(erpc, execute_call, [not_a_ref, m, f, not_a_list])) =:= down),
Check("spawn_bad_execute_cast", element(1, SpawnDown(erpc, execute_cast, [1, 2, 3])) =:= down),
Check("spawn_plain_fn", SpawnDown(beamish_demo, add, [1, 2]) =:= {{down, normal}}),
Check("erpc_bad_args", try erpc:call(N, beamish_demo, add, [a, b]) catch error:{{exception, _, _}} -> true; C4:E4 -> {{C4, E4}} end),
Check("still_serving", erpc:call(N, beamish_demo, add, [2, 2]) =:= 4
      andalso gen_server:call(Kv, {{global_whereis, {{kv, Name}}}}) =:= KvPid),
%% {{call, Dest, Req, Ms}}: kv calls an Erlang server with beamish's own call.
Srv = spawn(fun SrvLoop() ->
    receive
        {{'$gen_call', From, {{exit, Why2}}}} -> exit(Why2), From;
        {{'$gen_call', _From, silent}} -> SrvLoop();
        {{'$gen_call', From, Req2}} -> gen:reply(From, {{echoed, Req2}}), SrvLoop()
    end end),
true = register(erl_srv, Srv),
yes = global:register_name(erl_srv_g, Srv),
Me = node(),
Check("call_erl_by_name", gen_server:call(Kv, {{call, {{erl_srv, Me}}, hi, 5000}}) =:= {{ok, {{echoed, hi}}}}),
Check("call_erl_by_pid", gen_server:call(Kv, {{call, Srv, hi2, 5000}}) =:= {{ok, {{echoed, hi2}}}}),
WaitG2 = fun WG(0) -> false; WG(K) -> case gen_server:call(Kv, {{global_whereis, erl_srv_g}}) of
    Srv -> true; _ -> timer:sleep(100), WG(K - 1) end end,
true = WaitG2(30),
Check("call_erl_by_global", gen_server:call(Kv, {{call, {{global, erl_srv_g}}, hi3, 5000}}) =:= {{ok, {{echoed, hi3}}}}),
Check("call_timeout_error", gen_server:call(Kv, {{call, Srv, silent, 200}}) =:= {{error, timeout}}),
Check("call_noproc_name", gen_server:call(Kv, {{call, {{nobody_here, Me}}, x, 1000}}) =:= {{error, noproc}}),
Check("call_noproc_global", gen_server:call(Kv, {{call, {{global, nobody_here}}, x, 1000}}) =:= {{error, noproc}}),
Check("call_exit", gen_server:call(Kv, {{call, Srv, {{exit, boom}}, 5000}}) =:= {{error, {{exit, boom}}}}),
Check("call_noproc_dead_pid", gen_server:call(Kv, {{call, Srv, x, 1000}}) =:= {{error, noproc}}),
io:format("PASS all~n"),
halt(0).
"#
    );
    let mut erl = ErlNode::builder(&epmd, "t")
        .cookie(COOKIE)
        .connect_all(true)
        .eval(&code)
        .start();
    let line = erl.expect_pass(Duration::from_secs(60));
    assert!(line.contains("PASS all"), "{line}");
    drop(erl);
    node.kill();
}

/// `--peers`: cluster_node connects to an erl node on its own, and again
/// (with back-off) after erl disconnects it.
#[test]
fn cluster_node_keeps_its_peers_connected() {
    let bin = example_binary("cluster_node");
    let epmd = Epmd::start();
    let nut = node_name(&unique_name("cnp"));
    let code = format!(
        r#"
N = '{nut}',
Check = fun(What, true) -> io:format("ok ~s~n", [What]);
           (What, Other) -> io:format("FAIL ~s: ~p~n", [What, Other]), halt(1) end,
Wait = fun W(0) -> false; W(K) -> case lists:member(N, nodes()) of
    true -> true; false -> timer:sleep(100), W(K - 1) end end,
io:format("waiting~n"),
Check("peer_connects", Wait(300)),
true = erlang:disconnect_node(N),
Check("disconnected", not lists:member(N, nodes())),
Check("peer_reconnects", Wait(300)),
Check("kv_after_reconnect", gen_server:call({{kv, N}}, {{get, nothing}}) =:= not_found),
io:format("PASS all~n"),
halt(0).
"#
    );
    let mut erl = ErlNode::builder(&epmd, "peer")
        .cookie(COOKIE)
        .connect_all(true)
        .eval(&code)
        .start();
    erl.expect_line("waiting", Duration::from_secs(30));
    let mut cmd = Command::new(bin);
    cmd.args(["--name", &nut, "--cookie", COOKIE, "--peers", erl.node()]);
    epmd.configure(&mut cmd);
    let mut node = Proc::spawn("cluster_node", cmd);
    node.expect_line("ready", Duration::from_secs(30));
    let line = erl.expect_pass(Duration::from_secs(60));
    assert!(line.contains("PASS all"), "{line}");
    drop(erl);
    node.kill();
}

/// The `counter` singleton with three `cluster_node` OS processes driven
/// from `erl`: one instance in the cluster; after a SIGKILL of its node
/// another answers within 2 s of the nodedown; after a SIGSTOP
/// (net_ticktime 4) the others take over, and after the SIGCONT exactly
/// one instance stays, seen by every node, the loser stopped with
/// `{shutdown,singleton_conflict}`.
#[test]
fn the_counter_survives_a_kill_and_a_partition() {
    let bin = example_binary("cluster_node");
    let epmd = Epmd::start();
    let names: Vec<String> = (0..3)
        .map(|i| node_name(&unique_name(&format!("fo{i}"))))
        .collect();
    let mut nodes: Vec<Proc> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let peers: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.as_str())
            .collect();
        let mut cmd = Command::new(&bin);
        cmd.args(["--name", name, "--cookie", COOKIE, "--ticktime", "4"])
            .args(["--peers", &peers.join(",")])
            .env("RUST_LOG", "info");
        epmd.configure(&mut cmd);
        let mut p = Proc::spawn(format!("node{i}"), cmd);
        p.expect_line("ready", Duration::from_secs(60));
        nodes.push(p);
    }
    let os_pids: Vec<String> = nodes
        .iter()
        .map(|p| format!("\"{}\"", p.os_pid()))
        .collect();
    let node_list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    let code = format!(
        r#"
Ns = [{nodes}], OsPids = [{pids}],
Check = fun(What, true) -> io:format("ok ~s~n", [What]);
           (What, Other) -> io:format("FAIL ~s: ~w~n", [What, Other]), halt(1) end,
C = {{global, beamish_counter}},
OsPid = fun(N) -> lists:nth(string:str(Ns, [N]), OsPids) end,
Now = fun() -> erlang:monotonic_time(millisecond) end,
%% What each live node's global says (through kv), and ours.
Views = fun(Live) -> [catch gen_server:call({{kv, N}}, {{global_whereis, beamish_counter}}, 2000) || N <- Live] end,
One = fun(Live) -> case lists:usort([global:whereis_name(beamish_counter) | Views(Live)]) of
    [P] when is_pid(P) -> P; Other -> {{not_one, Other}} end end,
WaitOne = fun(Live, Ms) -> Until = Now() + Ms,
    W = fun WL() -> case One(Live) of P when is_pid(P) -> P;
        Other -> case Now() > Until of true -> Other; false -> timer:sleep(20), WL() end end end,
    W() end,
%% Calls `where` until a node other than Old answers; the time it took.
NewAnswer = fun(Old, Ms) -> Until = Now() + Ms,
    A = fun AL(Fails) -> case catch gen_server:call(C, where, 200) of
        N when is_atom(N), N =/= Old -> {{N, Fails}};
        _ -> case Now() > Until of true -> timeout; false -> timer:sleep(5), AL(Fails + 1) end end end,
    A(0) end,
[pong = net_adm:ping(N) || N <- Ns],
ok = net_kernel:monitor_nodes(true),
P0 = WaitOne(Ns, 5000),
Check("one_instance", is_pid(P0)),
W0 = gen_server:call(C, where),
Check("where", W0 =:= node(P0) andalso lists:member(W0, Ns)),
I1 = gen_server:call(C, incr), I2 = gen_server:call(C, incr),
Check("incr", I2 =:= I1 + 1),
%% SIGKILL the node that runs it.
os:cmd("kill -9 " ++ OsPid(W0)),
receive {{nodedown, W0}} -> ok after 10000 -> Check("nodedown_kill", false) end,
T0 = Now(),
{{W1, _}} = NewAnswer(W0, 2000),
Check("taken_over_after_kill", Now() - T0 =< 2000),
io:format("failover after kill: ~p ms~n", [Now() - T0]),
Check("fresh_instance", gen_server:call(C, incr) =:= 1),
Live = Ns -- [W0],
P1 = WaitOne(Live, 2000),
Check("one_after_kill", is_pid(P1) andalso node(P1) =:= W1),
%% SIGSTOP the node that runs it now: the other takes over after the ticks.
os:cmd("kill -STOP " ++ OsPid(W1)),
receive {{nodedown, W1}} -> ok after 20000 -> Check("nodedown_stop", false) end,
T1 = Now(),
{{W2, _}} = NewAnswer(W1, 6000),
io:format("failover after stop: ~p ms after our nodedown~n", [Now() - T1]),
Check("other_node", W2 =/= W1 andalso W2 =/= W0),
[catch gen_server:call(C, incr) || _ <- lists:seq(1, 3)],
%% SIGCONT: the nodes reconnect and one instance stays.
os:cmd("kill -CONT " ++ OsPid(W1)),
T2 = Now(),
Reconnected = fun RC() -> case catch erpc:call(W1, beamish_demo, add, [1, 1], 1000) of
    2 -> ok; _ -> timer:sleep(20), RC() end end,
Reconnected(),
P2 = WaitOne(Live, 5000),
io:format("one instance ~p ms after SIGCONT~n", [Now() - T2]),
Check("one_after_heal", is_pid(P2) orelse {{P2, [catch gen_server:call({{kv, N}}, {{global_whereis, beamish_counter}}) || N <- Live], nodes()}}),
timer:sleep(1500),
Check("still_one", One(Live) =:= P2),
Check("calls_go_on", is_integer(gen_server:call(C, incr))),
Check("where_after_heal", gen_server:call(C, where) =:= node(P2)),
io:format("PASS all~n"),
halt(0).
"#,
        nodes = node_list.join(","),
        pids = os_pids.join(","),
    );
    let mut erl = ErlNode::builder(&epmd, "fo")
        .cookie(COOKIE)
        .connect_all(true)
        .arg("-kernel")
        .arg("net_ticktime")
        .arg("4")
        .eval(&code)
        .start();
    let line = erl.expect_pass(Duration::from_secs(90));
    assert!(line.contains("PASS all"), "{line}\n{}", erl.proc().output());
    drop(erl);
    let conflict = nodes
        .iter()
        .any(|n| n.output().contains("reason={shutdown,singleton_conflict}"));
    assert!(
        conflict,
        "no node stopped a losing instance with {{shutdown,singleton_conflict}}:\n{}",
        nodes
            .iter()
            .map(Proc::output)
            .collect::<Vec<_>>()
            .join("\n")
    );
    for mut n in nodes {
        n.signal(libc::SIGCONT);
        n.kill();
    }
}
