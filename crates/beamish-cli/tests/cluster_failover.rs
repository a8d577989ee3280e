//! Failover across beamish nodes that are separate OS processes, killed
//! with SIGKILL and stopped with SIGSTOP/SIGCONT: a [`Singleton`] and a
//! [`DistributedApp`], from Rust alone.
//!
//! The children are this test binary started again in child mode
//! (`BEAMISH_FO_CHILD` names the node). Each runs `global`, `pg`, a
//! [`Membership`] of its peers, the `probe` singleton (a typed GenServer
//! that says where it runs and counts), optionally the `shop` distributed
//! application (its worker says how it was started and carries a count
//! that a takeover hands over), and Rust functions the test calls with
//! erpc (`fo:whereis/1`, `fo:call_where/0`, `fo:flap/2`, `fo:isolate/1`, `fo:nodes/0`,
//! `fo:shop/1`, and the `fo:dsup_*` functions of the `workers`
//! distributed supervisor, which a child runs with `BEAMISH_FO_DSUP`). The test's own node runs neither `global` nor any
//! service: it only drives the children with erpc. Every node ticks with
//! `net_ticktime` 4 s: a cluster must share one tick time (a node that
//! ticks slower is dropped by the others, and keeps half-open connections
//! to a stopped node).
//!
//! The file has its own `main` (`harness = false`); arguments that do not
//! start with `-` filter the scenarios by name.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use beamish::cluster::dist_supervisor::rendezvous;
use beamish::cluster::{
    DistSupervisor, DistSupervisorRef, DistributedApp, Membership, Singleton, Start,
};
use beamish::dist::{self, Atom, NodeConfig, Term};
use beamish::otp::{
    self, ChildSpec, Codec, GenServer, Init, Reply, ReplyTo, Server, StartOptions, Strategy,
    Supervisor, SupervisorFlags,
};
use beamish::{Error, Runtime, global, pg, rpc};
use common::erl::{node_name, unique_name};
use common::{COOKIE, Child, WAIT, a, atom, tuple};
use serde::{Deserialize, Serialize};

const CHILD_ENV: &str = "BEAMISH_FO_CHILD";
const EPMD_ENV: &str = "BEAMISH_FO_EPMD";
const PEERS_ENV: &str = "BEAMISH_FO_PEERS";
const APP_ENV: &str = "BEAMISH_FO_APP";
const DOOMED_ENV: &str = "BEAMISH_FO_DOOMED";
/// `basename:host`: a host name seed of the child's membership.
const HOST_ENV: &str = "BEAMISH_FO_HOST";
/// Run a member of the `workers` distributed supervisor.
const DSUP_ENV: &str = "BEAMISH_FO_DSUP";

// ------------------------------------------------------------ the services

/// Says where it runs and counts calls; the same on every node.
struct Probe {
    count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProbeCall {
    Where,
    Incr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProbeReply {
    Node(String),
    Count(u64),
}

impl GenServer for Probe {
    type Call = ProbeCall;
    type Reply = ProbeReply;
    type Cast = ();

    async fn handle_call(
        &mut self,
        request: ProbeCall,
        _: ReplyTo<ProbeReply>,
    ) -> Reply<ProbeReply> {
        Reply::reply(match request {
            ProbeCall::Where => ProbeReply::Node(dist::this_node().as_str().to_owned()),
            ProbeCall::Incr => {
                self.count += 1;
                ProbeReply::Count(self.count)
            }
        })
    }

    async fn terminate(&mut self, reason: &beamish::Reason) {
        tracing::info!(%reason, "probe: terminate");
    }

    fn codec() -> Option<Codec<Probe>> {
        Some(Codec::wire())
    }
}

fn probe_name() -> Term {
    atom("probe")
}

fn probe() -> Server<Probe> {
    Server::global(probe_name())
}

/// The worker of the `shop` application: how it was started, and a count
/// that a takeover hands over.
struct Shop {
    start: String,
    count: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ShopCall {
    /// `(node, how it started, count)`.
    Info,
    Incr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ShopReply {
    Info(String, String, i64),
    Count(i64),
}

impl GenServer for Shop {
    type Call = ShopCall;
    type Reply = ShopReply;
    type Cast = ();

    async fn init(&mut self) -> Init {
        match global::re_register_name(atom("shop_worker"), beamish::self_pid()).await {
            Ok(()) => Init::Ok,
            Err(e) => Init::Stop(beamish::Reason::other(e.to_string())),
        }
    }

    async fn handle_call(&mut self, request: ShopCall, _: ReplyTo<ShopReply>) -> Reply<ShopReply> {
        Reply::reply(match request {
            ShopCall::Info => ShopReply::Info(
                dist::this_node().as_str().to_owned(),
                self.start.clone(),
                self.count,
            ),
            ShopCall::Incr => {
                self.count += 1;
                ShopReply::Count(self.count)
            }
        })
    }

    fn codec() -> Option<Codec<Shop>> {
        Some(Codec::wire())
    }
}

fn shop() -> Server<Shop> {
    Server::global(atom("shop_worker"))
}

/// `normal`, `failover:NODE`, `takeover:NODE`.
fn start_text(how: &Start) -> String {
    match how {
        Start::Normal => "normal".into(),
        Start::Failover { from } => format!("failover:{from}"),
        Start::Takeover { from, .. } => format!("takeover:{from}"),
    }
}

/// The application's node list from `a,b|c` (`|` joins equal priority).
fn app_nodes(spec: &str) -> Vec<Vec<Atom>> {
    spec.split(',')
        .map(|g| g.split('|').map(a).collect())
        .collect()
}

async fn start_app(spec: &str) {
    let app = DistributedApp::new("shop", app_nodes(spec), |how| async move {
        let count = match &how {
            Start::Takeover {
                state: Some(Term::Int(n)),
                ..
            } => *n,
            _ => 0,
        };
        let text = start_text(&how);
        let worker = ChildSpec::worker("shop_worker", move || {
            let s = Shop {
                start: text.clone(),
                count,
            };
            async move { Ok(otp::start_with(s, StartOptions::new().link()).await?.pid()) }
        });
        Ok((SupervisorFlags::new(Strategy::OneForOne), vec![worker]))
    })
    .failover_timeout(Duration::from_secs(1))
    .check_every(Duration::from_millis(200))
    .handoff(|_root| async {
        // The worker runs on this (the old) node.
        let pid = global::whereis_name(&atom("shop_worker"))?;
        match Server::<Shop>::pid(pid)
            .call_timeout(ShopCall::Info, WAIT)
            .await
        {
            Ok(ShopReply::Info(_, _, n)) => Some(Term::Int(n)),
            _ => None,
        }
    });
    app.start()
        .await
        .expect("the shop application's controller");
}

fn workers() -> DistSupervisorRef {
    DistSupervisorRef::new(a("workers"))
}

/// The pg group every instance of a `workers` child joins (so that a node
/// can list the instances it runs).
fn instances() -> Term {
    atom("dsup_instances")
}

/// A child of `workers`: answers `{From, Tag, where}` with `{Tag, Node}`.
async fn worker() {
    let _ = pg::join(instances(), beamish::self_pid()).await;
    loop {
        let t = beamish::receive::<Term>().await;
        if let Some([Term::Pid(from), tag, _]) = t.as_tuple() {
            from.send(Term::Tuple(vec![
                tag.clone(),
                Term::Atom(dist::this_node()),
            ]));
        }
    }
}

/// The `workers` member of this node: a start with the argument `fail`
/// fails.
async fn start_workers() {
    DistSupervisor::new(a("workers"), |_id, args| {
        let fail = args.as_atom().is_some_and(|x| x.as_str() == "fail");
        async move {
            if fail {
                return Err(Error::Config("this child never starts".into()));
            }
            Ok(beamish::spawn_link(worker()))
        }
    })
    .check_every(Duration::from_millis(200))
    .start_link()
    .await
    .expect("the workers member");
}

/// The `fo:dsup_*` functions: the `workers` supervisor seen from a child.
fn register_dsup_functions() {
    rpc::register("fo", "dsup_start", |args| async move {
        let (Some(id), arg) = (args.first(), args.get(1)) else {
            return Ok(atom("badarg"));
        };
        let arg = arg.cloned().unwrap_or(Term::Nil);
        Ok(match workers().start_child(id.clone(), arg).await {
            Ok(pid) => Term::Pid(pid),
            Err(e) => Term::Tuple(vec![
                atom("error"),
                Term::Binary(e.to_string().into_bytes().into()),
            ]),
        })
    })
    .expect("fo:dsup_start");
    rpc::register("fo", "dsup_terminate", |args| async move {
        let Some(id) = args.first() else {
            return Ok(atom("badarg"));
        };
        Ok(match workers().terminate_child(id).await {
            Ok(()) => atom("ok"),
            Err(e) => Term::Binary(e.to_string().into_bytes().into()),
        })
    })
    .expect("fo:dsup_terminate");
    // `[{Id, Pid | undefined}]`: the set and this node's name table.
    rpc::register("fo", "dsup_children", |_| async move {
        Ok(match workers().which_children().await {
            Ok(children) => Term::List(
                children
                    .into_iter()
                    .map(|(id, pid)| {
                        Term::Tuple(vec![id, pid.map_or(atom("undefined"), Term::Pid)])
                    })
                    .collect(),
            ),
            Err(e) => Term::Binary(e.to_string().into_bytes().into()),
        })
    })
    .expect("fo:dsup_children");
    // The instances that run on this node.
    rpc::register("fo", "dsup_local", |_| async move {
        Ok(Term::List(
            pg::get_local_members(&instances())
                .into_iter()
                .map(Term::Pid)
                .collect(),
        ))
    })
    .expect("fo:dsup_local");
    // Calls child `Id` through its global name: the node that answered.
    rpc::register("fo", "dsup_call", |args| async move {
        let Some(id) = args.first() else {
            return Ok(atom("badarg"));
        };
        let Some(pid) = workers().whereis(id) else {
            return Ok(atom("none"));
        };
        let tag = Term::Ref(beamish::Ref::new().into());
        pid.send(Term::Tuple(vec![
            Term::Pid(beamish::self_pid()),
            tag.clone(),
            atom("where"),
        ]));
        let reply = beamish::receive_if(move |t: &Term| {
            t.as_tuple().is_some_and(|e| e.first() == Some(&tag))
        })
        .timeout(Duration::from_millis(500))
        .await;
        Ok(match reply.as_ref().and_then(|t| t.as_tuple()) {
            Some([_, node]) => node.clone(),
            _ => atom("none"),
        })
    })
    .expect("fo:dsup_call");
    rpc::register("fo", "dsup_crash", |args| async move {
        match args.first().and_then(|id| workers().whereis(id)) {
            Some(pid) => {
                pid.exit(beamish::Reason::other("crash"));
                Ok(atom("ok"))
            }
            None => Ok(atom("none")),
        }
    })
    .expect("fo:dsup_crash");
}

/// Rust functions the test calls on a child.
fn register_functions() {
    rpc::register("fo", "whereis", |args| async move {
        Ok(match args.as_slice() {
            [name] => global::whereis_name(name).map_or(atom("undefined"), Term::Pid),
            _ => atom("badarg"),
        })
    })
    .expect("fo:whereis");
    rpc::register("fo", "call_where", |_| async move {
        Ok(
            match probe()
                .call_timeout(ProbeCall::Where, Duration::from_millis(500))
                .await
            {
                Ok(ProbeReply::Node(n)) => atom(&n),
                other => Term::Binary(format!("{other:?}").into_bytes().into()),
            },
        )
    })
    .expect("fo:call_where");
    // The shop worker, called from this node: `info` or `incr`.
    rpc::register("fo", "shop", |args| async move {
        let req = match args.first() {
            Some(Term::Atom(x)) if x.as_str() == "incr" => ShopCall::Incr,
            _ => ShopCall::Info,
        };
        Ok(
            match shop().call_timeout(req, Duration::from_secs(1)).await {
                Ok(ShopReply::Info(node, start, count)) => Term::Tuple(vec![
                    atom(&node),
                    Term::Binary(start.into_bytes().into()),
                    Term::Int(count),
                ]),
                Ok(ShopReply::Count(n)) => Term::Int(n),
                Err(e) => Term::Tuple(vec![
                    atom("error"),
                    Term::Binary(format!("{e:?}").into_bytes().into()),
                ]),
            },
        )
    })
    .expect("fo:shop");
    rpc::register("fo", "nodes", |_| async move {
        Ok(Term::List(
            dist::nodes().into_iter().map(Term::Atom).collect(),
        ))
    })
    .expect("fo:nodes");
    // Takes every connection of this node but the test's down every
    // 100 ms, for `Ms` milliseconds: a node that flaps.
    rpc::register("fo", "flap", |args| async move {
        let (Some(Term::Int(ms)), Some(Term::Atom(keep))) = (args.first(), args.get(1)) else {
            return Ok(atom("badarg"));
        };
        let (ms, keep) = (*ms, *keep);
        beamish::spawn(async move {
            let until = Instant::now() + Duration::from_millis(ms.unsigned_abs());
            while Instant::now() < until {
                for n in dist::nodes() {
                    if n != keep {
                        dist::disconnect_node(n);
                    }
                }
                beamish::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(atom("ok"))
    })
    .expect("fo:flap");
    // `isolate([Keep])`: connections with every node but `Keep` are taken
    // down and refused (`dist::set_allowed`) until `isolate([])` lifts the
    // list; answers `isolated` once a peer can no longer be connected.
    rpc::register("fo", "isolate", |args| async move {
        let Some(Term::Atom(keep)) = args.first() else {
            dist::set_allowed(None).expect("dist is started");
            return Ok(atom("ok"));
        };
        dist::set_allowed(Some(&[*keep])).expect("dist is started");
        // Down, and not connected again by anything in flight.
        let keep = *keep;
        let t0 = Instant::now();
        while dist::nodes().iter().any(|n| *n != keep) && t0.elapsed() < Duration::from_secs(1) {
            for n in dist::nodes() {
                if n != keep {
                    dist::disconnect_node(n);
                }
            }
            beamish::sleep(Duration::from_millis(5)).await;
        }
        let peer = std::env::var(PEERS_ENV)
            .unwrap_or_default()
            .split(',')
            .find(|s| !s.is_empty())
            .map(a);
        match peer {
            Some(p) if dist::connect_node(p).await == Ok(false) => Ok(atom("isolated")),
            _ => Ok(atom("still_connected")),
        }
    })
    .expect("fo:isolate");
}

// ------------------------------------------------------------ child mode

fn child(name: &str, epmd_port: u16) {
    // BEAMISH_FO_LOG: a tracing filter for the children (default info).
    let filter = std::env::var("BEAMISH_FO_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
    let rt = Runtime::builder()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let mut config = NodeConfig::new(name, COOKIE)
        .epmd_port(epmd_port)
        .embedded_epmd(false);
    config = config.net_ticktime(Duration::from_secs(TICKTIME));
    let peers: Vec<Atom> = std::env::var(PEERS_ENV)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(a)
        .collect();
    let app = std::env::var(APP_ENV).ok();
    let doomed = std::env::var(DOOMED_ENV).is_ok();
    let host = std::env::var(HOST_ENV).ok();
    let dsup = std::env::var(DSUP_ENV).is_ok();
    let out = rt.block_on(async move {
        dist::start(config).await.expect("dist::start");
        global::start().await.expect("global");
        pg::start().expect("pg");
        register_functions();
        let mut members = Membership::new();
        if let Some((basename, host)) = host.as_deref().and_then(|h| h.split_once(':')) {
            members = members.host(basename, host);
        }
        members
            .nodes(peers)
            .backoff(Duration::from_millis(50), Duration::from_millis(500))
            .sync_timeout(Duration::from_secs(1))
            .start()
            .await
            .expect("membership");
        let spec = ChildSpec::worker("probe", || async {
            Ok(otp::start_with(
                Probe { count: 0 },
                StartOptions::new().link().trap_exit(true),
            )
            .await?
            .pid())
        });
        let singleton = Singleton::new(probe_name(), spec).check_every(Duration::from_millis(200));
        Supervisor::start_link(SupervisorFlags::default(), vec![singleton.child_spec()])
            .await
            .expect("the probe singleton");
        if let Some(spec) = app {
            start_app(&spec).await;
        }
        if dsup {
            register_dsup_functions();
            start_workers().await;
        }
        if doomed {
            let spec = ChildSpec::worker("doomed", || async {
                tracing::info!("doomed: start attempt");
                Err::<beamish::Pid, _>(Error::Config("the doomed service never starts".into()))
            });
            match Singleton::new(atom("doomed"), spec).start().await {
                Ok(pid) => println!("doomed: manager {pid} settled"),
                Err(e) => println!("doomed failed: {e}"),
            }
        }
        println!("ready");
        beamish::receive::<()>().await;
    });
    if let Err(reason) = out {
        eprintln!("child {name} failed: {reason}");
        std::process::exit(1);
    }
}

/// A child to start: its name and environment.
struct Spec {
    name: String,
    env: Vec<(&'static str, String)>,
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| node_name(&unique_name(&format!("{prefix}{i}"))))
        .collect()
}

/// Children `names`, each with every other as a peer, and `extra` env.
fn specs(names: &[String], extra: &[(&'static str, String)]) -> Vec<Spec> {
    names
        .iter()
        .map(|n| {
            let peers: Vec<&str> = names
                .iter()
                .filter(|p| *p != n)
                .map(String::as_str)
                .collect();
            let mut env = vec![(PEERS_ENV, peers.join(","))];
            env.extend(extra.iter().cloned());
            Spec {
                name: n.clone(),
                env,
            }
        })
        .collect()
}

/// This test binary in child mode as the node `spec`.
fn child_command(spec: &Spec) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.env(CHILD_ENV, &spec.name)
        .env(EPMD_ENV, world().epmd_port.to_string());
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    cmd
}

fn start_child(spec: &Spec) -> Child {
    Child::start(&spec.name, child_command(spec))
}

/// `fo:Function(Args)` on `node` (2 s at most).
async fn fo(node: Atom, function: &str, args: Vec<Term>) -> Result<Term, rpc::RpcError> {
    rpc::call_timeout(node, "fo", function, args, Duration::from_secs(2)).await
}

/// The tick time of every node of these tests, the test's own included
/// (a cluster must share one).
const TICKTIME: u64 = 4;

fn world() -> &'static common::World {
    common::world_with_ticktime("failover_test", Duration::from_secs(TICKTIME))
}

// ------------------------------------------------------------ helpers

fn run_with<T: Send + 'static>(
    children: &[&Child],
    test: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    world().run_with_children(children, test)
}

/// What `node`'s global says of `name`.
async fn whereis_on(node: Atom, name: &Term) -> Option<Term> {
    fo(node, "whereis", vec![name.clone()]).await.ok()
}

/// The one pid every node of `nodes` has for `name`, if they agree on one.
async fn agreed(nodes: &[Atom], name: &Term) -> Option<beamish::Pid> {
    let mut seen = None;
    for n in nodes {
        match whereis_on(*n, name).await {
            Some(Term::Pid(p)) if seen.is_none() || seen == Some(p) => seen = Some(p),
            _ => return None,
        }
    }
    seen
}

/// Waits up to `bound` for every node of `nodes` to agree on one pid for
/// `name`; the pid and how long it took.
async fn converge(nodes: &[Atom], name: &Term, bound: Duration) -> (beamish::Pid, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(p) = agreed(nodes, name).await {
            return (p, t0.elapsed());
        }
        let mut views = Vec::new();
        for n in nodes {
            views.push((n.as_str().to_owned(), whereis_on(*n, name).await));
        }
        assert!(
            t0.elapsed() < bound,
            "{name}: the nodes do not agree on one instance after {bound:?}: {views:?}"
        );
        beamish::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks `via` to call the probe until a node other than `old` answers;
/// how long that took after `since`, and the calls that failed meanwhile.
async fn new_answer(
    via: Atom,
    old: Option<Atom>,
    since: Instant,
    bound: Duration,
) -> (Atom, Duration, u32) {
    let mut failed = 0;
    loop {
        if let Ok(Term::Atom(n)) = fo(via, "call_where", vec![]).await
            && Some(n) != old
        {
            return (n, since.elapsed(), failed);
        }
        failed += 1;
        assert!(
            since.elapsed() < bound,
            "no new instance answered within {bound:?}"
        );
        beamish::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_nodedown(node: Atom) -> Instant {
    let got = beamish::receive_if(move |d: &dist::NodeDown| d.node == node)
        .timeout(WAIT)
        .await;
    assert!(got.is_some(), "no nodedown of {node} within {WAIT:?}");
    Instant::now()
}

fn signal(child: &Child, sig: libc::c_int) {
    child.proc.signal(sig);
}

// ------------------------------------------------------------ scenarios

/// SIGKILL the node that runs the singleton: another starts it within 2 s
/// of the nodedown; twice in a row; every node agrees on the new one.
fn singleton_fails_over_after_a_kill() {
    let names = names("kill", 3);
    let specs = specs(&names, &[]);
    let mut children: Vec<Option<Child>> = specs.iter().map(|s| Some(start_child(s))).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    for round in 0..2 {
        let live: Vec<Atom> = nodes
            .iter()
            .zip(&children)
            .filter(|(_, c)| c.is_some())
            .map(|(n, _)| *n)
            .collect();
        let refs: Vec<&Child> = children.iter().flatten().collect();
        let (pid, _) = run_with(&refs, {
            let live = live.clone();
            async move { converge(&live, &probe_name(), WAIT).await }
        });
        let victim = nodes
            .iter()
            .position(|n| *n == pid.node())
            .expect("a child runs it");
        let survivor = *live.iter().find(|n| **n != pid.node()).expect("a survivor");
        let (answered, window) = {
            let child = children[victim].take().expect("the victim");
            let node = child.node;
            let refs: Vec<&Child> = children.iter().flatten().collect();
            run_with(&refs, async move {
                dist::monitor_node(node, true);
                let mut child = child;
                child.proc.kill();
                let t0 = wait_nodedown(node).await;
                let (n, window, _) =
                    new_answer(survivor, Some(node), t0, Duration::from_secs(2)).await;
                (n, window)
            })
        };
        println!("  round {round}: failover in {window:?}, now on {answered}");
        let live: Vec<Atom> = live.into_iter().filter(|n| *n != nodes[victim]).collect();
        let refs: Vec<&Child> = children.iter().flatten().collect();
        run_with(&refs, async move {
            let (p, _) = converge(&live, &probe_name(), Duration::from_secs(2)).await;
            assert_eq!(p.node(), answered);
        });
    }
}

/// Two nodes started at the same instant, before they know each other:
/// after they connect, exactly one instance stays and both agree on it.
fn two_nodes_start_at_the_same_instant() {
    let names = names("twin", 2);
    let specs = specs(&names, &[]);
    // Both processes start before either waits for the other's `ready`.
    let mut procs: Vec<_> = specs
        .iter()
        .map(|s| common::erl::Proc::spawn(s.name.clone(), child_command(s)))
        .collect();
    for p in &mut procs {
        p.expect_line("ready", WAIT);
    }
    let children: Vec<Child> = procs
        .into_iter()
        .zip(&names)
        .map(|(proc, n)| Child { proc, node: a(n) })
        .collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let refs: Vec<&Child> = children.iter().collect();
    run_with(&refs, async move {
        let (p, _) = converge(&nodes, &probe_name(), Duration::from_secs(5)).await;
        // And it stays so.
        beamish::sleep(Duration::from_secs(1)).await;
        assert_eq!(agreed(&nodes, &probe_name()).await, Some(p));
    });
}

/// A singleton whose start fails on every node: each node's start gives
/// the error once, nothing is registered, and no node keeps retrying.
fn a_start_that_fails_everywhere_gives_up() {
    let names = names("doom", 2);
    let specs = specs(&names, &[(DOOMED_ENV, "1".into())]);
    let children: Vec<Child> = specs.iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let refs: Vec<&Child> = children.iter().collect();
    run_with(&refs, async move {
        beamish::sleep(Duration::from_secs(1)).await;
        for n in &nodes {
            assert_eq!(
                whereis_on(*n, &atom("doomed")).await,
                Some(atom("undefined"))
            );
        }
    });
    for c in &children {
        let out = c.proc.output();
        assert!(out.contains("doomed failed: "), "{}:\n{out}", c.node);
        assert!(
            out.contains("the doomed service never starts"),
            "{}:\n{out}",
            c.node
        );
        let attempts = out.matches("doomed: start attempt").count();
        assert_eq!(attempts, 1, "{} tried {attempts} times:\n{out}", c.node);
    }
}

/// A node that flaps (its connections taken down every 100 ms for 2 s):
/// once it stops, one instance is left within 5 s and calls go on.
fn a_flapping_node_leaves_one_instance() {
    let names = names("flap", 3);
    let specs = specs(&names, &[]);
    let children: Vec<Child> = specs.iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let refs: Vec<&Child> = children.iter().collect();
    let me = world().node;
    run_with(&refs, async move {
        let (p, _) = converge(&nodes, &probe_name(), WAIT).await;
        let flapper = p.node();
        let r = rpc::call(flapper, "fo", "flap", vec![Term::Int(2000), Term::Atom(me)]).await;
        assert_eq!(r.ok(), Some(atom("ok")));
        beamish::sleep(Duration::from_millis(2100)).await;
        let (p2, took) = converge(&nodes, &probe_name(), Duration::from_secs(5)).await;
        println!(
            "  one instance {took:?} after the flapping stopped (on {})",
            p2.node()
        );
        let other = *nodes.iter().find(|n| **n != flapper).expect("another node");
        let (n, _, _) = new_answer(other, None, Instant::now(), Duration::from_secs(5)).await;
        assert_eq!(n, p2.node());
    });
}

/// Rounds of SIGKILL, SIGSTOP and SIGCONT on five nodes (net_ticktime 4):
/// after each, at most one instance is registered and, once the nodes have
/// settled, a call succeeds within the bound. Killed nodes come back as
/// new OS processes (a new creation).
fn random_rounds_on_five_nodes() {
    let rounds: usize = std::env::var("BEAMISH_FO_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let names = names("round", 5);
    let specs = specs(&names, &[]);
    let mut children: Vec<Child> = specs.iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let seed = std::env::var("BEAMISH_FO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()));
    println!("  seed {seed} (BEAMISH_FO_SEED={seed} replays the choices)");
    let mut rng = Xorshift(seed | 1);
    for round in 0..rounds {
        let refs: Vec<&Child> = children.iter().collect();
        let all = nodes.clone();
        let (pid, _) = run_with(
            &refs,
            async move { converge(&all, &probe_name(), WAIT).await },
        );
        let target = if rng.below(2) == 0 {
            nodes
                .iter()
                .position(|n| *n == pid.node())
                .expect("a child runs it")
        } else {
            rng.below(nodes.len())
        };
        let action = match std::env::var("BEAMISH_FO_ACTION").as_deref() {
            Ok("kill") => 0,
            Ok("stop") => 1,
            _ => rng.below(2),
        };
        let node = nodes[target];
        let others: Vec<Atom> = nodes.iter().copied().filter(|n| *n != node).collect();
        if action == 0 {
            // SIGKILL, then the node comes back.
            children[target].proc.kill();
            let refs: Vec<&Child> = children.iter().collect();
            let o = others.clone();
            let took = run_with(&refs, async move {
                let t0 = Instant::now();
                let (n, _, _) = new_answer(o[0], Some(node), t0, WAIT).await;
                let (p, _) = converge(&o, &probe_name(), Duration::from_secs(5)).await;
                assert_eq!(p.node(), n);
                t0.elapsed()
            });
            println!("  round {round}: kill {node}: answered again in {took:?}");
            children[target] = start_child(&specs[target]);
        } else {
            // SIGSTOP past the tick timeout, then SIGCONT.
            signal(&children[target], libc::SIGSTOP);
            let refs: Vec<&Child> = children.iter().collect();
            let o = others.clone();
            let ran_it = pid.node() == node;
            let took = run_with(&refs, async move {
                let t0 = Instant::now();
                // Held until the others have seen the node go (the tick
                // timeout), so that every stop is a partition.
                let gone = async |peer: Atom| match fo(peer, "nodes", vec![]).await {
                    Ok(Term::List(ref ns)) => !ns.contains(&Term::Atom(node)),
                    _ => false,
                };
                while !gone(o[0]).await {
                    assert!(
                        t0.elapsed() < Duration::from_secs(15),
                        "{node} is still connected"
                    );
                    beamish::sleep(Duration::from_millis(50)).await;
                }
                let old = ran_it.then_some(node);
                let (n, _, _) = new_answer(o[0], old, t0, Duration::from_secs(15)).await;
                let (p, _) = converge(&o, &probe_name(), Duration::from_secs(10)).await;
                assert_eq!(p.node(), n);
                t0.elapsed()
            });
            signal(&children[target], libc::SIGCONT);
            let refs: Vec<&Child> = children.iter().collect();
            let all = nodes.clone();
            let healed = run_with(&refs, async move {
                let (_, took) = converge(&all, &probe_name(), Duration::from_secs(10)).await;
                took
            });
            println!(
                "  round {round}: stop {node}: others answered in {took:?}; one instance {healed:?} after SIGCONT"
            );
        }
    }
}

// ------------------------------------------------- distributed supervisor

/// `workers`' children as `node` sees them: each id of the set, with the
/// pid its name table has.
async fn dsup_children(node: Atom) -> Option<Vec<(Term, Option<beamish::Pid>)>> {
    match fo(node, "dsup_children", vec![]).await {
        Ok(Term::List(ref items)) => Some(
            items
                .iter()
                .filter_map(|t| match t.as_tuple()? {
                    [id, pid] => Some((id.clone(), pid.as_pid())),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    }
}

type Placed = std::collections::BTreeMap<Term, beamish::Pid>;

/// Waits up to `bound` until every node of `nodes` has exactly `ids` in
/// the set, each with one pid they all agree on, running on the node that
/// rendezvous hashing over `nodes` gives; those pids, and how long it
/// took.
async fn settle_workers(nodes: &[Atom], ids: &[Term], bound: Duration) -> (Placed, Duration) {
    let t0 = Instant::now();
    loop {
        let mut views = Vec::new();
        for n in nodes {
            views.push(dsup_children(*n).await);
        }
        let agreed = views.iter().all(|v| v == &views[0]);
        let placed: Option<Placed> = views[0].as_ref().and_then(|v| {
            let ok = v.len() == ids.len()
                && v.iter().all(|(id, pid)| {
                    ids.contains(id) && pid.is_some_and(|p| Some(p.node()) == rendezvous(id, nodes))
                });
            ok.then(|| {
                v.iter()
                    .map(|(id, p)| (id.clone(), p.expect("a pid")))
                    .collect()
            })
        });
        if agreed && let Some(placed) = placed {
            return (placed, t0.elapsed());
        }
        assert!(
            t0.elapsed() < bound,
            "the workers did not settle on {nodes:?} within {bound:?}: {views:?}"
        );
        beamish::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits up to `bound` until the instances that run on `nodes` are
/// exactly `placed`'s pids: one instance per child, nothing else.
async fn only_these_run(nodes: &[Atom], placed: &Placed, bound: Duration) {
    let t0 = Instant::now();
    let mut want: Vec<beamish::Pid> = placed.values().copied().collect();
    want.sort();
    loop {
        let mut running = Vec::new();
        for n in nodes {
            if let Ok(Term::List(ref pids)) = fo(*n, "dsup_local", vec![]).await {
                running.extend(pids.iter().filter_map(Term::as_pid));
            }
        }
        running.sort();
        if running == want {
            return;
        }
        assert!(
            t0.elapsed() < bound,
            "instances running {running:?}, registered {want:?}"
        );
        beamish::sleep(Duration::from_millis(20)).await;
    }
}

fn error_text(r: &Result<Term, rpc::RpcError>) -> String {
    match r {
        Ok(t) => match t.as_tuple() {
            Some([tag, Term::Binary(b)]) if *tag == atom("error") => {
                String::from_utf8_lossy(b).into_owned()
            }
            _ => format!("not an error: {t}"),
        },
        Err(e) => format!("rpc failed: {e:?}"),
    }
}

/// The `workers` distributed supervisor on three nodes: 30 children land
/// where rendezvous hashing puts them (some on every node), registered
/// under `{workers, Id}` everywhere; a crashed child restarts in place, a
/// start that fails is refused and not kept, a terminated child goes
/// everywhere. SIGKILL a node: its children run on the two others within
/// 2 s of the nodedown, and no other child moves. A fourth node joins:
/// only the children it now ranks first for move to it.
fn dist_supervisor_spreads_fails_over_and_rebalances() {
    let names = names("dsup", 4);
    let specs = specs(&names, &[(DSUP_ENV, "1".into())]);
    let mut children: Vec<Child> = specs[..3].iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let mut ids: Vec<Term> = (0..30).map(Term::Int).collect();
    let three = nodes[..3].to_vec();
    let refs: Vec<&Child> = children.iter().collect();
    let placed = run_with(&refs, {
        let ids = ids.clone();
        async move {
            for id in &ids {
                let r = fo(three[0], "dsup_start", vec![id.clone()]).await;
                assert!(matches!(r, Ok(Term::Pid(_))), "start {id}: {r:?}");
            }
            let (placed, took) = settle_workers(&three, &ids, WAIT).await;
            for n in &three {
                let here = placed.values().filter(|p| p.node() == *n).count();
                println!("  {here} of 30 on {n}");
                assert!(here > 0, "no child on {n}");
            }
            println!("  placed in {took:?}");
            only_these_run(&three, &placed, WAIT).await;
            let r = fo(three[1], "dsup_start", vec![ids[2].clone()]).await;
            assert!(error_text(&r).contains("already started"), "{r:?}");
            let r = fo(three[1], "dsup_start", vec![Term::Int(100), atom("fail")]).await;
            assert!(error_text(&r).contains("never starts"), "{r:?}");
            // A crash: restarted on the same node.
            let old = placed[&ids[0]];
            let r = fo(old.node(), "dsup_crash", vec![ids[0].clone()]).await;
            assert_eq!(r.ok(), Some(atom("ok")));
            let t0 = Instant::now();
            let placed = loop {
                let (placed, _) = settle_workers(&three, &ids, WAIT).await;
                if placed[&ids[0]] != old {
                    break placed;
                }
                assert!(t0.elapsed() < WAIT, "child 0 was not restarted");
                beamish::sleep(Duration::from_millis(20)).await;
            };
            assert_eq!(placed[&ids[0]].node(), old.node());
            // Terminated from another node: gone everywhere.
            let r = fo(three[2], "dsup_terminate", vec![ids[1].clone()]).await;
            assert_eq!(r.ok(), Some(atom("ok")));
            let rest: Vec<Term> = ids[2..].iter().chain(&ids[..1]).cloned().collect();
            let (placed, _) = settle_workers(&three, &rest, WAIT).await;
            only_these_run(&three, &placed, WAIT).await;
            placed
        }
    });
    ids.remove(1);
    // SIGKILL the third node.
    let victim = nodes[2];
    let two = nodes[..2].to_vec();
    let dead = children.pop().expect("the victim");
    let refs: Vec<&Child> = children.iter().collect();
    let after_kill = run_with(&refs, {
        let (ids, placed) = (ids.clone(), placed.clone());
        async move {
            dist::monitor_node(victim, true);
            let mut dead = dead;
            dead.proc.kill();
            let t0 = wait_nodedown(victim).await;
            let (now, _) = settle_workers(&two, &ids, Duration::from_secs(2)).await;
            let window = t0.elapsed();
            let moved = ids.iter().filter(|id| placed[*id] != now[*id]).count();
            let had = placed.values().filter(|p| p.node() == victim).count();
            println!(
                "  kill {victim}: its {had} children ran elsewhere {window:?} after the nodedown"
            );
            assert_eq!(moved, had, "only the dead node's children move");
            for id in &ids {
                let answered = fo(now[id].node(), "dsup_call", vec![id.clone()]).await;
                assert_eq!(answered.ok(), Some(Term::Atom(now[id].node())), "{id}");
            }
            now
        }
    });
    // A fourth node joins.
    children.push(start_child(&specs[3]));
    let view = vec![nodes[0], nodes[1], nodes[3]];
    let refs: Vec<&Child> = children.iter().collect();
    run_with(&refs, async move {
        let (now, took) = settle_workers(&view, &ids, WAIT).await;
        let to_new: Vec<&Term> = ids
            .iter()
            .filter(|id| rendezvous(id, &view) == Some(view[2]))
            .collect();
        for id in &ids {
            if to_new.contains(&id) {
                assert_eq!(now[id].node(), view[2]);
            } else {
                assert_eq!(now[id], after_kill[id], "{id} moved without cause");
            }
        }
        println!(
            "  {} joined: {} of {} children moved to it in {took:?}",
            view[2],
            to_new.len(),
            ids.len()
        );
        only_these_run(&view, &now, WAIT).await;
    });
}

/// SIGSTOP a node of `workers` past the tick timeout: the others run its
/// children; SIGCONT: the partitions heal into one instance per child,
/// on the node rendezvous hashing over all three gives, and nothing else
/// runs.
fn dist_supervisor_heals_a_partition() {
    let names = names("dheal", 3);
    let specs = specs(&names, &[(DSUP_ENV, "1".into())]);
    let children: Vec<Child> = specs.iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let ids: Vec<Term> = (0..12).map(Term::Int).collect();
    let refs: Vec<&Child> = children.iter().collect();
    let stopped = nodes[0];
    let others: Vec<Atom> = nodes[1..].to_vec();
    run_with(&refs, {
        let (nodes, ids) = (nodes.clone(), ids.clone());
        async move {
            for id in &ids {
                let r = fo(nodes[1], "dsup_start", vec![id.clone()]).await;
                assert!(matches!(r, Ok(Term::Pid(_))), "start {id}: {r:?}");
            }
            settle_workers(&nodes, &ids, WAIT).await;
            no_name_lock_for_a_stranger(nodes[1]).await;
        }
    });
    signal(&children[0], libc::SIGSTOP);
    run_with(&refs, {
        let ids = ids.clone();
        async move {
            let t0 = Instant::now();
            while !matches!(fo(others[0], "nodes", vec![]).await,
                Ok(Term::List(ref ns)) if !ns.contains(&Term::Atom(stopped)))
            {
                assert!(
                    t0.elapsed() < Duration::from_secs(15),
                    "{stopped} is still connected"
                );
                beamish::sleep(Duration::from_millis(50)).await;
            }
            let (_, took) = settle_workers(&others, &ids, Duration::from_secs(5)).await;
            println!("  stop {stopped}: the others ran every child {took:?} after they dropped it");
        }
    });
    signal(&children[0], libc::SIGCONT);
    run_with(&refs, async move {
        let (placed, took) = settle_workers(&nodes, &ids, Duration::from_secs(10)).await;
        only_these_run(&nodes, &placed, Duration::from_secs(5)).await;
        println!("  SIGCONT: one instance of each child {took:?} later");
    });
}

/// A partition that cuts every node off from every other (each keeps only
/// its link to the test's node, which runs no `global`): each node runs
/// the singleton and every distributed child on its own; once the
/// partition is lifted, one instance of each is left (the singleton's
/// rule and the placement pick it) and every node agrees on it.
fn a_partition_that_isolates_every_node() {
    let names = names("iso", 3);
    let specs = specs(&names, &[(DSUP_ENV, "1".into())]);
    let children: Vec<Child> = specs.iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let ids: Vec<Term> = (0..6).map(Term::Int).collect();
    let refs: Vec<&Child> = children.iter().collect();
    let me = world().node;
    run_with(&refs, async move {
        converge(&nodes, &probe_name(), WAIT).await;
        for id in &ids {
            let r = fo(nodes[0], "dsup_start", vec![id.clone()]).await;
            assert!(matches!(r, Ok(Term::Pid(_))), "start {id}: {r:?}");
        }
        settle_workers(&nodes, &ids, WAIT).await;
        for n in &nodes {
            let r = fo(*n, "isolate", vec![Term::Atom(me)]).await;
            assert_eq!(r.ok(), Some(atom("isolated")), "isolate {n}");
        }
        for n in &nodes {
            let (p, _) = converge(&[*n], &probe_name(), Duration::from_secs(5)).await;
            assert_eq!(p.node(), *n, "an isolated node runs its own instance");
            settle_workers(&[*n], &ids, Duration::from_secs(5)).await;
            let r = fo(*n, "nodes", vec![]).await;
            assert_eq!(
                r.ok(),
                Some(Term::List(vec![Term::Atom(me)])),
                "{n} is alone"
            );
        }
        for n in &nodes {
            assert_eq!(fo(*n, "isolate", vec![]).await.ok(), Some(atom("ok")));
        }
        let t0 = Instant::now();
        let (p, _) = converge(&nodes, &probe_name(), Duration::from_secs(10)).await;
        let (placed, _) = settle_workers(&nodes, &ids, Duration::from_secs(10)).await;
        only_these_run(&nodes, &placed, Duration::from_secs(5)).await;
        let (n, _, _) = new_answer(nodes[0], None, Instant::now(), Duration::from_secs(5)).await;
        assert_eq!(n, p.node(), "calls reach the instance every node has");
        println!(
            "  lifted: one singleton (on {}) and one instance of each child {:?} later",
            p.node(),
            t0.elapsed()
        );
    });
}

/// Our node runs no `global`, so it is no node the children's name servers
/// know: they refuse it a registrar's lock (`{global, Pid}`: a node whose
/// known list is stale must not register names in a partition it has not
/// synced with), and still grant it a lock on any other resource.
async fn no_name_lock_for_a_stranger(node: Atom) {
    let dest = dist::gen_protocol::Dest::Remote {
        name: a("global_name_server"),
        node,
    };
    let me = Term::Pid(beamish::self_pid());
    let lock = |resource: Term| tuple([atom("set_lock"), tuple([resource, me.clone()])]);
    let ask = |request: Term| dist::gen_protocol::call(&dest, request, Some(WAIT));
    assert_eq!(ask(lock(atom("global"))).await, Ok(atom("false")));
    let other = tuple([atom("fo_resource"), Term::Int(1)]);
    assert_eq!(ask(lock(other.clone())).await, Ok(atom("true")));
    let del = tuple([atom("del_lock"), tuple([other, me.clone()])]);
    assert_eq!(ask(del).await, Ok(atom("true")));
}

/// The `shop` application on `[n0, {n1, n2}]` with a failover timeout of
/// 1 s: it starts on n0; when n0 is killed it starts on n1 (the smaller
/// name of the next group) as `failover:n0`, not before the timeout; when
/// n0 comes back it takes the application over as `takeover:n1`, with the
/// count handed over.
fn distributed_application_fails_over_and_is_taken_over() {
    let mut names = names("app", 3);
    names[1..].sort();
    let app = format!("{},{}|{}", names[0], names[2], names[1]);
    let specs = specs(&names, &[(APP_ENV, app)]);
    let mut children: Vec<Child> = specs.iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let (n0, n1) = (nodes[0], nodes[1]);
    let refs: Vec<&Child> = children.iter().collect();
    let all = nodes.clone();
    let via = nodes[2];
    run_with(&refs, async move {
        let app_name = Term::Tuple(vec![atom("application"), atom("shop")]);
        let (root, _) = converge(&all, &app_name, WAIT).await;
        assert_eq!(root.node(), n0, "the application starts on the first node");
        assert_eq!(shop_info(via).await, (n0, "normal".into(), 0));
        for _ in 0..3 {
            shop_incr(via).await;
        }
    });
    // Failover: n0 killed; n1 starts it after the failover timeout.
    children[0].proc.kill();
    let refs: Vec<&Child> = children.iter().collect();
    let rest = nodes[1..].to_vec();
    run_with(&refs, async move {
        let t0 = Instant::now();
        let app_name = Term::Tuple(vec![atom("application"), atom("shop")]);
        let (root, _) = converge(&rest, &app_name, Duration::from_secs(10)).await;
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "failed over before the timeout: {:?}",
            t0.elapsed()
        );
        assert_eq!(root.node(), n1, "the smaller name of the next group");
        assert_eq!(shop_info(via).await, (n1, format!("failover:{n0}"), 0));
        for _ in 0..5 {
            shop_incr(via).await;
        }
    });
    // Takeover: n0 comes back and takes it over, with the count.
    children[0] = start_child(&specs[0]);
    let refs: Vec<&Child> = children.iter().collect();
    let all = nodes.clone();
    run_with(&refs, async move {
        let app_name = Term::Tuple(vec![atom("application"), atom("shop")]);
        let t0 = Instant::now();
        loop {
            if let Some(p) = agreed(&all, &app_name).await
                && p.node() == n0
            {
                break;
            }
            assert!(t0.elapsed() < WAIT, "no takeover by {n0}");
            beamish::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(shop_info(via).await, (n0, format!("takeover:{n1}"), 5));
    });
    let old = children[1].proc.output();
    assert!(old.contains("singleton: handed over"), "{old}");
}

/// The shop worker's `(node, start, count)`, asked through `via` (the
/// test's node runs no global: see [`random_rounds_on_five_nodes`]),
/// retried while its global name moves.
async fn shop_info(via: Atom) -> (Atom, String, i64) {
    let t0 = Instant::now();
    loop {
        let got = fo(via, "shop", vec![atom("info")]).await;
        if let Ok(Term::Tuple(v)) = &got
            && let [Term::Atom(n), Term::Binary(start), Term::Int(count)] = v.as_slice()
        {
            return (*n, String::from_utf8_lossy(start).into_owned(), *count);
        }
        assert!(
            t0.elapsed() < WAIT,
            "the shop worker does not answer: {got:?}"
        );
        beamish::sleep(Duration::from_millis(20)).await;
    }
}

async fn shop_incr(via: Atom) {
    let got = fo(via, "shop", vec![atom("incr")]).await;
    assert!(matches!(got, Ok(Term::Int(_))), "incr: {got:?}");
}

/// A member found by a host name (`basename@address` for each address
/// `localhost` resolves to): the second node connects to the first with
/// no node list, and they share one instance.
fn a_host_name_seed_finds_the_node() {
    let first = format!("seed_{}", std::process::id());
    let a_spec = Spec {
        name: format!("{first}@127.0.0.1"),
        env: vec![],
    };
    let b_spec = Spec {
        name: node_name(&unique_name("seeker")),
        env: vec![(HOST_ENV, format!("{first}:localhost"))],
    };
    let a_child = start_child(&a_spec);
    let b_child = start_child(&b_spec);
    let nodes = vec![a_child.node, b_child.node];
    run_with(&[&a_child, &b_child], async move {
        let t0 = Instant::now();
        loop {
            let r = fo(nodes[1], "nodes", vec![]).await;
            if matches!(&r, Ok(Term::List(ns)) if ns.contains(&Term::Atom(nodes[0]))) {
                break;
            }
            assert!(
                t0.elapsed() < WAIT,
                "{} never connected to {}: {r:?}",
                nodes[1],
                nodes[0]
            );
            beamish::sleep(Duration::from_millis(20)).await;
        }
        converge(&nodes, &probe_name(), Duration::from_secs(5)).await;
    });
}

/// Two nodes with different node lists for one application (each lists
/// itself first, takeover on): one instance is registered and both agree
/// on it; it stays put, because a takeover needs the running node's own
/// list to rank the new node first (no passing back and forth).
fn nodes_with_different_lists_still_share_one_instance() {
    let names = names("lists", 2);
    let mut specs = specs(&names, &[]);
    specs[0]
        .env
        .push((APP_ENV, format!("{},{}", names[0], names[1])));
    specs[1]
        .env
        .push((APP_ENV, format!("{},{}", names[1], names[0])));
    let children: Vec<Child> = specs.iter().map(start_child).collect();
    let nodes: Vec<Atom> = names.iter().map(|n| a(n)).collect();
    let refs: Vec<&Child> = children.iter().collect();
    run_with(&refs, async move {
        let app_name = Term::Tuple(vec![atom("application"), atom("shop")]);
        let (p, _) = converge(&nodes, &app_name, WAIT).await;
        beamish::sleep(Duration::from_secs(1)).await;
        assert_eq!(agreed(&nodes, &app_name).await, Some(p), "it stays one");
    });
}

/// `sync_nodes_mandatory`: a mandatory node that never comes makes the
/// membership's start fail with that node, after the timeout.
fn a_missing_mandatory_node_fails_the_start() {
    world().run(async {
        let missing = a(&node_name("nobody_here"));
        let t0 = Instant::now();
        let r = Membership::new()
            .mandatory([missing])
            .sync_timeout(Duration::from_millis(300))
            .start()
            .await;
        assert_eq!(r.err(), Some(Error::NodeDown(missing)));
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(beamish::whereis(beamish::cluster::MEMBERSHIP).is_none());
    });
}

/// Tiny deterministic generator for the rounds' choices (the seed is
/// printed; the timing of the nodes is not replayed).
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % n as u64) as usize
    }
}

// ------------------------------------------------------------ main

fn main() {
    if let Some((name, port)) = common::child_mode(CHILD_ENV, EPMD_ENV) {
        child(&name, port);
        return;
    }
    let scenarios: [(&str, fn()); 12] = [
        (
            "a_missing_mandatory_node_fails_the_start",
            a_missing_mandatory_node_fails_the_start,
        ),
        (
            "singleton_fails_over_after_a_kill",
            singleton_fails_over_after_a_kill,
        ),
        (
            "two_nodes_start_at_the_same_instant",
            two_nodes_start_at_the_same_instant,
        ),
        (
            "a_start_that_fails_everywhere_gives_up",
            a_start_that_fails_everywhere_gives_up,
        ),
        (
            "a_flapping_node_leaves_one_instance",
            a_flapping_node_leaves_one_instance,
        ),
        (
            "distributed_application_fails_over_and_is_taken_over",
            distributed_application_fails_over_and_is_taken_over,
        ),
        (
            "a_host_name_seed_finds_the_node",
            a_host_name_seed_finds_the_node,
        ),
        (
            "nodes_with_different_lists_still_share_one_instance",
            nodes_with_different_lists_still_share_one_instance,
        ),
        ("random_rounds_on_five_nodes", random_rounds_on_five_nodes),
        (
            "dist_supervisor_spreads_fails_over_and_rebalances",
            dist_supervisor_spreads_fails_over_and_rebalances,
        ),
        (
            "dist_supervisor_heals_a_partition",
            dist_supervisor_heals_a_partition,
        ),
        (
            "a_partition_that_isolates_every_node",
            a_partition_that_isolates_every_node,
        ),
    ];
    common::run_scenarios(&scenarios);
}
