//! The echo process of the interop contract (see `main.rs`): one request
//! at a time, and every process it spawns follows the same protocol.

use std::io::Write;
use std::sync::Arc;

use beamish::dist::{self, Atom, NodeConfig, NodeDown, Term};
use beamish::{Down, Exit, Pid, Reason, Ref};
use rustc_hash::FxHashMap;
/// Logs go to stderr (stdout carries only the `ready` line), at `info`
/// unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

/// Starts the node, registers `echo`, runs `setup`, prints `ready` on
/// stdout (flushed), and runs until the OS process is killed.
pub async fn serve<F>(config: NodeConfig, setup: F) -> Result<(), beamish::Error>
where
    F: Future<Output = Result<(), beamish::Error>>,
{
    let info = dist::start(config).await?;
    beamish::register("echo", beamish::spawn(echo()))?;
    setup.await?;
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

fn atom(name: &str) -> Term {
    Term::Atom(Atom::new(name).unwrap_or(Atom::UNDEFINED))
}

fn pair(a: Term, b: Term) -> Term {
    Term::Tuple(vec![a, b])
}

/// What one echo process remembers between messages.
#[derive(Default)]
struct Echo {
    /// Where to report exit signals, once trapping.
    trap_reports: Option<Pid>,
    /// Who asked for each monitor.
    monitors: FxHashMap<Ref, Pid>,
    /// Who asked to watch each node.
    node_watchers: FxHashMap<Atom, Vec<Pid>>,
}

/// The echo protocol, one message at a time.
pub async fn echo() {
    let mut state = Echo::default();
    loop {
        let msg = beamish::receive_match(|m| {
            m.is::<Term>() || m.is::<Exit>() || m.is::<Down>() || m.is::<NodeDown>()
        })
        .await;
        let msg = match msg.downcast::<Term>() {
            Ok(term) => {
                if let Some(reason) = state.request(term) {
                    beamish::exit::<()>(reason).await;
                }
                continue;
            }
            Err(m) => m,
        };
        let msg = match msg.downcast::<Exit>() {
            Ok(Exit { from, reason }) => {
                if let Some(to) = state.trap_reports {
                    to.send(Term::Tuple(vec![
                        atom("exit_seen"),
                        Term::Pid(from),
                        reason.to_term(),
                    ]));
                }
                continue;
            }
            Err(m) => m,
        };
        let msg = match msg.downcast::<Down>() {
            Ok(down) => {
                if let Some(to) = state.monitors.remove(&down.monitor) {
                    to.send(Term::Tuple(vec![
                        atom("down_seen"),
                        Term::Pid(down.pid),
                        down.reason.to_term(),
                    ]));
                }
                continue;
            }
            Err(m) => m,
        };
        if let Ok(NodeDown { node }) = msg.downcast::<NodeDown>() {
            for to in state.node_watchers.remove(&node).unwrap_or_default() {
                to.send(pair(atom("nodedown_seen"), Term::Atom(node)));
            }
        }
    }
}

impl Echo {
    /// Handles one request; `Some(reason)` when the process must exit.
    fn request(&mut self, term: Term) -> Option<Reason> {
        let Term::Tuple(items) = &term else {
            return None;
        };
        let (from, tag, rest) = match &items[..] {
            [Term::Pid(from), tag, rest @ ..] if !rest.is_empty() => (*from, tag.clone(), rest),
            _ => return None,
        };
        let reply = |body: Term| from.send(pair(tag.clone(), body));
        let word = |t: &Term| match t {
            Term::Atom(a) => a.as_str(),
            _ => "",
        };
        match (rest.len(), word(&rest[0])) {
            (1, "spawn") => {
                let pid = beamish::spawn(echo());
                reply(Term::Pid(pid));
            }
            (1, "crash") => {
                return Some(Reason::Term(Arc::new(pair(atom("crashed"), tag))));
            }
            (1, "link_me") => {
                let _ = beamish::link(from);
                reply(atom("linked"));
            }
            (1, "trap") => {
                beamish::trap_exit(true);
                self.trap_reports = Some(from);
                reply(atom("trapping"));
            }
            (2, "monitor") => match &rest[1] {
                Term::Pid(pid) => {
                    let mref = beamish::monitor(*pid);
                    self.monitors.insert(mref, from);
                    reply(atom("monitoring"));
                }
                other => reply(other.clone()),
            },
            (2, "monitor_node") => match &rest[1] {
                Term::Atom(node) => {
                    self.node_watchers.entry(*node).or_default().push(from);
                    dist::monitor_node(*node, true);
                    reply(atom("monitoring_node"));
                }
                _ => reply(Term::Tuple(rest.to_vec())),
            },
            (3, "send") => {
                send_to(&rest[1], rest[2].clone());
                reply(atom("sent"));
            }
            (1, _) => reply(rest[0].clone()),
            _ => {}
        }
        None
    }
}

/// `Dest ! Term` for a pid, a local name, or `{Name, Node}`.
fn send_to(dest: &Term, msg: Term) {
    match dest {
        Term::Pid(pid) => pid.send(msg),
        Term::Atom(name) => dist::send_named(*name, dist::this_node(), msg),
        Term::Tuple(t) => {
            if let [Term::Atom(name), Term::Atom(node)] = &t[..] {
                dist::send_named(*name, *node, msg);
            }
        }
        _ => {}
    }
}
