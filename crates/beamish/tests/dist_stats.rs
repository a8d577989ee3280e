//! `dist::connection_stats` against a real `erl` node: messages and bytes
//! counted both ways (and matching what the `erl` side counts on its
//! socket), ticks counted apart, the peer's name and creation right, and a
//! connection that goes down, from either side, gone from the list; a new
//! connection to the same node counts from zero.
//!
//! A node is per OS process, so this binary holds one test, which starts
//! this process's node. Every wait is bounded and generous (a loaded
//! two-core machine); nothing asserts on time.

#![cfg(feature = "dist")]

mod support;

use std::time::{Duration, Instant};

use beamish::dist::{self, Atom, ConnectionStats, NodeConfig, NodeDown, Term};
use support::erl::{DEFAULT_COOKIE, Epmd, ErlNode, node_name, unique_name};

/// Bound on erl's start-up and on each wait.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Messages each way.
const N: i64 = 2_000;

/// The erl node's tick time (seconds) and ours: ticks every second when
/// idle, yet no false timeout on a busy machine.
const TICKTIME: u64 = 4;

/// The erl side: `stats_echo` answers `{From, I}` with `{echo, I}`,
/// `{stats, From}` with `{stats, Creation, RecvOct, SendOct}` (its own
/// creation and the byte counts of its socket to `From`'s node), and
/// `{disconnect, Node}` by disconnecting `Node`.
const ERL_ECHO: &str = r#"
    Echo = fun Loop() ->
        receive
            {From, I} when is_pid(From), is_integer(I) ->
                From ! {echo, I}, Loop();
            {stats, From} ->
                Node = node(From),
                {Node, Port} = lists:keyfind(Node, 1, erlang:system_info(dist_ctrl)),
                {ok, [{recv_oct, R}, {send_oct, S}]} = inet:getstat(Port, [recv_oct, send_oct]),
                From ! {stats, erlang:system_info(creation), R, S}, Loop();
            {disconnect, Node} ->
                erlang:disconnect_node(Node), Loop()
        end
    end,
    register(stats_echo, spawn(Echo)),
    io:format("ready~n")."#;

#[test]
fn connection_stats_follow_a_connection_to_erl() {
    let epmd = Epmd::start();
    let mut erl = ErlNode::builder(&epmd, "stats_erl")
        .arg("-kernel")
        .arg("net_ticktime")
        .arg(&TICKTIME.to_string())
        .eval(ERL_ECHO)
        .start();
    erl.expect_line("ready", TIMEOUT);
    let erl_name = erl.node().to_owned();
    let epmd_port = epmd.port();

    let rt = beamish::Runtime::new().expect("runtime");
    let result = rt.block_on(async move {
        // Before the node starts there is nothing to list.
        assert!(dist::connection_stats().is_empty());
        let config = NodeConfig::new(node_name(&unique_name("stats_beamish")), DEFAULT_COOKIE)
            .epmd_port(epmd_port)
            .embedded_epmd(false)
            .net_ticktime(Duration::from_secs(TICKTIME));
        dist::start(config).await.expect("start the node");
        assert!(dist::connection_stats().is_empty());
        let peer = Atom::new(&erl_name).unwrap();
        dist::monitor_nodes(true);

        // -- a first connection: N messages each way.
        assert!(dist::connect_node(peer).await.unwrap(), "connect to erl");
        let first = stats_of(peer).expect("the connection is listed");
        assert_eq!(first.node, peer);
        assert_ne!(first.creation, 0);
        assert!(first.pid.is_alive());
        let (creation, erl_recv, erl_sent) = exchange(peer, N).await;
        assert_eq!(first.creation, creation, "the peer's creation");
        // N each way, and the request for erl's figures and its answer.
        let s = wait_stats(peer, "N messages each way counted", |s| {
            s.messages_in > N as u64 && s.messages_out > N as u64
        })
        .await;
        assert!(s.connected_for >= first.connected_for);
        // `{Pid, I}` and `{echo, I}` with their control messages: well over
        // 20 bytes each.
        assert!(s.bytes_out > first.bytes_out + 20 * N as u64, "{s:?}");
        assert!(s.bytes_in > first.bytes_in + 20 * N as u64, "{s:?}");
        // What erl read from its socket is what we wrote, plus our
        // handshake; what it wrote is what we read, plus its handshake,
        // minus its last answer (sent after it counted). Ticks in flight
        // make a few bytes of difference.
        let near = |ours: u64, theirs: u64| ours.abs_diff(theirs) < 1024;
        assert!(
            near(s.bytes_out, erl_recv),
            "out {s:?}, erl read {erl_recv}"
        );
        assert!(near(s.bytes_in, erl_sent), "in {s:?}, erl wrote {erl_sent}");
        assert_eq!(s.out_queue_bytes, 0, "{s:?}");

        // -- ticks: counted apart from messages, their bytes counted.
        let idle = wait_stats(peer, "a tick each way", |t| {
            t.ticks_in >= 1 && t.ticks_out >= 1
        })
        .await;
        assert!(idle.bytes_in >= s.bytes_in + 4 && idle.bytes_out >= s.bytes_out + 4);
        assert!(idle.messages_in >= s.messages_in);

        // -- this node disconnects: the connection leaves the list before
        // its `NodeDown` goes out.
        assert!(dist::disconnect_node(peer));
        wait_down(peer).await;
        assert!(stats_of(peer).is_none(), "{:?}", dist::connection_stats());

        // -- a new connection counts from zero; erl takes it down.
        assert!(dist::connect_node(peer).await.unwrap(), "connect again");
        exchange(peer, 10).await;
        let second = wait_stats(peer, "10 messages each way", |s| {
            s.messages_in >= 11 && s.messages_out >= 11
        })
        .await;
        assert_ne!(second.pid, s.pid, "a new connection process");
        assert!(second.messages_in < N as u64 && second.messages_out < N as u64);
        assert!(second.bytes_in < s.bytes_in && second.bytes_out < s.bytes_out);
        dist::send_named(
            Atom::new("stats_echo").unwrap(),
            peer,
            Term::Tuple(vec![
                Term::Atom(Atom::new("disconnect").unwrap()),
                Term::Atom(dist::this_node()),
            ]),
        );
        wait_down(peer).await;
        assert!(stats_of(peer).is_none(), "{:?}", dist::connection_stats());
        assert!(dist::connection_stats().is_empty());
        format!(
            "first {s:?}\nerl read {erl_recv}, wrote {erl_sent}\nidle {idle:?}\nsecond {second:?}"
        )
    });
    match result {
        Ok(report) => println!("PASS connection stats\n{report}"),
        Err(reason) => panic!("the test process failed: {reason}\n{}", erl.proc().output()),
    }
}

/// The stats of the connection to `node`, if it is listed.
fn stats_of(node: Atom) -> Option<ConnectionStats> {
    dist::connection_stats()
        .into_iter()
        .find(|s| s.node == node)
}

/// Polls the stats of `node` until `ok` holds.
async fn wait_stats(
    node: Atom,
    what: &str,
    ok: impl Fn(&ConnectionStats) -> bool,
) -> ConnectionStats {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let s = stats_of(node);
        if let Some(s) = &s
            && ok(s)
        {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "{what}: never so; last {s:?}");
        beamish::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the `NodeDown` of `node` (the caller subscribed with
/// `monitor_nodes`).
async fn wait_down(node: Atom) {
    beamish::receive_if(move |d: &NodeDown| d.node == node)
        .timeout(TIMEOUT)
        .await
        .expect("a NodeDown");
}

/// Sends `n` messages to erl's `stats_echo`, takes its `n` answers, then
/// asks for its side's figures: (its creation, bytes it read, bytes it
/// wrote).
async fn exchange(node: Atom, n: i64) -> (u32, u64, u64) {
    let echo = Atom::new("stats_echo").unwrap();
    let me = Term::Pid(beamish::self_pid());
    for i in 0..n {
        dist::send_named(echo, node, Term::Tuple(vec![me.clone(), Term::Int(i)]));
    }
    let tag = Atom::new("echo").unwrap();
    for i in 0..n {
        let got = beamish::receive::<Term>()
            .timeout(TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("answer {i} of {n} missing"));
        assert_eq!(got, Term::Tuple(vec![Term::Atom(tag), Term::Int(i)]));
    }
    let stats = Atom::new("stats").unwrap();
    dist::send_named(echo, node, Term::Tuple(vec![Term::Atom(stats), me]));
    let got = beamish::receive::<Term>()
        .timeout(TIMEOUT)
        .await
        .expect("erl's stats");
    let int = |t: &Term| t.as_int().and_then(|i| u64::try_from(i).ok());
    match got.as_tuple() {
        Some([Term::Atom(a), c, r, s]) if *a == stats => (
            int(c)
                .and_then(|c| u32::try_from(c).ok())
                .expect("creation"),
            int(r).expect("recv_oct"),
            int(s).expect("send_oct"),
        ),
        _ => panic!("not erl's stats: {got}"),
    }
}
