//! `beamish bench`: the benchmark workloads, their size arguments, the child
//! process that runs each one, and the report lines.
//!
//! Every workload runs in a fresh child process (`beamish bench-one <runtime>
//! <workload> key=value...`, the same binary), so that resident-memory figures
//! start from a clean process and processes left busy by one workload (the
//! CPU-bound loops of `fairness`, the idle ring of `ring`) never disturb the
//! next. The child prints exactly one line on stdout: the result line
//! (`bench=<name> runtime=<runtime> <key>=<value> ...`, exit status 0) or an
//! error line (`bench=<name> runtime=<runtime> error=<why>`, exit status 1).
//! The parent relays that line, or writes an error line of its own when the
//! child timed out, crashed or printed nothing usable.
//!
//! `dist` runs between two nodes, so its lines also say which runtime drives
//! (`peer=<runtime>`, right after `runtime=`, which names the echo node).
//! Besides beamish↔beamish it measures erl↔erl and beamish↔erl in the same
//! run when Erlang/OTP is installed, and prints a skip line for them when it
//! is not (see [`dist`]).

mod beamish_runtime;
mod dist;
mod failover;
pub mod measure;
mod observe;
mod otp;
mod tokio_baseline;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A size parameter of a workload: `name=value` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// The name used on the command line, e.g. `procs`.
    pub name: &'static str,
    /// The reference size of WORKLOADS.md.
    pub default: u64,
    /// The smallest value the workload can run with.
    pub min: u64,
}

const fn key(name: &'static str, default: u64, min: u64) -> Key {
    Key { name, default, min }
}

/// Validation of a workload's sizes as a whole.
pub type Check = fn(&Args) -> Result<(), String>;

/// One benchmark workload: a row of [`WORKLOADS`].
#[derive(Debug)]
pub struct Workload {
    /// Its name, as printed in `bench=<name>`.
    pub name: &'static str,
    /// One line for `--list`.
    pub about: &'static str,
    /// The size parameters it reads, with their defaults.
    pub keys: &'static [Key],
    /// Whether plain tokio can express it (tokio has no links or supervisors).
    pub on_tokio: bool,
    /// Extra validation of the sizes beyond each key's minimum.
    pub check: Option<Check>,
    /// Whether it runs between two nodes, and so also with Erlang/OTP
    /// peers (erl↔erl and beamish↔erl, when installed) in the same run.
    pub peers: bool,
}

/// Every workload, in the order `beamish bench` runs them. Adding one is one
/// entry here plus its arm in each runtime's `run`.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "spawn",
        about: "spawn n processes blocked in a receive, then stop them all",
        keys: &[key("n", 1_000_000, 1)],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "skynet",
        about: "a tree of processes, div children each, leaves reply their number, sums go up",
        keys: &[key("leaves", 1_000_000, 1), key("div", 10, 2)],
        on_tokio: true,
        check: Some(check_skynet),
        peers: false,
    },
    Workload {
        name: "ring",
        about: "a ring of procs processes passes one token for hops hops",
        keys: &[key("procs", 10_000, 1), key("hops", 10_000_000, 1)],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "pingpong",
        about: "two processes, n round trips",
        keys: &[key("n", 1_000_000, 1)],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "pingpong_par",
        about: "pairs pairs of processes, rounds round trips each, all at once",
        keys: &[key("pairs", 1_000, 1), key("rounds", 1_000, 1)],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "fanin",
        about: "senders processes send msgs messages each to one counting receiver",
        keys: &[key("senders", 4, 1), key("msgs", 1_000_000, 1)],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "fairness",
        about: "procs CPU-bound processes; a heartbeat sleeps sleep_ms beats times, lateness",
        keys: &[
            key("procs", 8, 0),
            key("beats", 2_000, 1),
            key("sleep_ms", 1, 1),
        ],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "runaway",
        about: "as fairness, plus one process with no yield point for runaway_ms",
        keys: &[
            key("procs", 8, 0),
            key("sleep_ms", 1, 1),
            key("runaway_ms", 2_000, 1),
        ],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "restart",
        about: "a one_for_one supervisor whose child crashes right after init, n restarts",
        keys: &[
            key("n", 100_000, 1),
            key("period", 1, 1),
            key("intensity", 0, 0),
        ],
        on_tokio: false,
        check: None,
        peers: false,
    },
    Workload {
        name: "call",
        about: "a GenServer answers ping with pong; one client makes n sequential calls",
        keys: &[key("n", 1_000_000, 1)],
        on_tokio: true,
        check: None,
        peers: false,
    },
    Workload {
        name: "link_cascade",
        about: "a chain of n linked processes; the head crashes, wait for the tail's death",
        keys: &[key("n", 100_000, 2)],
        on_tokio: false,
        check: None,
        peers: false,
    },
    Workload {
        name: "dist",
        about: "echo round trips between two nodes, window in flight, best of rounds",
        keys: &[
            key("n", 100_000, 1),
            key("window", 100, 1),
            key("rounds", 3, 1),
            key("threads", 1, 0),
            key("nut_threads", 1, 0),
        ],
        on_tokio: false,
        check: None,
        peers: true,
    },
    Workload {
        name: "gen_call",
        about: "gen_server calls into another node (typed from beamish), callers at once, best of rounds",
        keys: OTP_CALL_KEYS,
        on_tokio: false,
        check: None,
        peers: true,
    },
    Workload {
        name: "erpc",
        about: "erpc calls into a function of another node (Rust on beamish), callers at once",
        keys: OTP_CALL_KEYS,
        on_tokio: false,
        check: None,
        peers: true,
    },
    Workload {
        name: "cluster",
        about: "3 nodes with global and pg: register_name latency, pg:join until seen remotely",
        keys: &[
            key("n", 200, 1),
            key("rounds", 3, 1),
            key("threads", 1, 0),
            key("nut_threads", 1, 0),
        ],
        on_tokio: false,
        check: None,
        peers: true,
    },
    Workload {
        name: "failover",
        about: "3 nodes run a singleton, SIGKILL its node kills times: nodedown to first answer elsewhere, at rate calls/s",
        keys: &[
            key("kills", 20, 1),
            key("rate", 1_000, 1),
            key("ticktime", 4, 1),
            key("heal", 1, 0),
        ],
        on_tokio: false,
        check: None,
        peers: true,
    },
    Workload {
        name: "trace",
        about: "n round trips with one side traced (send+receive): rate-limited, and unlimited with a slow tracer",
        keys: &[key("n", 1_000_000, 1), key("rate", 1_000, 1)],
        on_tokio: false,
        check: None,
        peers: false,
    },
    Workload {
        name: "observe",
        about: "idle + busy processes; a full top-10 refresh a second, refreshes times: its CPU and memory",
        keys: &[
            key("idle", 1_000_000, 0),
            key("busy", 100_000, 10),
            key("refreshes", 3, 1),
        ],
        on_tokio: false,
        check: None,
        peers: true,
    },
];

/// The sizes of `gen_call` and `erpc`.
const OTP_CALL_KEYS: &[Key] = &[
    key("n", 20_000, 1),
    key("callers", 1, 1),
    key("rounds", 3, 1),
    key("threads", 1, 0),
    key("nut_threads", 1, 0),
];

/// The workload called `name`, if any.
pub fn workload(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// skynet's tree only sums to the expected total when every inner node has
/// exactly `div` children, i.e. when `leaves` is a power of `div`.
fn check_skynet(args: &Args) -> Result<(), String> {
    let (leaves, div) = (args.num("leaves", 1_000_000)?, args.num("div", 10)?);
    let mut size = 1u64;
    while size < leaves {
        size = size.saturating_mul(div);
    }
    if size != leaves {
        return Err(format!(
            "skynet: leaves={leaves} is not a power of div={div}"
        ));
    }
    // The expected sum leaves*(leaves-1)/2 must fit in a u64.
    if leaves > 1 << 32 {
        return Err(format!("skynet: leaves={leaves} is too large"));
    }
    Ok(())
}

/// `key=value` size overrides. Values are whole numbers (`_` allowed as a
/// digit separator). Keys not given take the default the workload passes to
/// [`Args::num`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    values: BTreeMap<String, u64>,
    /// The keys of the workload these arguments were checked against, if any:
    /// then [`Args::num`] also checks that the caller reads a declared key with
    /// the declared default, so the table and the runtimes cannot drift apart.
    keys: Option<&'static [Key]>,
}

impl Args {
    /// Parses `key=value` items. Rejects items without `=`, empty keys, keys
    /// given twice and values that are not whole numbers.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        for item in items {
            let item = item.as_ref();
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| format!("expected key=value, got {item:?}"))?;
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("bad key {k:?} in {item:?}"));
            }
            let n = parse_number(v).ok_or_else(|| format!("{k}={v}: not a whole number"))?;
            if values.insert(k.to_string(), n).is_some() {
                return Err(format!("{k} given more than once"));
            }
        }
        Ok(Args { values, keys: None })
    }

    /// The value of `key`, or `default` when it was not given.
    ///
    /// Fails when these arguments were checked against a workload
    /// ([`Args::for_workload`]) that does not declare `key`, or declares
    /// another default for it.
    pub fn num(&self, key: &str, default: u64) -> Result<u64, String> {
        if let Some(keys) = self.keys {
            match keys.iter().find(|k| k.name == key) {
                None => return Err(format!("key {key} is not declared for this workload")),
                Some(k) if k.default != default => {
                    return Err(format!(
                        "key {key}: default {default} differs from the declared {}",
                        k.default
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(self.values.get(key).copied().unwrap_or(default))
    }

    /// Fails on a key that none of `workloads` declares (a typo, most
    /// likely), naming the keys they do know.
    pub fn check_known(&self, workloads: &[&Workload]) -> Result<(), String> {
        for k in self.values.keys() {
            if !workloads.iter().any(|w| w.keys.iter().any(|d| d.name == k)) {
                let mut known: Vec<&str> = workloads
                    .iter()
                    .flat_map(|w| w.keys.iter().map(|d| d.name))
                    .collect();
                known.sort_unstable();
                known.dedup();
                let names: Vec<&str> = workloads.iter().map(|w| w.name).collect();
                return Err(format!(
                    "unknown key {k} for {} (known: {})",
                    names.join(", "),
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The overrides that `w` declares, checked against each key's minimum
    /// and the workload's own check. Other keys are dropped: they belong to
    /// other workloads of the same run.
    pub fn for_workload(&self, w: &'static Workload) -> Result<Args, String> {
        let mut values = BTreeMap::new();
        for k in w.keys {
            if let Some(&v) = self.values.get(k.name) {
                if v < k.min {
                    return Err(format!(
                        "{}: {}={v} is below the minimum {}",
                        w.name, k.name, k.min
                    ));
                }
                values.insert(k.name.to_string(), v);
            }
        }
        let args = Args {
            values,
            keys: Some(w.keys),
        };
        if let Some(check) = w.check {
            check(&args)?;
        }
        Ok(args)
    }

    /// The overrides as `key=value` items, the inverse of [`Args::parse`].
    pub fn to_items(&self) -> Vec<String> {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

/// A whole number with optional `_` separators: `1_000_000`.
fn parse_number(s: &str) -> Option<u64> {
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The result keys of one workload run, in print order (without `bench=` and
/// `runtime=`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report(pub Vec<(&'static str, String)>);

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Report(Vec::new())
    }

    /// This report with `key=value` appended.
    pub fn with(mut self, key: &'static str, value: impl Display) -> Self {
        self.push(key, value);
        self
    }

    /// Appends `key=value`.
    pub fn push(&mut self, key: &'static str, value: impl Display) {
        self.0.push((key, value.to_string()));
    }

    /// The output line `bench=<bench> runtime=<runtime> <key>=<value> ...`.
    /// Whitespace inside a value becomes `_`, so that a line always splits
    /// into `key=value` words.
    pub fn line(&self, bench: &str, runtime: &str) -> String {
        let mut line = format!("bench={bench} runtime={runtime}");
        for (k, v) in &self.0 {
            line.push_str(&format!(" {k}={}", one_word(v)));
        }
        line
    }
}

/// `s` with every run of whitespace replaced by one `_`.
fn one_word(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("_")
}

/// A parsed output line, as read back from a child process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The workload, from `bench=`.
    pub bench: String,
    /// The runtime, from `runtime=`.
    pub runtime: String,
    /// The other `key=value` words, in order.
    pub keys: Vec<(String, String)>,
}

impl Line {
    /// Parses `bench=<name> runtime=<rt> <key>=<value> ...`; `None` if the
    /// line does not have that shape.
    pub fn parse(s: &str) -> Option<Line> {
        let mut words = s.split_whitespace();
        let bench = words.next()?.strip_prefix("bench=")?.to_string();
        let runtime = words.next()?.strip_prefix("runtime=")?.to_string();
        let keys = words
            .map(|w| {
                w.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Line {
            bench,
            runtime,
            keys,
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Keys that state a size, a setting or a count rather than a measurement
/// to compare (and `all_per_s`, the rounds behind a best figure): no ratio
/// for them.
const NO_RATIO_KEYS: &[&str] = &[
    "n",
    "procs",
    "samples",
    "unit_iters",
    "leaves",
    "msgs",
    "pairs",
    "rounds",
    "window",
    "threads",
    "nut_threads",
    "out_of_order",
    "all_per_s",
    "kills",
    "rate",
];

/// `bench=<name> runtime=<a>/<b> <key>=<ratio> ...` for every numeric
/// measurement the two lines share, `a` / `b` with 2 decimals (below 1.00:
/// `a` is lower), e.g. `runtime=beamish/tokio`. Lines with a `peer` get
/// `peer=<a's>/<b's>` after `runtime=`. `None` when they share no
/// measurement. A key whose value in `b` is zero has no ratio and is left
/// out.
pub fn ratio_line(a: &Line, b: &Line) -> Option<String> {
    let mut ratios = String::new();
    for (k, v) in &a.keys {
        if NO_RATIO_KEYS.contains(&k.as_str()) {
            continue;
        }
        let (Some(x), Some(y)) = (
            v.parse::<f64>().ok(),
            b.get(k).and_then(|t| t.parse::<f64>().ok()),
        ) else {
            continue;
        };
        if y != 0.0 && x.is_finite() && y.is_finite() {
            ratios.push_str(&format!(" {k}={:.2}", x / y));
        }
    }
    if ratios.is_empty() {
        return None;
    }
    let peers = match (a.get("peer"), b.get("peer")) {
        (None, None) => String::new(),
        (p, q) => format!(" peer={}/{}", p.unwrap_or("-"), q.unwrap_or("-")),
    };
    Some(format!(
        "bench={} runtime={}/{}{peers}{ratios}",
        a.bench, a.runtime, b.runtime
    ))
}

/// The runtimes a workload can run on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// beamish processes.
    Beamish,
    /// Plain tokio tasks and unbounded channels.
    Tokio,
    /// Erlang/OTP nodes (`dist` only, through `escript`).
    Erl,
}

impl Runtime {
    /// The name printed in `runtime=`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Beamish => "beamish",
            Runtime::Tokio => "tokio",
            Runtime::Erl => "erl",
        }
    }

    fn run(self, w: &Workload, args: &Args, peer: Option<Peer>) -> Result<Report, String> {
        match (self, peer) {
            (rt, Some(peer)) if w.name == "dist" => dist::run(rt, peer, args),
            (rt, Some(peer)) if w.name == "failover" => failover::run(rt, peer, args),
            (rt, Some(peer)) if w.name == "observe" => observe::run(rt, peer, args),
            (rt, Some(peer)) => otp::run(w.name, rt, peer, args),
            (Runtime::Beamish, None) => beamish_runtime::run(w.name, args),
            (Runtime::Tokio, None) => tokio_baseline::run(w.name, args),
            (Runtime::Erl, None) => Err(format!("{}: no erl implementation", w.name)),
        }
    }
}

/// The runtime of the node that drives a two-node workload (`dist`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A beamish node.
    Beamish,
    /// An Erlang/OTP node.
    Erl,
}

impl Peer {
    /// The name printed in `peer=`.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Beamish => "beamish",
            Peer::Erl => "erl",
        }
    }
}

/// One child run of a workload: the runtime it runs on and, for a two-node
/// workload, the runtime of the driving node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair {
    rt: Runtime,
    peer: Option<Peer>,
}

impl Pair {
    /// `ring (beamish)`, `dist (beamish, peer erl)`.
    fn label(self, w: &Workload) -> String {
        match self.peer {
            None => format!("{} ({})", w.name, self.rt.name()),
            Some(p) => format!("{} ({}, peer {})", w.name, self.rt.name(), p.name()),
        }
    }

    /// The report keys that name the pair beyond `runtime=`: `peer=`.
    fn head(self) -> Report {
        let mut r = Report::new();
        if let Some(p) = self.peer {
            r.push("peer", p.name());
        }
        r
    }

    /// Whether `line` is this pair's.
    fn owns(self, w: &Workload, line: &Line) -> bool {
        line.bench == w.name
            && line.runtime == self.rt.name()
            && line.get("peer") == self.peer.map(Peer::name)
    }
}

/// The child runs of `w`: beamish, then the baseline if `w` has one; for a
/// two-node workload beamish↔beamish, then erl↔erl and beamish↔erl unless
/// `erl_missing` says why not (then they are left out).
fn pairs(w: &Workload, baseline: Option<Runtime>, erl_missing: Option<&str>) -> Vec<Pair> {
    let pair = |rt, peer| Pair { rt, peer };
    if !w.peers {
        let mut v = vec![pair(Runtime::Beamish, None)];
        v.extend(baseline.filter(|_| w.on_tokio).map(|b| pair(b, None)));
        return v;
    }
    let mut v = vec![pair(Runtime::Beamish, Some(Peer::Beamish))];
    if erl_missing.is_none() {
        v.push(pair(Runtime::Erl, Some(Peer::Erl)));
        // Failover's erl run is a cluster of erl nodes with its own client,
        // observe's one erl node observing itself: there is no mixed pair.
        if w.name != "failover" && w.name != "observe" {
            v.push(pair(Runtime::Beamish, Some(Peer::Erl)));
        }
    }
    v
}

/// The ratio lines of one workload's results: each beamish line over the
/// line of the other runtime (tokio, or erl↔erl), the like-for-like pair
/// (same peer) first.
fn ratio_lines(results: &[(Pair, Option<Line>)]) -> Vec<String> {
    let Some((reference, Some(base))) = results.iter().find(|(p, _)| p.rt != Runtime::Beamish)
    else {
        return Vec::new();
    };
    let mut beamish: Vec<&(Pair, Option<Line>)> = results
        .iter()
        .filter(|(p, _)| p.rt == Runtime::Beamish)
        .collect();
    beamish.sort_by_key(|(p, _)| p.peer != reference.peer);
    beamish
        .iter()
        .filter_map(|(_, line)| ratio_line(line.as_ref()?, base))
        .collect()
}

/// What the beamish figures can be compared with.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// Plain tokio (multi-thread runtime, tasks and unbounded channels).
    Tokio,
}

/// Options of `beamish bench`.
#[derive(clap::Args, Debug)]
pub struct BenchOpts {
    /// Workloads to run (default: all, in `--list` order), and `key=value`
    /// size overrides (e.g. `n=10_000`), applied to every selected workload
    /// that has the key.
    #[arg(value_name = "WORKLOAD|KEY=VALUE")]
    pub items: Vec<String>,
    /// Also run each workload that it can express on this baseline, and print
    /// a beamish/baseline ratio line per workload.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Seconds one workload may take before its child process is killed.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// List the workloads with their keys and the values this run would use,
    /// and run nothing.
    #[arg(long)]
    pub list: bool,
}

/// Options of the hidden `beamish bench-one`: the child side of `bench`.
#[derive(clap::Args, Debug)]
pub struct OneOpts {
    /// The runtime to run the workload on.
    #[arg(value_enum)]
    pub runtime: Runtime,
    /// The workload.
    pub workload: String,
    /// The runtime of the driving node, for a two-node workload (default:
    /// the runtime's own).
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
    /// `key=value` size overrides.
    pub overrides: Vec<String>,
}

/// Exit status for bad command-line input.
const USAGE: u8 = 2;

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("beamish bench: {msg}");
    ExitCode::from(USAGE)
}

/// The selected workloads and the overrides, from the positional items.
fn select(items: &[String]) -> Result<(Vec<&'static Workload>, Args), String> {
    let (kvs, names): (Vec<&String>, Vec<&String>) = items.iter().partition(|s| s.contains('='));
    let mut selected = Vec::new();
    for name in names {
        let w = workload(name).ok_or_else(|| {
            let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
            format!("unknown workload {name} (known: {})", all.join(", "))
        })?;
        selected.push(w);
    }
    if selected.is_empty() {
        selected = WORKLOADS.iter().collect();
    }
    let args = Args::parse(&kvs)?;
    args.check_known(&selected)?;
    Ok((selected, args))
}

/// `beamish bench`: runs the selected workloads, one child process each.
pub fn main(opts: BenchOpts) -> ExitCode {
    let (selected, args) = match select(&opts.items) {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    // Check every workload's sizes before the first (possibly long) run.
    let mut runs = Vec::new();
    for &w in &selected {
        match args.for_workload(w) {
            Ok(a) => runs.push((w, a)),
            Err(e) => return usage_error(&e),
        }
    }
    if opts.list {
        list(&runs);
        return ExitCode::SUCCESS;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("beamish bench: cannot find this executable to re-run it: {e}");
            return ExitCode::FAILURE;
        }
    };
    let baseline = opts.baseline.map(|Baseline::Tokio| Runtime::Tokio);
    let erl_missing = if runs.iter().any(|(w, _)| w.peers) {
        dist::erl_missing()
    } else {
        None
    };
    let total: usize = runs
        .iter()
        .map(|(w, _)| pairs(w, baseline, erl_missing.as_deref()).len())
        .sum();
    let timeout = Duration::from_secs(opts.timeout);
    let mut done = 0;
    let mut failed = false;
    for (w, a) in &runs {
        let mut results = Vec::new();
        for pair in pairs(w, baseline, erl_missing.as_deref()) {
            done += 1;
            let label = format!("[{done}/{total}] {}", pair.label(w));
            eprint!("{label}… ");
            let out = run_child(&exe, pair, w, a, timeout);
            let verdict = if out.ok { "done" } else { "failed" };
            let secs = out.elapsed.as_secs_f64();
            if out.relayed {
                // The child's messages broke the progress line: repeat it.
                eprintln!("{label} {verdict} in {secs:.2} s");
            } else {
                eprintln!("{verdict} in {secs:.2} s");
            }
            if emit(&out.line).is_err() {
                return ExitCode::FAILURE; // nobody reads the results any more
            }
            failed |= !out.ok;
            results.push((pair, out.ok.then(|| Line::parse(&out.line)).flatten()));
        }
        if w.peers
            && let Some(why) = &erl_missing
        {
            // Not a failure: the erl-peered pairs need what is not here.
            for rt in [Runtime::Erl, Runtime::Beamish] {
                let pair = Pair {
                    rt,
                    peer: Some(Peer::Erl),
                };
                let line = pair.head().with("skipped", why).line(w.name, rt.name());
                if emit(&line).is_err() {
                    return ExitCode::FAILURE;
                }
            }
        }
        for ratio in ratio_lines(&results) {
            if emit(&ratio).is_err() {
                return ExitCode::FAILURE;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes one line on stdout, flushed at once so that results appear as they
/// come. An error (e.g. the reader went away) is returned, not a panic.
fn emit(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// `--list`: every selected workload with the sizes it would run with.
fn list(runs: &[(&Workload, Args)]) {
    for (w, a) in runs {
        let sizes: Vec<String> = w
            .keys
            .iter()
            .map(|k| {
                let v = a.num(k.name, k.default).unwrap_or(k.default);
                format!("{}={}", k.name, grouped(v))
            })
            .collect();
        let tokio = match (w.on_tokio, w.peers) {
            (true, _) => "",
            (false, false) => " (no tokio baseline)",
            (false, true) => {
                " (no tokio baseline; erl-erl and beamish-erl too when erl is installed)"
            }
        };
        let line = format!("{:<13} {:<40} {}{tokio}", w.name, sizes.join(" "), w.about);
        if emit(&line).is_err() {
            return;
        }
    }
}

/// `n` with `_` between groups of three digits: `1_000_000`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// What became of one child run.
struct Outcome {
    /// The line to print: the child's own, or an error line.
    line: String,
    /// Whether the line is a result (not an error).
    ok: bool,
    elapsed: Duration,
    /// Whether the child wrote to stderr (relayed, indented, to ours).
    relayed: bool,
}

/// Runs `w` as `pair` in a child process (this executable, `bench-one`) and
/// waits for it at most `timeout`, then kills it.
fn run_child(exe: &Path, pair: Pair, w: &Workload, args: &Args, timeout: Duration) -> Outcome {
    let t0 = Instant::now();
    let rt = pair.rt;
    let error = |why: &str, relayed: bool| Outcome {
        line: pair.head().with("error", why).line(w.name, rt.name()),
        ok: false,
        elapsed: t0.elapsed(),
        relayed,
    };
    let mut command = Command::new(exe);
    command.arg("bench-one").arg(rt.name()).arg(w.name);
    if let Some(peer) = pair.peer {
        command.arg("--peer").arg(peer.name());
    }
    let mut child = match command
        .args(args.to_items())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return error(&format!("cannot start child process: {e}"), false),
    };
    // Both pipes are drained on threads so that a chatty child never blocks
    // on a full pipe while this process only polls for its exit.
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let relay = std::thread::spawn(move || {
        let mut relayed = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !relayed {
                eprintln!(); // end the open progress line
                relayed = true;
            }
            eprintln!("    {line}");
        }
        relayed
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(Some(status)),
            Ok(None) if t0.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Ok(None);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(e);
            }
        }
    };
    let stdout = reader.join().unwrap_or_default();
    let relayed = relay.join().unwrap_or(true);
    let status = match status {
        Ok(Some(status)) => status,
        Ok(None) => return error(&format!("timeout after {} s", timeout.as_secs()), relayed),
        Err(e) => return error(&format!("cannot wait for child process: {e}"), relayed),
    };
    let own = stdout
        .lines()
        .find(|l| Line::parse(l).is_some_and(|p| pair.owns(w, &p)));
    match own {
        Some(l) if status.success() && Line::parse(l).is_some_and(|p| p.get("error").is_none()) => {
            Outcome {
                line: l.to_string(),
                ok: true,
                elapsed: t0.elapsed(),
                relayed,
            }
        }
        Some(l) if Line::parse(l).is_some_and(|p| p.get("error").is_some()) => Outcome {
            line: l.to_string(),
            ok: false,
            elapsed: t0.elapsed(),
            relayed,
        },
        _ => error(&exit_reason(status), relayed),
    }
}

/// `exit_<code>`, `signal_<n>`, or `no_result_line` for a clean exit that
/// printed no line.
fn exit_reason(status: ExitStatus) -> String {
    if status.success() {
        return "no_result_line".to_string();
    }
    if let Some(code) = status.code() {
        return format!("exit_{code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("signal_{sig}");
        }
    }
    "abnormal_exit".to_string()
}

/// `beamish bench-one <runtime> <workload> [key=value...]`: runs the workload
/// here and prints its one line.
pub fn one(opts: OneOpts) -> ExitCode {
    let Some(w) = workload(&opts.workload) else {
        return usage_error(&format!("unknown workload {}", opts.workload));
    };
    let args = Args::parse(&opts.overrides).and_then(|a| {
        a.check_known(&[w])?;
        a.for_workload(w)
    });
    let args = match args {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    let rt = opts.runtime;
    let peer = match (w.peers, opts.peer) {
        (false, Some(_)) => return usage_error(&format!("{}: --peer is for dist", w.name)),
        (false, None) => None,
        (true, Some(p)) => Some(p),
        (true, None) if rt == Runtime::Erl => Some(Peer::Erl),
        (true, None) => Some(Peer::Beamish),
    };
    let pair = Pair { rt, peer };
    let (line, code) = match rt.run(w, &args, peer) {
        Ok(report) => {
            let mut head = pair.head();
            head.0.extend(report.0);
            (head.line(w.name, rt.name()), 0)
        }
        Err(e) => {
            eprintln!("beamish bench: {}: {e}", pair.label(w));
            (pair.head().with("error", e).line(w.name, rt.name()), 1)
        }
    };
    let _ = emit(&line);
    // Exit at once: processes a workload leaves behind (busy loops, blocked
    // rings) must not delay the exit nor be torn down inside the measurement
    // process.
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(items: &[&str]) -> Result<Args, String> {
        Args::parse(items)
    }

    #[test]
    fn overrides_and_defaults() {
        let a = args(&["n=1_000", "procs=7"]).unwrap();
        assert_eq!(a.num("n", 5), Ok(1000));
        assert_eq!(a.num("procs", 5), Ok(7));
        assert_eq!(a.num("hops", 5), Ok(5));
        assert_eq!(a.to_items(), ["n=1000", "procs=7"]);
        assert_eq!(Args::parse(&a.to_items()), Ok(a));
    }

    #[test]
    fn bad_items_are_errors() {
        for bad in [
            "n",
            "n=",
            "n=abc",
            "n=-1",
            "n=1.5",
            "n=1e6",
            "n=_",
            "=5",
            "n m=1",
            "n=99999999999999999999",
        ] {
            assert!(args(&[bad]).is_err(), "{bad} should be rejected");
        }
        assert!(
            args(&["n=1", "n=2"])
                .unwrap_err()
                .contains("more than once")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let ring = workload("ring").unwrap();
        let fair = workload("fairness").unwrap();
        let a = args(&["procs=3", "beats=10"]).unwrap();
        assert!(a.check_known(&[ring, fair]).is_ok());
        let e = a.check_known(&[ring]).unwrap_err();
        assert!(
            e.contains("unknown key beats") && e.contains("known: hops, procs"),
            "{e}"
        );
    }

    #[test]
    fn for_workload_keeps_its_keys_and_checks_them() {
        let ring = workload("ring").unwrap();
        let a = args(&["procs=3", "beats=10"])
            .unwrap()
            .for_workload(ring)
            .unwrap();
        assert_eq!(a.to_items(), ["procs=3"]);
        assert_eq!(a.num("procs", 10_000), Ok(3));
        assert_eq!(a.num("hops", 10_000_000), Ok(10_000_000));
        // Undeclared keys and disagreeing defaults are caught.
        assert!(a.num("beats", 2_000).is_err());
        assert!(a.num("hops", 1).is_err());
        // Minimums.
        let e = args(&["procs=0"]).unwrap().for_workload(ring).unwrap_err();
        assert!(e.contains("minimum"), "{e}");
        let fair = workload("fairness").unwrap();
        assert!(args(&["procs=0"]).unwrap().for_workload(fair).is_ok());
    }

    #[test]
    fn skynet_needs_a_power_of_div() {
        let sky = workload("skynet").unwrap();
        assert!(args(&[]).unwrap().for_workload(sky).is_ok());
        assert!(
            args(&["leaves=1000", "div=10"])
                .unwrap()
                .for_workload(sky)
                .is_ok()
        );
        assert!(args(&["leaves=1"]).unwrap().for_workload(sky).is_ok());
        assert!(
            args(&["leaves=64", "div=4"])
                .unwrap()
                .for_workload(sky)
                .is_ok()
        );
        assert!(args(&["leaves=999"]).unwrap().for_workload(sky).is_err());
        assert!(args(&["div=1"]).unwrap().for_workload(sky).is_err());
    }

    #[test]
    fn selection() {
        let items = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (w, a) = select(&items(&["ring", "n=5", "pingpong"])).unwrap();
        let names: Vec<&str> = w.iter().map(|w| w.name).collect();
        assert_eq!(names, ["ring", "pingpong"]);
        assert_eq!(a.num("n", 0), Ok(5));
        let (all, _) = select(&[]).unwrap();
        assert_eq!(all.len(), WORKLOADS.len());
        assert!(
            select(&items(&["rings"]))
                .unwrap_err()
                .contains("unknown workload")
        );
        assert!(
            select(&items(&["ring", "n=5"]))
                .unwrap_err()
                .contains("unknown key n")
        );
    }

    #[test]
    fn table_is_consistent() {
        for (i, w) in WORKLOADS.iter().enumerate() {
            assert!(
                WORKLOADS[..i].iter().all(|o| o.name != w.name),
                "{} twice",
                w.name
            );
            for k in w.keys {
                assert!(k.default >= k.min, "{} {}", w.name, k.name);
            }
            // The defaults themselves pass every check.
            Args::default().for_workload(w).unwrap();
        }
    }

    #[test]
    fn line_format_round_trips() {
        let r = Report::new()
            .with("ns_per_hop", measure::f1(12.345))
            .with("procs", 10)
            .with("error", "two  words\there");
        let line = r.line("ring", "tokio");
        assert_eq!(
            line,
            "bench=ring runtime=tokio ns_per_hop=12.3 procs=10 error=two_words_here"
        );
        let p = Line::parse(&line).unwrap();
        assert_eq!((p.bench.as_str(), p.runtime.as_str()), ("ring", "tokio"));
        assert_eq!(p.get("procs"), Some("10"));
        assert_eq!(p.keys.len(), 3);
        assert_eq!(Line::parse("runtime=x bench=y"), None);
        assert_eq!(Line::parse("bench=y runtime=x oops"), None);
    }

    #[test]
    fn grouping() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1_000");
        assert_eq!(grouped(10_000_000), "10_000_000");
        assert_eq!(parse_number(&grouped(123_456_789)), Some(123_456_789));
    }

    #[test]
    fn ratios() {
        let b = Line::parse(
            "bench=spawn runtime=beamish spawn_ns=50.0 bytes_per_proc=300 teardown_ns=10.0 ready_ns=1.0 n=1000",
        )
        .unwrap();
        let t = Line::parse(
            "bench=spawn runtime=tokio spawn_ns=200.0 bytes_per_proc=200 teardown_ns=0.0 n=1000",
        )
        .unwrap();
        assert_eq!(
            ratio_line(&b, &t).unwrap(),
            "bench=spawn runtime=beamish/tokio spawn_ns=0.25 bytes_per_proc=1.50"
        );
        let t = Line::parse("bench=spawn runtime=tokio n=1000 other=1").unwrap();
        assert_eq!(ratio_line(&b, &t), None);
        let b = Line::parse("bench=f runtime=beamish p99_us=3.0 samples=10 unit_iters=5").unwrap();
        let t = Line::parse("bench=f runtime=tokio p99_us=2.0 samples=20 unit_iters=7").unwrap();
        assert_eq!(
            ratio_line(&b, &t).unwrap(),
            "bench=f runtime=beamish/tokio p99_us=1.50"
        );
    }

    #[test]
    fn dist_pairs_and_ratios() {
        let dist = workload("dist").unwrap();
        let names = |v: Vec<Pair>| -> Vec<String> { v.iter().map(|p| p.label(dist)).collect() };
        assert_eq!(
            names(pairs(dist, Some(Runtime::Tokio), None)),
            [
                "dist (beamish, peer beamish)",
                "dist (erl, peer erl)",
                "dist (beamish, peer erl)"
            ]
        );
        assert_eq!(
            names(pairs(dist, None, Some("no erl"))),
            ["dist (beamish, peer beamish)"]
        );
        let ring = workload("ring").unwrap();
        assert_eq!(pairs(ring, Some(Runtime::Tokio), Some("no erl")).len(), 2);

        let line = |s: &str| Line::parse(s).unwrap();
        let pair = |rt, peer| Pair {
            rt,
            peer: Some(peer),
        };
        let bb = line(
            "bench=dist runtime=beamish peer=beamish roundtrips_per_s=400000 out_of_order=0 \
             all_per_s=1,400000 n=10 window=100 rounds=2 threads=1 nut_threads=1",
        );
        let ee = line(
            "bench=dist runtime=erl peer=erl roundtrips_per_s=80000 out_of_order=3 \
             all_per_s=80000,2 n=10 window=100 rounds=2",
        );
        let be = line(
            "bench=dist runtime=beamish peer=erl roundtrips_per_s=100000 out_of_order=1 \
             all_per_s=100000,3 n=10 window=100 rounds=2 nut_threads=1",
        );
        assert!(pair(Runtime::Beamish, Peer::Erl).owns(dist, &be));
        assert!(!pair(Runtime::Beamish, Peer::Erl).owns(dist, &bb));
        assert!(
            !Pair {
                rt: Runtime::Beamish,
                peer: None
            }
            .owns(dist, &bb)
        );
        let results = [
            (pair(Runtime::Beamish, Peer::Beamish), Some(bb)),
            (pair(Runtime::Erl, Peer::Erl), Some(ee)),
            (pair(Runtime::Beamish, Peer::Erl), Some(be)),
        ];
        assert_eq!(
            ratio_lines(&results),
            [
                "bench=dist runtime=beamish/erl peer=erl/erl roundtrips_per_s=1.25",
                "bench=dist runtime=beamish/erl peer=beamish/erl roundtrips_per_s=5.00"
            ]
        );
        // A failed reference: no ratios.
        let failed = [(results[0].0, results[0].1.clone()), (results[1].0, None)];
        assert!(ratio_lines(&failed).is_empty());
    }
}
