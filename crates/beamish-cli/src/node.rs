//! `beamish node`: runs a distributed node that Erlang and beamish nodes can
//! connect to, with the `echo` service of the interop contract registered.

use std::process::ExitCode;
use std::time::Duration;

use beamish::cluster::Membership;
use beamish::dist::{Atom, NodeConfig};
use clap::Args;

#[path = "../../beamish/examples/interop_node/echo.rs"]
mod echo;

/// Options of `beamish node`.
#[derive(Args, Debug)]
pub struct NodeOpts {
    /// The node's name, `name@host` (a long name, such as `app@127.0.0.1`).
    #[arg(long)]
    name: String,
    /// The cookie peers must know.
    #[arg(long)]
    cookie: String,
    /// Erlang's net_ticktime in seconds: a silent peer is dropped after it.
    #[arg(long, default_value_t = 60)]
    ticktime: u64,
    /// The EPMD port (default: ERL_EPMD_PORT, else 4369).
    #[arg(long)]
    epmd_port: Option<u16>,
    /// Scheduler threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Exit when stdin reaches its end: a parent that holds a pipe to it
    /// open takes the node down with it however the parent ends.
    #[arg(long)]
    exit_on_eof: bool,
    /// Also serve the `gen_call` and `erpc` workloads of `beamish bench`:
    /// the `bench_kv` GenServer and the Rust function `beamish_bench:echo/1`.
    #[arg(long)]
    bench_services: bool,
    /// Nodes to keep connected (comma-separated `name@host`): tried at
    /// start and again with back-off while they are down.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Serve `beamish observer` read-only: it may look, not kill.
    #[arg(long)]
    observer_read_only: bool,
    /// Serve the web dashboard on this address (e.g. `127.0.0.1:8080`;
    /// port 0 picks one); prints `dashboard http://ADDR/`.
    #[arg(long, value_name = "ADDR")]
    web: Option<std::net::SocketAddr>,
}

/// Runs the node until the process is killed.
pub fn main(opts: NodeOpts) -> ExitCode {
    echo::init_logging();
    if opts.exit_on_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let mut builder = beamish::Runtime::builder();
    if let Some(n) = opts.threads {
        builder = builder.worker_threads(n);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("beamish node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _dashboard = match opts.web {
        Some(addr) => {
            match beamish::observe::web::serve(&rt.handle(), addr, Duration::from_secs(1)) {
                Ok(d) => {
                    println!("dashboard http://{}/", d.local_addr());
                    Some(d)
                }
                Err(e) => {
                    eprintln!("beamish node: cannot serve the dashboard on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let result = rt.block_on(async move {
        let mut config = NodeConfig::new(opts.name, opts.cookie)
            .net_ticktime(Duration::from_secs(opts.ticktime.max(1)));
        if let Some(port) = opts.epmd_port {
            config = config.epmd_port(port);
        }
        let bench = opts.bench_services;
        let peers = opts.peers;
        let read_only = opts.observer_read_only;
        echo::serve(config, async move {
            beamish::observe::serve::serve(read_only)?;
            if !peers.is_empty() {
                let mut members = Membership::new().sync_timeout(Duration::from_secs(1));
                for p in &peers {
                    let node = Atom::new(p.trim())
                        .map_err(|e| beamish::Error::Config(format!("bad peer {p:?}: {e}")))?;
                    members = members.node(node);
                }
                members.start().await?;
            }
            match bench {
                true => crate::bench_services::start().await,
                false => Ok(()),
            }
        })
        .await
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("beamish node: {e}");
            ExitCode::FAILURE
        }
        Err(reason) => {
            eprintln!("beamish node: the node's root process ended: {reason}");
            ExitCode::FAILURE
        }
    }
}
