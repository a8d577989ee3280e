//! Failover you can watch: three beamish nodes (three OS processes) run a
//! singleton, `failover_counter`, and a distributed supervisor,
//! `failover_workers`, whose children are spread over the nodes; a client
//! node keeps calling the singleton and every child, and prints, for each
//! outage, how long after the nodedown the service answered again and how
//! many calls failed in between. `scripts/failover/demo.sh` starts it all
//! and kills (SIGKILL) and stops (SIGSTOP/SIGCONT) nodes.
//!
//! ```text
//! failover node NAME@HOST --peers A@HOST,B@HOST [--epmd-port P] [--ticktime S]
//! failover client NAME@HOST --peers A@HOST,B@HOST,C@HOST [--children N]
//!     [--rate CALLS_PER_S] [--seconds S] [--epmd-port P] [--ticktime S]
//! failover where NAME@HOST --peers A@HOST [--epmd-port P]
//! ```
//!
//! `where` prints the node that runs the singleton (for scripts). Every
//! node of a cluster must share one `--ticktime` (default 4 s here, so
//! that a stopped node is dropped within about 5 s).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use beamish::cluster::{DistSupervisor, DistSupervisorRef, Membership, Singleton};
use beamish::dist::gen_protocol::{self, Dest};
use beamish::dist::{self, Atom, NodeConfig, NodeDown, Term};
use beamish::otp::{self, ChildSpec, Codec, GenServer, Reply, ReplyTo, StartOptions};
use beamish::{Error, Reason, global};

const COOKIE: &str = "failover_demo";
const SINGLETON: &str = "failover_counter";
const WORKERS: &str = "failover_workers";

fn atom(name: &str) -> Term {
    Term::Atom(Atom::new(name).unwrap_or(Atom::UNDEFINED))
}

/// The singleton and every child: `where` gives its node, `incr` counts.
struct Service {
    count: i64,
}

impl GenServer for Service {
    type Call = Term;
    type Reply = Term;
    type Cast = Term;

    async fn handle_call(&mut self, request: Term, _: ReplyTo<Term>) -> Reply<Term> {
        Reply::reply(match request.as_atom().map(|a| a.as_str()) {
            Some("incr") => {
                self.count += 1;
                Term::Int(self.count)
            }
            _ => Term::Atom(dist::this_node()),
        })
    }

    async fn terminate(&mut self, reason: &Reason) {
        tracing::info!(%reason, "service: terminate");
    }

    fn codec() -> Option<Codec<Service>> {
        Some(Codec::wire())
    }
}

async fn start_service() -> Result<beamish::Pid, Error> {
    Ok(otp::start_with(
        Service { count: 0 },
        StartOptions::new().link().trap_exit(true),
    )
    .await?
    .pid())
}

struct Args {
    mode: String,
    name: String,
    peers: Vec<Atom>,
    epmd_port: Option<u16>,
    ticktime: u64,
    children: i64,
    rate: u64,
    seconds: u64,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("a mode is required: node, client or where")?;
    let name = it.next().ok_or("a node name is required")?;
    let mut a = Args {
        mode,
        name,
        peers: Vec::new(),
        epmd_port: None,
        ticktime: 4,
        children: 8,
        rate: 1000,
        seconds: 30,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("bad {flag} {value:?}"))
        };
        match flag.as_str() {
            "--peers" => {
                a.peers = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|p| Atom::new(p.trim()).map_err(|e| format!("bad peer {p:?}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--epmd-port" => {
                a.epmd_port = Some(u16::try_from(number()?).map_err(|e| e.to_string())?)
            }
            "--ticktime" => a.ticktime = number()?,
            "--children" => a.children = i64::try_from(number()?).map_err(|e| e.to_string())?,
            "--rate" => a.rate = number()?,
            "--seconds" => a.seconds = number()?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// Starts distribution, `global` and the membership of the peers.
async fn join(args: &Args) -> Result<(), Error> {
    let mut config =
        NodeConfig::new(args.name.clone(), COOKIE).net_ticktime(Duration::from_secs(args.ticktime));
    if let Some(port) = args.epmd_port {
        // A shared EPMD: an embedded one would die with its node.
        config = config.epmd_port(port).embedded_epmd(false);
    }
    dist::start(config).await?;
    global::start().await?;
    Membership::new()
        .nodes(args.peers.iter().copied())
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .sync_timeout(Duration::from_secs(1))
        .start()
        .await?;
    Ok(())
}

/// The time of day (UTC), `HH:MM:SS.mmm`, as the script prints it.
fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (s, ms) = (now.as_secs() % 86_400, now.subsec_millis());
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A cluster node: the singleton's manager and a member of the workers.
async fn node(args: Args) -> Result<(), Error> {
    join(&args).await?;
    beamish::pg::start()?;
    let spec = ChildSpec::worker(SINGLETON, start_service);
    Singleton::new(atom(SINGLETON), spec)
        .intensity(10, Duration::from_secs(10))
        .start()
        .await?;
    let workers = Atom::new(WORKERS).map_err(|e| Error::Config(e.to_string()))?;
    DistSupervisor::new(workers, |_, _| start_service())
        .intensity(10, Duration::from_secs(10))
        .start_link()
        .await?;
    say("ready");
    loop {
        let _ = beamish::receive::<()>().await;
    }
}

/// Prints the node that runs the singleton.
async fn where_(args: Args) -> Result<(), Error> {
    join(&args).await?;
    let t0 = Instant::now();
    loop {
        if let Some(pid) = global::whereis_name(&atom(SINGLETON)) {
            say(pid.node().as_str());
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(10) {
            return Err(Error::Timeout);
        }
        beamish::sleep(Duration::from_millis(20)).await;
    }
}

/// One service the client calls, and what it has seen.
struct Target {
    label: String,
    name: Term,
    calls: u64,
    failed: u64,
    /// The node that last answered.
    on: Option<Atom>,
    /// Since when calls fail, and how many.
    outage: Option<(Instant, u64)>,
    longest: Duration,
}

impl Target {
    fn new(label: String, name: Term) -> Target {
        Target {
            label,
            name,
            calls: 0,
            failed: 0,
            on: None,
            outage: None,
            longest: Duration::ZERO,
        }
    }

    /// Calls the service once (`timeout` at most).
    async fn call(&mut self, timeout: Duration) -> Result<Atom, Error> {
        self.calls += 1;
        let pid = global::whereis_name(&self.name).ok_or(Error::UnknownName("global".into()))?;
        match gen_protocol::call(&Dest::Pid(pid), atom("where"), Some(timeout)).await? {
            Term::Atom(n) => Ok(n),
            other => Err(Error::Config(format!("unexpected reply {other}"))),
        }
    }
}

/// Calls the singleton and every child at `rate` calls per second in all,
/// for `seconds`, printing each outage and a summary.
async fn client(args: Args) -> Result<(), Error> {
    join(&args).await?;
    dist::monitor_nodes(true);
    let workers = Atom::new(WORKERS).map_err(|e| Error::Config(e.to_string()))?;
    let via = *args
        .peers
        .first()
        .ok_or_else(|| Error::Config("--peers is empty".into()))?;
    let sup = DistSupervisorRef::new(workers).via(via);
    let mut targets = vec![Target::new("singleton".into(), atom(SINGLETON))];
    for i in 0..args.children {
        match sup.start_child(Term::Int(i), Term::Nil).await {
            Ok(_) | Err(beamish::otp::SupervisorError::AlreadyStarted(..)) => {}
            Err(e) => return Err(Error::Config(format!("cannot start child {i}: {e}"))),
        }
        targets.push(Target::new(
            format!("workers/{i}"),
            sup.child_name(&Term::Int(i)),
        ));
    }
    // Every service registered, as this node's global sees it, before the
    // first call.
    let since = Instant::now();
    while targets
        .iter()
        .any(|t| global::whereis_name(&t.name).is_none())
    {
        if since.elapsed() > Duration::from_secs(10) {
            return Err(Error::Config(
                "the services did not show up in global".into(),
            ));
        }
        beamish::sleep(Duration::from_millis(10)).await;
    }
    let mut downs: BTreeMap<Atom, Instant> = BTreeMap::new();
    let interval = Duration::from_secs(1) / u32::try_from(args.rate).unwrap_or(u32::MAX);
    let timeout = Duration::from_millis(100);
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut next = Instant::now();
    let mut k = 0usize;
    say(&format!(
        "client: calling the singleton and {} children at {} calls/s for {} s",
        args.children, args.rate, args.seconds
    ));
    while Instant::now() < end {
        while let Some(d) = beamish::receive::<NodeDown>().timeout(Duration::ZERO).await {
            if !args.peers.contains(&d.node) {
                continue;
            }
            say(&format!("[{}] nodedown {}", clock(), d.node));
            downs.insert(d.node, Instant::now());
        }
        let n = targets.len();
        let t = &mut targets[k % n];
        k += 1;
        match t.call(timeout).await {
            Ok(node) => {
                if let Some((since, failed)) = t.outage.take() {
                    let outage = since.elapsed();
                    t.longest = t.longest.max(outage);
                    // A nodedown of the outage's own node (a kill's comes at
                    // once, a stopped node's after the tick timeout).
                    let after_down =
                        since_nodedown(t.on, &downs, |at| at + Duration::from_millis(200) >= since);
                    say(&format!(
                        "[{}] {}: answered again on {node}{after_down}; {failed} calls failed in {:.1} ms (was on {})",
                        clock(),
                        t.label,
                        outage.as_secs_f64() * 1e3,
                        t.on.map_or("?", |n| n.as_str()),
                    ));
                } else if t.on.is_some_and(|o| o != node) {
                    // A move between two calls: a planned one, or a
                    // failover faster than the calls to this service.
                    let after_down =
                        since_nodedown(t.on, &downs, |at| at.elapsed() < Duration::from_secs(2));
                    say(&format!(
                        "[{}] {}: moved from {} to {node}{after_down}, no call failed",
                        clock(),
                        t.label,
                        t.on.map_or("?", |n| n.as_str()),
                    ));
                }
                t.on = Some(node);
            }
            Err(_) => {
                t.failed += 1;
                let (_, n) = t.outage.get_or_insert((Instant::now(), 0));
                *n += 1;
            }
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            beamish::sleep(next - now).await;
        } else if now - next > Duration::from_secs(1) {
            next = now;
        }
    }
    let calls: u64 = targets.iter().map(|t| t.calls).sum();
    let failed: u64 = targets.iter().map(|t| t.failed).sum();
    for t in &targets {
        say(&format!(
            "summary {}: {} calls, {} failed, longest outage {:.1} ms, now on {}",
            t.label,
            t.calls,
            t.failed,
            t.longest.as_secs_f64() * 1e3,
            t.on.map_or("?", |n| n.as_str())
        ));
    }
    say(&format!("summary: {calls} calls, {failed} failed"));
    Ok(())
}

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .try_init();
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "failover: {e}\nusage: failover node|client|where NAME@HOST --peers A@HOST,... \
                 [--epmd-port P] [--ticktime S] [--children N] [--rate R] [--seconds S]"
            );
            std::process::exit(2);
        }
    };
    let rt = match beamish::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("failover: {e}");
            std::process::exit(1);
        }
    };
    let out = rt.block_on(async move {
        match args.mode.as_str() {
            "node" => node(args).await,
            "client" => client(args).await,
            "where" => where_(args).await,
            other => Err(Error::Config(format!("unknown mode {other:?}"))),
        }
    });
    match out {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("failover: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("failover: {e}");
            std::process::exit(1);
        }
    }
}

/// `", N ms after the nodedown"` for the nodedown of `old`, if `recent`
/// says it belongs to this outage or move; else nothing.
fn since_nodedown(
    old: Option<Atom>,
    downs: &BTreeMap<Atom, Instant>,
    recent: impl Fn(Instant) -> bool,
) -> String {
    old.and_then(|o| downs.get(&o))
        .filter(|at| recent(**at))
        .map_or(String::new(), |at| {
            format!(
                ", {:.1} ms after the nodedown",
                at.elapsed().as_secs_f64() * 1e3
            )
        })
}
