//! The observer endpoint of a node: `beamish_observer:*` functions that an
//! observer on another node calls with `erpc` (the `beamish observer`
//! command, or `erpc:call` from an Erlang shell).
//!
//! | call | answer |
//! |---|---|
//! | `sample(N)` | a map: counters since the runtime started (the caller takes differences between its own samples, as with `scheduler_wall_time`, so any number of observers can poll), memory by kind, and the top `N` processes by reductions in the last window, by mailbox and by memory |
//! | `process_info(Pid)` | a property list (or `undefined`): status, mailbox length, reductions, memory, links, monitors, name, the types of the first messages in the mailbox |
//! | `applications()` | `[{App, Tree}]`: every application's supervision tree |
//! | `kill(Pid)` | `ok` after `exit(Pid, kill)`; refused on a read-only endpoint |
//! | `trace(Pid)` | `ok`: a trace session on the process (sends, receives, spawns, exits, links, GenServer calls), at most 100 events a second, the last 200 kept on the node; refused on a read-only endpoint |
//! | `trace_events(Pid)` | the kept events as binaries, oldest first (`[]` when not traced) |
//! | `trace_stop(Pid)` | `ok`; the session ends |
//!
//! Process rows are tuples `{Pid, Name | undefined, Reductions,
//! RecentReductions, QueueLength, Memory, Status}`.
//!
//! Cost on the observed node: one pass over the process table per `sample`
//! (see [`super`]; it yields between slices), and N is capped at
//! [`MAX_TOP`] so that a caller cannot ask for a million rows.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use super::{Observer, ProcessSummary, Sample, SupervisorNode};
use crate::dist::Term;
use crate::dist::rpc::{self, Exception};
use crate::trace::{Flags, OnExceed, Target, Trace, TraceEvent, TraceSession};
use crate::{Error, Pid, Reason, Status};

/// The most rows a `sample` returns per ranking.
pub const MAX_TOP: usize = 1_000;

/// Messages of a mailbox whose types `process_info` lists.
const MAILBOX_HEAD: usize = 10;

struct Endpoint {
    /// Keeps per-poll accounting on while the endpoint serves (each
    /// sample uses a fresh observer of its own).
    _observing: Observer,
    read_only: bool,
    /// Trace sessions started by observers, and what they kept.
    traces: Mutex<FxHashMap<Pid, (TraceSession, Kept)>>,
}

/// The formatted events kept for one traced process.
type Kept = Arc<Mutex<VecDeque<String>>>;

/// Trace events kept per traced process.
const TRACE_KEPT: usize = 200;

static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();

/// The functions of the endpoint, as registered under `beamish_observer`.
pub const FUNCTIONS: [&str; 7] = [
    "sample",
    "process_info",
    "applications",
    "kill",
    "trace",
    "trace_events",
    "trace_stop",
];

/// Serves the `beamish_observer` functions on the running node (see the
/// module docs). `read_only` refuses `kill` and `trace`. Calling it again
/// keeps the first endpoint's mode.
///
/// # Errors
/// Outside a beamish process, or before the node is started.
pub fn serve(read_only: bool) -> Result<(), Error> {
    install(read_only)?;
    for f in FUNCTIONS {
        rpc::register("beamish_observer", f, move |args: Vec<Term>| call(f, args))?;
    }
    Ok(())
}

/// Sets up the endpoint without serving it over distribution: what an
/// observer in the same OS process uses, through [`call`]. Calling it
/// again (or [`serve`]) keeps the first endpoint's mode.
///
/// # Errors
/// Outside a beamish process.
pub fn install(read_only: bool) -> Result<(), Error> {
    if ENDPOINT.get().is_some() {
        return Ok(());
    }
    let observer = Observer::current()?;
    ENDPOINT.get_or_init(|| Endpoint {
        _observing: observer,
        read_only,
        traces: Mutex::new(FxHashMap::default()),
    });
    Ok(())
}

/// Runs `beamish_observer:function(args)` in this process, exactly as a
/// remote call runs it (`undef` for a function the endpoint does not
/// have, `badarg` before [`install`] or [`serve`]).
pub async fn call(function: &str, args: Vec<Term>) -> rpc::RpcResult {
    match function {
        "sample" => {
            let n = match args.as_slice() {
                [Term::Int(n)] if *n >= 0 => (*n as usize).min(MAX_TOP),
                _ => return Err(Exception::badarg()),
            };
            endpoint()?;
            // A fresh observer has no previous sample: its counts are
            // since the runtime started, for the caller to take
            // differences. The pass yields between slices, so it never
            // holds a scheduler thread for the whole table.
            let sample = Observer::current()
                .map_err(|_| Exception::badarg())?
                .sample_async(n)
                .await;
            Ok(sample_term(&sample))
        }
        "process_info" => {
            endpoint()?;
            Ok(process_info_term(one_pid(&args)?).await)
        }
        "applications" => {
            endpoint()?;
            if !args.is_empty() {
                return Err(Exception::badarg());
            }
            let trees = super::application_trees().await;
            Ok(Term::list(
                trees
                    .into_iter()
                    .map(|(name, tree)| {
                        let tree = match tree {
                            Ok(t) => tree_term(&t),
                            Err(e) => Term::tuple(vec![
                                atom("error"),
                                Term::binary(e.to_string().as_bytes()),
                            ]),
                        };
                        Term::tuple(vec![Term::binary(name.as_bytes()), tree])
                    })
                    .collect(),
            ))
        }
        "kill" => {
            let pid = one_pid(&args)?;
            writable()?;
            pid.exit(Reason::Kill);
            Ok(atom("ok"))
        }
        "trace" => {
            let pid = one_pid(&args)?;
            start_trace(writable()?, pid)
                .map_err(|e| Exception::Error(Term::binary(e.to_string().as_bytes())))?;
            Ok(atom("ok"))
        }
        "trace_events" => {
            let pid = one_pid(&args)?;
            let kept = endpoint()?
                .traces
                .lock()
                .get(&pid)
                .map(|(_, kept)| kept.clone());
            let events = kept.map(|k| {
                k.lock()
                    .iter()
                    .map(|e| Term::binary(e.as_bytes()))
                    .collect()
            });
            Ok(Term::list(events.unwrap_or_default()))
        }
        "trace_stop" => {
            let pid = one_pid(&args)?;
            endpoint()?.traces.lock().remove(&pid);
            Ok(atom("ok"))
        }
        _ => Err(Exception::Error(atom("undef"))),
    }
}

/// The endpoint (set before any function is registered).
fn endpoint() -> Result<&'static Endpoint, Exception> {
    ENDPOINT.get().ok_or_else(Exception::badarg)
}

/// The endpoint, unless it is read-only.
fn writable() -> Result<&'static Endpoint, Exception> {
    let e = endpoint()?;
    if e.read_only {
        return Err(Exception::Error(atom("read_only")));
    }
    Ok(e)
}

/// The one pid argument of a call.
fn one_pid(args: &[Term]) -> Result<Pid, Exception> {
    match args {
        [Term::Pid(pid)] => Ok(*pid),
        _ => Err(Exception::badarg()),
    }
}

/// Starts a session on `pid` whose events a keeper process formats into
/// the endpoint's ring for that process.
fn start_trace(endpoint: &Endpoint, pid: Pid) -> Result<(), Error> {
    if endpoint.traces.lock().contains_key(&pid) {
        return Ok(());
    }
    let kept = Arc::new(Mutex::new(VecDeque::with_capacity(TRACE_KEPT)));
    let ring = kept.clone();
    let keeper = crate::spawn(async move {
        loop {
            let event: TraceEvent = crate::receive().await;
            let ended = matches!(event.kind, crate::trace::TraceKind::End { .. });
            let line = format!(
                "{:>10.3} ms {} {:?}",
                event.at.as_secs_f64() * 1e3,
                event.pid,
                event.kind
            );
            let mut ring = ring.lock();
            if ring.len() == TRACE_KEPT {
                ring.pop_front();
            }
            ring.push_back(line);
            drop(ring);
            if ended {
                return;
            }
        }
    });
    let session = Trace::new(Flags::SEND | Flags::RECEIVE | Flags::PROCS | Flags::CALLS)
        .rate(100, Duration::from_secs(1), OnExceed::Drop)
        .max_queue(1_000)
        .start(Target::Pid(pid), keeper);
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            keeper.exit(Reason::Kill);
            return Err(e);
        }
    };
    endpoint.traces.lock().insert(pid, (session, kept));
    Ok(())
}

fn atom(name: &str) -> Term {
    Term::atom(name).unwrap_or(Term::Nil)
}

fn int(n: impl TryInto<i64>) -> Term {
    Term::Int(n.try_into().unwrap_or(i64::MAX))
}

fn kv(key: &str, value: Term) -> (Term, Term) {
    (atom(key), value)
}

fn status_atom(s: Status) -> Term {
    atom(s.as_str())
}

fn name_term(name: Option<&str>) -> Term {
    match name {
        Some(n) => Term::binary(n.as_bytes()),
        None => atom("undefined"),
    }
}

fn row(p: &ProcessSummary) -> Term {
    Term::tuple(vec![
        Term::Pid(p.pid),
        name_term(p.name.as_deref()),
        int(p.reductions),
        int(p.recent_reductions),
        int(p.message_queue_len),
        int(p.memory),
        status_atom(p.status),
    ])
}

fn sample_term(s: &Sample) -> Term {
    let sys = &s.system;
    let schedulers = sys
        .schedulers
        .iter()
        .map(|l| {
            Term::tuple(vec![
                int(l.id + 1),
                int(l.busy.as_nanos()),
                int(l.total.as_nanos()),
                int(l.run_queue),
            ])
        })
        .collect();
    let m = &s.memory;
    let memory = vec![
        kv("processes", int(m.processes)),
        kv("mailboxes", int(m.mailboxes)),
        kv("timers", int(m.timers)),
        kv("dist_buffers", int(m.dist_buffers)),
        kv("rss", int(m.os_rss.unwrap_or(0))),
    ];
    let rows = |v: &[ProcessSummary]| Term::list(v.iter().map(row).collect());
    Term::map(vec![
        kv("uptime_ms", int(sys.uptime.as_millis())),
        kv("schedulers", Term::list(schedulers)),
        kv("global_run_queue", int(sys.global_run_queue)),
        kv("processes", int(sys.processes)),
        kv("total_spawned", int(sys.total_spawned)),
        kv("total_exited", int(sys.total_exited)),
        kv("window_ms", int(sys.window.as_millis())),
        kv("window_reductions", int(sys.window_reductions)),
        kv("timers", int(sys.timers)),
        kv("registered", int(sys.registered)),
        kv("atoms", int(sys.atoms)),
        kv("long_schedules", int(sys.long_schedules)),
        kv("memory", Term::map(memory)),
        kv("messages", int(m.mailbox_messages)),
        kv("reductions", rows(&s.top_reductions)),
        kv("message_queue", rows(&s.top_message_queue)),
        kv("memory_top", rows(&s.top_memory)),
    ])
}

async fn process_info_term(pid: Pid) -> Term {
    let Some(info) = crate::process_info(pid).await else {
        return atom("undefined");
    };
    let pids = |v: &[Pid]| Term::list(v.iter().map(|&p| Term::Pid(p)).collect());
    let head: Vec<Term> = info
        .message_types
        .iter()
        .take(MAILBOX_HEAD)
        .map(|t| Term::binary(t.as_bytes()))
        .collect();
    Term::list(vec![
        Term::tuple(vec![atom("status"), status_atom(info.status)]),
        Term::tuple(vec![
            atom("registered_name"),
            name_term(info.registered_name.as_deref()),
        ]),
        Term::tuple(vec![atom("message_queue_len"), int(info.message_queue_len)]),
        Term::tuple(vec![atom("reductions"), int(info.reductions)]),
        Term::tuple(vec![atom("memory"), int(info.memory)]),
        Term::tuple(vec![atom("links"), pids(&info.links)]),
        Term::tuple(vec![atom("monitors"), pids(&info.monitors)]),
        Term::tuple(vec![atom("monitored_by"), pids(&info.monitored_by)]),
        Term::tuple(vec![
            atom("trap_exit"),
            atom(if info.trap_exit { "true" } else { "false" }),
        ]),
        Term::tuple(vec![atom("mailbox_head"), Term::list(head)]),
    ])
}

fn tree_term(t: &SupervisorNode) -> Term {
    let kind = t.kind.as_str();
    let children = t
        .children
        .iter()
        .map(|c| {
            Term::tuple(vec![
                Term::binary(c.info.id.as_bytes()),
                c.info.pid.map_or(atom("undefined"), Term::Pid),
                atom(c.info.kind.as_str()),
                int(c.info.restarts),
                c.tree.as_ref().map_or(atom("undefined"), tree_term),
            ])
        })
        .collect();
    Term::tuple(vec![
        Term::Pid(t.pid),
        name_term(t.name.as_deref()),
        atom(kind),
        Term::list(children),
    ])
}
