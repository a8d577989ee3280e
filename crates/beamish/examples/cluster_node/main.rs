//! A beamish node of the cluster contract: the `echo` process of the interop
//! contract, a supervised `kv` server that Erlang calls with `gen_server`
//! (registered locally, with `global` and in a `pg` group), Rust
//! functions that Erlang calls with `erpc` and `rpc` (`beamish_demo`), and
//! `counter`, a singleton registered globally as `beamish_counter` that
//! another node takes over when its node dies. `--peers` are the members
//! that [`Membership`] keeps connected (back-off with jitter).
//!
//! ```text
//! cargo run --release --example cluster_node -- --name a@127.0.0.1 --cookie secret \
//!     [--peers b@127.0.0.1,c@127.0.0.1] [--ticktime 60]
//! ```
//!
//! From `erl`:
//!
//! ```text
//! 1> gen_server:call({kv, 'a@127.0.0.1'}, {put, x, 1}).
//! ok
//! 2> erpc:call('a@127.0.0.1', beamish_demo, add, [1, 2]).
//! 3
//! ```

use std::io::Write;
use std::time::Duration;

use beamish::cluster::Membership;
use beamish::dist::{self, Atom, NodeConfig};

mod counter;
// Shared with the interop node; its `serve` is not used here.
mod demo;
#[allow(dead_code)]
#[path = "../interop_node/echo.rs"]
mod echo;
mod kv;

struct Args {
    name: String,
    cookie: String,
    peers: Vec<String>,
    ticktime: Option<u64>,
}

fn args() -> Result<Args, String> {
    let mut name = None;
    let mut cookie = None;
    let mut peers = Vec::new();
    let mut ticktime = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--name" => name = it.next(),
            "--cookie" => cookie = it.next(),
            "--peers" => {
                let list = it.next().ok_or("--peers needs a list")?;
                peers = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
            }
            "--ticktime" => {
                let t = it.next().ok_or("--ticktime needs a number of seconds")?;
                let secs = t
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad --ticktime {t:?}"))?;
                ticktime = Some(secs);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        name: name.ok_or("--name NAME@HOST is required")?,
        cookie: cookie.ok_or("--cookie COOKIE is required")?,
        peers,
        ticktime,
    })
}

async fn serve(args: Args) -> Result<(), beamish::Error> {
    let mut config = NodeConfig::new(args.name, args.cookie);
    if let Some(t) = args.ticktime {
        config = config.net_ticktime(Duration::from_secs(t));
    }
    let info = dist::start(config).await?;
    beamish::global::start().await?;
    beamish::pg::start()?;
    demo::register()?;
    let node_name = info
        .name
        .as_str()
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    kv::start(&node_name).await?;
    beamish::register("echo", beamish::spawn(echo::echo()))?;
    let mut members = Membership::new();
    for peer in &args.peers {
        match Atom::new(peer) {
            Ok(peer) => members = members.node(peer),
            Err(e) => tracing::warn!(peer = %peer, error = %e, "bad peer name"),
        }
    }
    // Peers that are up are connected (and global has a moment to sync)
    // before the singleton looks for an instance.
    members.sync_timeout(Duration::from_secs(1)).start().await?;
    counter::start().await?;
    tracing::info!(node = %info.name, creation = info.creation, port = info.port, "ready");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
    }
    loop {
        let _ = beamish::receive::<()>().await;
    }
}

fn main() {
    echo::init_logging();
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "cluster_node: {e}\nusage: cluster_node --name NAME@HOST --cookie COOKIE \
                 [--peers A@HOST,B@HOST] [--ticktime SECONDS]"
            );
            std::process::exit(2);
        }
    };
    let rt = match beamish::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cluster_node: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(serve(args)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("cluster_node: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cluster_node: {e}");
            std::process::exit(1);
        }
    }
}
