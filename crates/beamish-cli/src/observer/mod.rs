//! `beamish observer`: looks inside a running node, beamish or Erlang,
//! over the distribution protocol.
//!
//! A beamish node answers `beamish_observer:sample/1` (see
//! `beamish::observe::serve`); an Erlang node has no such module, so the
//! observer evaluates `erl_probe.erl.txt` there through `erl_scan`,
//! `erl_parse` and `erl_eval` (as `observer_cli` loads its own code into the
//! node it watches), which answers with the same shape. Everything below
//! the fetch is the same for both kinds of node.
//!
//! `--once` takes two samples `--interval` apart and prints the system
//! summary and the top processes as plain text, as `etop -output text`
//! does.

mod sample;
mod tui;

use std::process::ExitCode;
use std::time::Duration;

use beamish::dist::{Atom, NodeConfig, Term};
use beamish::rpc::{self, RpcError};
use clap::Args;

pub use sample::{Kind, Snapshot};

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

/// How long one fetch may take (an Erlang node with millions of processes
/// needs seconds for `process_info` of each).
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The Erlang side of a fetch from an Erlang node.
const ERL_PROBE: &str = include_str!("erl_probe.erl.txt");

/// Fetches one snapshot of `node`, whatever its kind: tries the beamish
/// endpoint, and on `undef` the Erlang probe.
pub async fn fetch(node: Atom, top: usize, kind: Option<Kind>) -> Result<Snapshot, String> {
    if kind != Some(Kind::Erl) {
        let got = rpc::call_timeout(
            node,
            "beamish_observer",
            "sample",
            vec![Term::Int(top as i64)],
            FETCH_TIMEOUT,
        )
        .await;
        match got {
            Ok(t) => return Snapshot::decode(Kind::Beamish, &t),
            Err(RpcError::Exception { reason, .. }) if reason.is_atom(atom("undef")) => {}
            Err(e) => return Err(unreachable_node(node, &e)),
        }
    }
    let source = ERL_PROBE.replace("?TOP", &top.to_string());
    let term = eval(node, &source).await?;
    Snapshot::decode(Kind::Erl, &term)
}

pub(crate) fn atom(name: &str) -> Atom {
    Atom::new(name).expect("a short atom")
}

pub(crate) fn unreachable_node(node: Atom, e: &RpcError) -> String {
    match e {
        RpcError::NoConnection => {
            format!("cannot reach {node}: not running, a wrong cookie, or no route (see its log)")
        }
        other => format!("{node}: {other}"),
    }
}

/// Evaluates Erlang expressions on `node` and returns their value.
pub(crate) async fn eval(node: Atom, source: &str) -> Result<Term, String> {
    let call = |m: &'static str, f: &'static str, args: Vec<Term>| async move {
        rpc::call_timeout(node, m, f, args, FETCH_TIMEOUT)
            .await
            .map_err(|e| unreachable_node(node, &e))
    };
    let chars = Term::list(source.chars().map(|c| Term::Int(c as i64)).collect());
    let scanned = call("erl_scan", "string", vec![chars]).await?;
    let tokens = match scanned.as_tuple() {
        Some([ok, tokens, _]) if ok.is_atom(atom("ok")) => tokens.clone(),
        _ => return Err(format!("the probe does not scan on {node}: {scanned}")),
    };
    let parsed = call("erl_parse", "parse_exprs", vec![tokens]).await?;
    let exprs = match parsed.as_tuple() {
        Some([ok, exprs]) if ok.is_atom(atom("ok")) => exprs.clone(),
        _ => return Err(format!("the probe does not parse on {node}: {parsed}")),
    };
    let value = call("erl_eval", "exprs", vec![exprs, Term::Nil]).await?;
    match value.as_tuple() {
        Some([v, result, _]) if v.is_atom(atom("value")) => Ok(result.clone()),
        _ => Err(format!("the probe failed on {node}: {value}")),
    }
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
        return match tui::run(&rt, node, interval) {
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
        let first = fetch(node, top, None).await?;
        beamish::sleep(interval).await;
        let second = fetch(node, top, Some(first.kind)).await?;
        Ok::<String, String>(sample::render_text(&node.to_string(), &first, &second))
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
