//! One sample of a node, decoded from the term both kinds of node answer
//! with, and its text rendering.

use std::fmt::Write;

use crate::dist::{Atom, Term};

/// What kind of node answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A beamish node (`beamish_observer:sample/1`).
    Beamish,
    /// An Erlang node (the probe).
    Erl,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Beamish => "beamish",
            Kind::Erl => "erl",
        }
    }
}

/// One scheduler's counters (since the node started, or since the
/// observer enabled them; only differences mean anything).
#[derive(Clone, Debug, PartialEq)]
pub struct Sched {
    /// The scheduler's number, from 1.
    pub id: i64,
    /// Time busy (the node's unit: ns on beamish, `scheduler_wall_time`'s
    /// on Erlang).
    pub busy: f64,
    /// Time in all, in the same unit.
    pub total: f64,
    /// Processes in its run queue.
    pub run_queue: i64,
}

/// One process row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The pid as the node sent it (to address the process).
    pub term: Term,
    /// The pid as the node's own shell prints it (`<0.I.S>`).
    pub pid: String,
    /// Its registered name.
    pub name: Option<String>,
    /// Reductions since it started.
    pub reductions: i64,
    /// Reductions in the sample's window.
    pub recent: i64,
    /// Messages in its mailbox.
    pub queue: i64,
    /// Bytes, as the node counts them.
    pub memory: i64,
    /// `running`, `runnable`, `waiting`…
    pub status: String,
}

/// One sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// What kind of node answered.
    pub kind: Kind,
    /// Time since the node started.
    pub uptime_ms: i64,
    /// Each scheduler's counters.
    pub schedulers: Vec<Sched>,
    /// Processes in the shared queue (beamish's injector; 0 on Erlang).
    pub global_run_queue: i64,
    /// Live processes.
    pub processes: i64,
    /// Processes spawned since the start (beamish nodes).
    pub total_spawned: Option<i64>,
    /// Processes ended since the start (beamish nodes).
    pub total_exited: Option<i64>,
    /// The window of `recent` reductions.
    pub window_ms: i64,
    /// Reductions of all processes in the window.
    pub window_reductions: i64,
    /// Registered names.
    pub registered: i64,
    /// Atoms in the atom table.
    pub atoms: i64,
    /// `long_schedule` reports since the start (beamish nodes).
    pub long_schedules: Option<i64>,
    /// Messages waiting in mailboxes (beamish nodes).
    pub messages: Option<i64>,
    /// Bytes by kind, in the node's own terms.
    pub memory: Vec<(String, i64)>,
    /// Top processes by reductions in the window.
    pub reductions: Vec<Row>,
    /// Top processes by mailbox length.
    pub message_queue: Vec<Row>,
    /// Top processes by memory.
    pub memory_top: Vec<Row>,
}

fn num(t: &Term) -> Option<f64> {
    match t {
        Term::Int(i) => Some(*i as f64),
        Term::Big(b) => Some(b.to_f64()),
        Term::Float(f) => Some(*f),
        _ => None,
    }
}

fn int(t: &Term) -> Option<i64> {
    match t {
        Term::Int(i) => Some(*i),
        Term::Big(b) => b.to_i64().or(Some(i64::MAX)),
        _ => None,
    }
}

fn text(t: &Term) -> Option<String> {
    match t {
        Term::Atom(a) if a.as_str() == "undefined" => None,
        Term::Atom(a) => Some(a.as_str().to_string()),
        t => t
            .as_binary()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
    }
}

fn key(name: &str) -> Term {
    Term::Atom(Atom::new(name).expect("a short atom"))
}

fn row(t: &Term) -> Option<Row> {
    let [pid, name, r, recent, q, m, status] = t.as_tuple()? else {
        return None;
    };
    Some(Row {
        term: pid.clone(),
        pid: match pid {
            Term::Pid(p) => local_form(&p.to_string()),
            other => other.to_string(),
        },
        name: text(name),
        reductions: int(r)?,
        recent: int(recent)?,
        queue: int(q)?,
        memory: int(m)?,
        status: text(status).unwrap_or_default(),
    })
}

/// A pid as the observed node's own shell prints it: `<0.I.S>` for
/// `<'node'.I.S>`.
pub(crate) fn local_form(pid: &str) -> String {
    match pid
        .strip_prefix("<'")
        .and_then(|rest| rest.split_once("'."))
    {
        Some((_, tail)) => format!("<0.{tail}"),
        None => pid.to_string(),
    }
}

impl Snapshot {
    /// Decodes what a node answered.
    pub(crate) fn decode(kind: Kind, t: &Term) -> Result<Snapshot, String> {
        let bad = |what: &str| format!("a sample without {what}: {t}");
        let get = |k: &str| t.map_get(&key(k));
        let get_int = |k: &str| get(k).and_then(int).ok_or_else(|| bad(k));
        let rows = |k: &str| -> Result<Vec<Row>, String> {
            let list = get(k).and_then(|l| l.as_list()).ok_or_else(|| bad(k))?;
            list.iter().map(|r| row(r).ok_or_else(|| bad(k))).collect()
        };
        let schedulers = get("schedulers")
            .and_then(|l| l.as_list())
            .ok_or_else(|| bad("schedulers"))?
            .iter()
            .map(|s| match s.as_tuple() {
                Some([id, busy, total, rq]) => Some(Sched {
                    id: int(id)?,
                    busy: num(busy)?,
                    total: num(total)?,
                    run_queue: int(rq)?,
                }),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("schedulers"))?;
        let mut memory: Vec<(String, i64)> = get("memory")
            .and_then(|m| m.as_map())
            .ok_or_else(|| bad("memory"))?
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, int(v)?)))
            .collect();
        memory.sort();
        Ok(Snapshot {
            kind,
            uptime_ms: get_int("uptime_ms")?,
            schedulers,
            global_run_queue: get_int("global_run_queue")?,
            processes: get_int("processes")?,
            total_spawned: get("total_spawned").and_then(int),
            total_exited: get("total_exited").and_then(int),
            window_ms: get_int("window_ms")?,
            window_reductions: get_int("window_reductions")?,
            registered: get_int("registered")?,
            atoms: get_int("atoms")?,
            long_schedules: get("long_schedules").and_then(int),
            messages: get("messages").and_then(int),
            memory,
            reductions: rows("reductions")?,
            message_queue: rows("message_queue")?,
            memory_top: rows("memory_top")?,
        })
    }

    /// Busy share per scheduler between `self` (earlier) and `later`.
    pub fn utilization(&self, later: &Snapshot) -> Vec<(i64, f64)> {
        later
            .schedulers
            .iter()
            .map(|s| {
                let before = self.schedulers.iter().find(|b| b.id == s.id);
                let (b0, t0) = before.map_or((0.0, 0.0), |b| (b.busy, b.total));
                let dt = s.total - t0;
                let u = if dt > 0.0 {
                    ((s.busy - b0) / dt).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                (s.id, u)
            })
            .collect()
    }
}

/// Bytes as MB with one decimal.
fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn per_second(n: i64, ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    format!("{:.1}", n as f64 * 1000.0 / ms as f64)
}

/// The text of `--once`: the summary from two samples, then the top
/// processes of the later one.
pub(crate) fn render_text(node: &str, a: &Snapshot, b: &Snapshot) -> String {
    let mut out = String::new();
    let elapsed = b.uptime_ms - a.uptime_ms;
    let _ = writeln!(
        out,
        "node {node} ({}), uptime {:.1} s",
        b.kind.name(),
        b.uptime_ms as f64 / 1000.0
    );
    let mut line = format!("processes {}", b.processes);
    if let (Some(s0), Some(s1), Some(e0), Some(e1)) = (
        a.total_spawned,
        b.total_spawned,
        a.total_exited,
        b.total_exited,
    ) {
        let _ = write!(
            line,
            ", spawns/s {}, exits/s {}",
            per_second(s1 - s0, elapsed),
            per_second(e1 - e0, elapsed)
        );
    }
    let _ = write!(
        line,
        ", reductions/s {}, registered {}, atoms {}",
        per_second(b.window_reductions, b.window_ms),
        b.registered,
        b.atoms
    );
    if let Some(m) = b.messages {
        let _ = write!(line, ", queued messages {m}");
    }
    if let Some(l) = b.long_schedules {
        let _ = write!(line, ", long_schedules {l}");
    }
    let _ = writeln!(out, "{line}");
    let util = a.utilization(b);
    let total: f64 = util.iter().map(|u| u.1).sum::<f64>() / util.len().max(1) as f64;
    let per: Vec<String> = util
        .iter()
        .map(|(id, u)| format!("{id}: {:.1}%", u * 100.0))
        .collect();
    let queues: Vec<String> = b
        .schedulers
        .iter()
        .map(|s| s.run_queue.to_string())
        .collect();
    let _ = writeln!(
        out,
        "schedulers {:.1}% ({}), run queues {} (global {})",
        total * 100.0,
        per.join(", "),
        queues.join(" "),
        b.global_run_queue
    );
    let mem: Vec<String> = b
        .memory
        .iter()
        .map(|(k, v)| format!("{k} {}", mb(*v)))
        .collect();
    let _ = writeln!(out, "memory {}", mem.join(", "));
    for (title, rows) in [
        (
            format!("top by reductions (last {} ms)", b.window_ms),
            &b.reductions,
        ),
        ("top by message queue".to_string(), &b.message_queue),
        ("top by memory".to_string(), &b.memory_top),
    ] {
        let _ = writeln!(out, "\n{title}");
        let _ = writeln!(
            out,
            "{:<18} {:<28} {:>14} {:>12} {:>8} {:>12}  STATUS",
            "PID", "NAME", "REDUCTIONS", "RECENT", "MSGQ", "MEMORY"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "{:<18} {:<28} {:>14} {:>12} {:>8} {:>12}  {}",
                r.pid,
                r.name.as_deref().unwrap_or("-"),
                r.reductions,
                r.recent,
                r.queue,
                r.memory,
                r.status
            );
        }
    }
    out
}
