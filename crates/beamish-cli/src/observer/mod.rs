//! `beamish observer`: looks inside a running node, beamish or Erlang,
//! over the distribution protocol: the terminal UI, or with `--once` two
//! samples `--interval` apart printed as plain text, as `etop -output
//! text` does. Both are `beamish::observe::console`; this is their command
//! line.

use std::process::ExitCode;
use std::time::Duration;

use beamish::dist::{Atom, NodeConfig};
use beamish::observe::console::{self, Target};
use clap::Args;

/// Options of `beamish observer`.
#[derive(Args, Debug)]
pub struct ObserverOpts {
    /// The node to observe (`name@host`).
    #[arg(long)]
    node: String,
    /// Its cookie.
    #[arg(long)]
    cookie: String,
    /// Print the system summary and the top processes once, as text, and
    /// exit (without it: the terminal UI).
    #[arg(long)]
    once: bool,
    /// Time between the two samples of `--once` (ms).
    #[arg(long, default_value_t = 1000)]
    interval: u64,
    /// Processes listed per ranking.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// This observer's own node name (default `observer<pid>@127.0.0.1`).
    #[arg(long)]
    name: Option<String>,
    /// The EPMD port (default: ERL_EPMD_PORT, else 4369).
    #[arg(long)]
    epmd_port: Option<u16>,
}

/// Runs `beamish observer`.
pub fn main(opts: ObserverOpts) -> ExitCode {
    let node = match Atom::new(&opts.node) {
        Ok(a) if opts.node.contains('@') => a,
        _ => {
            eprintln!(
                "beamish observer: --node must be name@host, not {:?}",
                opts.node
            );
            return ExitCode::from(2);
        }
    };
    let rt = match beamish::Runtime::builder().worker_threads(1).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("beamish observer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("observer{}@127.0.0.1", std::process::id()));
    let mut config = NodeConfig::new(name, opts.cookie.clone());
    if let Some(port) = opts.epmd_port {
        config = config.epmd_port(port);
    }
    let (top, interval) = (opts.top, Duration::from_millis(opts.interval));
    if !opts.once {
        let started = rt.block_on(async move {
            beamish::dist::start(config)
                .await
                .map_err(|e| format!("cannot start this observer's node: {e}"))
        });
        if let Err(e) = started
            .map_err(|r| r.to_string())
            .and_then(|r| r.map(|_| ()))
        {
            eprintln!("beamish observer: {e}");
            return ExitCode::FAILURE;
        }
        return match console::run(&rt.handle(), Target::Node(node), interval) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("beamish observer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = rt.block_on(async move {
        beamish::dist::start(config)
            .await
            .map_err(|e| format!("cannot start this observer's node: {e}"))?;
        console::summary(Target::Node(node), top, interval)
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(Ok(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("beamish observer: {e}");
            ExitCode::FAILURE
        }
        Err(reason) => {
            eprintln!("beamish observer: {reason}");
            ExitCode::FAILURE
        }
    }
}
