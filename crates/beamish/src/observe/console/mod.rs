//! The observer's console: a terminal UI (ratatui) and a text summary of a
//! node, for a beamish node or an Erlang node, remote or this one.
//!
//! [`Target`] says what is observed:
//! - [`Target::Local`]: the runtime this program runs, through the
//!   endpoint of [`super::serve`] called in-process (no distribution
//!   needed): a program opens its own observer with [`run`].
//! - [`Target::Node`]: another node over the distribution protocol. A
//!   beamish node answers `beamish_observer:sample/1` ([`super::serve`]);
//!   an Erlang node has no such module, so the console evaluates
//!   `erl_probe.erl.txt` there through `erl_scan`, `erl_parse` and
//!   `erl_eval` (as `observer_cli` loads its own code into the node it
//!   watches), which answers with the same shape.
//!
//! Everything after the fetch is the same for every kind of node: a
//! [`Snapshot`] decoded from the answer. [`summary`] takes two snapshots
//! some time apart and prints the system summary and the top processes as
//! plain text, as `etop -output text` does (`beamish observer --once`).
//!
//! ```no_run
//! # fn main() -> Result<(), beamish::Error> {
//! use std::time::Duration;
//! use beamish::observe::console::{self, Target};
//!
//! let rt = beamish::Runtime::new()?;
//! // ... spawn the program's processes on `rt` ...
//! // Takes over the terminal until `q`.
//! console::run(&rt.handle(), Target::Local, Duration::from_secs(1))?;
//! # Ok(()) }
//! ```

mod sample;
mod tui;

use std::time::Duration;

use super::serve;
use crate::Error;
use crate::dist::rpc::{self, Exception, RpcError};
use crate::dist::{Atom, Term};

pub use sample::{Kind, Row, Sched, Snapshot};
pub use tui::run;

/// What the console observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The runtime of the calling program, read in-process.
    Local,
    /// A node reached over distribution (this program's node must be
    /// started), beamish or Erlang.
    Node(Atom),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // `nonode@nohost` before distribution is started, as OTP.
            Target::Local => write!(f, "{}", crate::dist::this_node()),
            Target::Node(n) => write!(f, "{n}"),
        }
    }
}

/// How long one fetch may take (an Erlang node with millions of processes
/// needs seconds for `process_info` of each).
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// The Erlang side of a fetch from an Erlang node.
const ERL_PROBE: &str = include_str!("erl_probe.erl.txt");

/// Calls `module:function(args)` on the target: over erpc for a node, in
/// this process for [`Target::Local`] (which has only the endpoint's
/// functions: anything else is `undef`).
pub(crate) async fn call(
    target: Target,
    module: &str,
    function: &str,
    args: Vec<Term>,
) -> Result<Term, RpcError> {
    match target {
        Target::Node(node) => rpc::call_timeout(node, module, function, args, FETCH_TIMEOUT).await,
        Target::Local if module == "beamish_observer" => {
            serve::call(function, args).await.map_err(|e| match e {
                Exception::Error(reason) => RpcError::Exception {
                    reason,
                    stack: Term::Nil,
                },
                Exception::Throw(v) => RpcError::Throw(v),
                Exception::Exit(r) => RpcError::Exit(r),
            })
        }
        Target::Local => Err(RpcError::Exception {
            reason: Term::Atom(atom("undef")),
            stack: Term::Nil,
        }),
    }
}

/// Fetches one snapshot of `target`, whatever its kind: tries the beamish
/// endpoint, and on `undef` (a node that is not beamish) the Erlang
/// probe. `kind` skips the first try once the kind is known.
///
/// # Errors
/// [`Error::Observe`] when the node cannot be reached or answers with
/// something that is not a sample.
pub async fn fetch(target: Target, top: usize, kind: Option<Kind>) -> Result<Snapshot, Error> {
    fetch_text(target, top, kind).await.map_err(observe_error)
}

/// [`fetch`] with the error as the text the UI shows.
pub(crate) async fn fetch_text(
    target: Target,
    top: usize,
    kind: Option<Kind>,
) -> Result<Snapshot, String> {
    if kind != Some(Kind::Erl) {
        if target == Target::Local {
            serve::install(false).map_err(|e| e.to_string())?;
        }
        let got = call(
            target,
            "beamish_observer",
            "sample",
            vec![Term::Int(top as i64)],
        )
        .await;
        match got {
            Ok(t) => return Snapshot::decode(Kind::Beamish, &t),
            Err(RpcError::Exception { reason, .. })
                if reason.is_atom(atom("undef")) && target != Target::Local => {}
            Err(e) => return Err(unreachable(target, &e)),
        }
    }
    let Target::Node(node) = target else {
        return Err("this node has no observer endpoint".into());
    };
    let source = ERL_PROBE.replace("?TOP", &top.to_string());
    let term = eval(node, &source).await?;
    Snapshot::decode(Kind::Erl, &term)
}

/// Two samples `interval` apart, as the text of `beamish observer
/// --once`: the system summary, then the top `top` processes by
/// reductions in the window, by mailbox and by memory. The ranking by
/// reductions covers the node's last closed window (1 s by default on a
/// beamish node): on a node that nobody observed before, the first sample
/// opens it, so an `interval` shorter than the window ranks nothing.
///
/// # Errors
/// As [`fetch`].
pub async fn summary(target: Target, top: usize, interval: Duration) -> Result<String, Error> {
    let first = fetch(target, top, None).await?;
    crate::sleep(interval).await;
    let second = fetch(target, top, Some(first.kind)).await?;
    Ok(sample::render_text(&target.to_string(), &first, &second))
}

fn observe_error(e: String) -> Error {
    Error::Observe(e.into())
}

pub(crate) fn atom(name: &str) -> Atom {
    Atom::new(name).expect("a short atom")
}

/// The text of a failed call, for the status line.
pub(crate) fn unreachable(target: Target, e: &RpcError) -> String {
    match e {
        RpcError::NoConnection => {
            format!("cannot reach {target}: not running, a wrong cookie, or no route (see its log)")
        }
        other => format!("{target}: {other}"),
    }
}

/// Evaluates Erlang expressions on `node` and returns their value.
pub(crate) async fn eval(node: Atom, source: &str) -> Result<Term, String> {
    let target = Target::Node(node);
    let call = |m: &'static str, f: &'static str, args: Vec<Term>| async move {
        call(target, m, f, args)
            .await
            .map_err(|e| unreachable(target, &e))
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
