//! The `gen_call` and `erpc` workloads: OTP calls from one node into
//! another, `n` calls per round made by `callers` processes at once (each
//! waits for its reply before its next call). The figure is the best
//! round's calls per second.
//!
//! - `gen_call`: `gen_server:call({bench_kv, Nut}, {echo, I})` → `{ok, I}`;
//!   from a beamish node, the same call typed
//!   (`Server::<BenchKv>::remote(..).call(BenchCall::Echo(i))`).
//! - `erpc`: `erpc:call(Nut, beamish_bench, echo, [I])` → `I`; from a
//!   beamish node, `beamish::rpc::call`.
//!
//! - `cluster`: three nodes (two under test, one driving), all running
//!   `global` and `pg`: the mean latency of `global:register_name` (and
//!   `unregister_name`) from the driver, and of a `pg:join` there until a
//!   node under test's `pg:get_members` (asked by erpc) shows it. The
//!   figures are the best round's means, in microseconds.
//!
//! The node under test serves them all: `beamish node --bench-services` (see
//! `bench_services`), or for erl↔erl `scripts/interop/erl_otp_nut.sh`
//! (`beamish_bench.erl`). The three pairs are those of `dist`: a node in
//! this process driving `beamish node`, and `otp_bench.escript` driving an
//! erl node or `beamish node`.

use std::time::Instant;

use beamish::dist::{self, Atom, NodeConfig, Term};
use beamish::otp::Server;
use beamish::{Pid, Runtime as BeamishRuntime};

use super::dist::{
    COOKIE, NodeProcess, erl_missing, free_port, interop_file, run_escript, shell_word, threads,
};
use super::{Args, Peer, Report, Runtime};
use crate::bench_services::{BENCH_KV, BenchCall, BenchKv, BenchReply, ECHO_MFA};

/// The escript that drives the erl-peered runs.
pub const OTP_BENCH: &str = "otp_bench.escript";
/// The erl node of the erl↔erl baseline.
pub const ERL_OTP_NUT: &str = "erl_otp_nut.sh";

/// Calls made before the timed rounds (at most; as `otp_bench.escript`).
const WARMUP_CALLS: u64 = 1_000;

/// Which OTP call a workload makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    GenCall,
    Erpc,
    Cluster,
}

impl Op {
    fn escript_mode(self) -> &'static str {
        match self {
            Op::GenCall => "gen_call",
            Op::Erpc => "erpc",
            Op::Cluster => "cluster",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Size {
    n: u64,
    callers: u64,
    rounds: u64,
    threads: usize,
    nut_threads: usize,
}

impl Size {
    fn from_args(args: &Args, op: Op) -> Result<Size, String> {
        let cluster = op == Op::Cluster;
        Ok(Size {
            n: args.num("n", if cluster { 200 } else { 20_000 })?,
            callers: if cluster { 1 } else { args.num("callers", 1)? },
            rounds: args.num("rounds", 3)?,
            threads: threads(args.num("threads", 1)?),
            nut_threads: threads(args.num("nut_threads", 1)?),
        })
    }

    /// Calls per caller (at least one): every round makes `each * callers`.
    fn each(&self) -> u64 {
        (self.n / self.callers.max(1)).max(1)
    }
}

/// Runs workload `name` for the pair (`rt` serves, `peer` calls).
pub fn run(name: &str, rt: Runtime, peer: Peer, args: &Args) -> Result<Report, String> {
    let op = match name {
        "gen_call" => Op::GenCall,
        "erpc" => Op::Erpc,
        "cluster" => Op::Cluster,
        other => return Err(format!("{other} is not an OTP call workload")),
    };
    let size = Size::from_args(args, op)?;
    if op == Op::Cluster {
        return cluster(rt, peer, size);
    }
    let rates = match (rt, peer) {
        (Runtime::Beamish, Peer::Beamish) => beamish_pair(op, size)?,
        (Runtime::Beamish, Peer::Erl) => escript_pair(op, false, size)?,
        (Runtime::Erl, Peer::Erl) => escript_pair(op, true, size)?,
        (rt, peer) => {
            return Err(format!(
                "no pair of a {} node and a {} peer",
                rt.name(),
                peer.name()
            ));
        }
    };
    let best = rates.iter().copied().max().unwrap_or(0);
    let all: Vec<String> = rates.iter().map(u64::to_string).collect();
    let mut report = Report::new()
        .with("calls_per_s", best)
        .with("all_per_s", all.join(","))
        .with("n", size.each() * size.callers)
        .with("callers", size.callers)
        .with("rounds", size.rounds);
    if rt == Runtime::Beamish {
        report.push("nut_threads", size.nut_threads);
    }
    if peer == Peer::Beamish {
        report.push("threads", size.threads);
    }
    Ok(report)
}

// ------------------------------------------------------------ beamish↔beamish

fn beamish_pair(op: Op, size: Size) -> Result<Vec<u64>, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable to start a node: {e}"))?;
    let port = free_port()?;
    let tag = std::process::id();
    let nut_name = format!("bench_otp_{tag}@127.0.0.1");
    let nut = NodeProcess::start(
        &exe,
        &nut_name,
        port,
        size.nut_threads,
        &["--bench-services"],
    )?;
    let rt = BeamishRuntime::builder()
        .worker_threads(size.threads)
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    let result = rt.block_on(async move {
        let config = NodeConfig::new(format!("bench_otp_drive_{tag}@127.0.0.1"), COOKIE)
            .epmd_port(port)
            .embedded_epmd(false);
        dist::start(config)
            .await
            .map_err(|e| format!("cannot start this node: {e}"))?;
        let nut = Atom::new(&nut_name).map_err(|e| format!("bad node name {nut_name}: {e}"))?;
        let warm = Size {
            n: WARMUP_CALLS.min(size.n),
            ..size
        };
        beamish_round(op, nut, warm).await?;
        let mut rates = Vec::new();
        for _ in 0..size.rounds {
            rates.push(beamish_round(op, nut, size).await?);
        }
        Ok::<_, String>(rates)
    });
    // As in `dist`: the OS process exits right after the report.
    std::mem::forget(rt);
    drop(nut);
    result.map_err(|reason| format!("driver process ended: {reason}"))?
}

/// One round from this node: calls per second.
async fn beamish_round(op: Op, nut: Atom, size: Size) -> Result<u64, String> {
    let me = beamish::self_pid();
    let each = size.each();
    let t0 = Instant::now();
    let callers: Vec<Pid> = (0..size.callers)
        .map(|_| {
            beamish::spawn(async move {
                let outcome = caller(op, nut, each).await;
                me.send(Done(outcome));
            })
        })
        .collect();
    for _ in &callers {
        let Done(outcome) = beamish::receive::<Done>()
            .timeout(std::time::Duration::from_secs(60))
            .await
            .ok_or("a caller stalled")?;
        outcome?;
    }
    let us = t0.elapsed().as_micros().max(1);
    let calls = u128::from(each * size.callers);
    Ok(u64::try_from((calls * 1_000_000 + us / 2) / us).unwrap_or(u64::MAX))
}

/// A caller's end: `Err` if a call failed or gave the wrong answer.
struct Done(Result<(), String>);

async fn caller(op: Op, nut: Atom, each: u64) -> Result<(), String> {
    let server = Server::<BenchKv>::remote(Atom::new(BENCH_KV).map_err(|e| e.to_string())?, nut);
    for i in 0..each {
        let i = i64::try_from(i).unwrap_or(i64::MAX);
        match op {
            Op::GenCall => match server.call(BenchCall::Echo(i)).await {
                Ok(BenchReply::Ok(j)) if j == i => {}
                other => return Err(format!("bench_kv answered {other:?}")),
            },
            Op::Erpc => {
                match beamish::rpc::call(nut, ECHO_MFA.0, ECHO_MFA.1, vec![Term::Int(i)]).await {
                    Ok(Term::Int(j)) if j == i => {}
                    other => return Err(format!("erpc answered {other:?}")),
                }
            }
            Op::Cluster => return Err("cluster makes no calls".into()),
        }
    }
    Ok(())
}

// ------------------------------------------------------------ cluster

/// `cluster` for the pair: rounds of (register µs, pg join µs).
fn cluster(rt: Runtime, peer: Peer, size: Size) -> Result<Report, String> {
    let rounds = match (rt, peer) {
        (Runtime::Beamish, Peer::Beamish) => beamish_cluster(size)?,
        (Runtime::Beamish, Peer::Erl) => escript_cluster(false, size)?,
        (Runtime::Erl, Peer::Erl) => escript_cluster(true, size)?,
        (rt, peer) => {
            return Err(format!(
                "no pair of {} nodes and a {} peer",
                rt.name(),
                peer.name()
            ));
        }
    };
    let best = |f: fn(&(u64, u64)) -> u64| rounds.iter().map(f).min().unwrap_or(0);
    let all: Vec<String> = rounds.iter().map(|(r, p)| format!("{r}/{p}")).collect();
    Ok(Report::new()
        .with("register_us", best(|r| r.0))
        .with("pg_join_us", best(|r| r.1))
        .with("all_register_pg", all.join(","))
        .with("n", size.n)
        .with("rounds", size.rounds))
}

fn escript_cluster(erl_nut: bool, size: Size) -> Result<Vec<(u64, u64)>, String> {
    let args = [
        "cluster".to_owned(),
        nut_cmd(erl_nut, size)?,
        size.n.to_string(),
        "1".to_owned(),
        size.rounds.to_string(),
    ];
    let out = run_escript(OTP_BENCH, &args)?;
    let rounds: Vec<(u64, u64)> = out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let r = w.next()?.strip_prefix("register_us=")?.parse().ok()?;
            let p = w.next()?.strip_prefix("pg_join_us=")?.parse().ok()?;
            Some((r, p))
        })
        .collect();
    if rounds.len() as u64 != size.rounds {
        return Err(format!(
            "{OTP_BENCH} printed {} rounds of {}",
            rounds.len(),
            size.rounds
        ));
    }
    Ok(rounds)
}

/// Two `beamish node --bench-services` and a node in this process.
fn beamish_cluster(size: Size) -> Result<Vec<(u64, u64)>, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable to start a node: {e}"))?;
    let port = free_port()?;
    let tag = std::process::id();
    let names: Vec<String> = (1..=2)
        .map(|k| format!("bench_cluster{k}_{tag}@127.0.0.1"))
        .collect();
    let nuts = names
        .iter()
        .map(|n| NodeProcess::start(&exe, n, port, size.nut_threads, &["--bench-services"]))
        .collect::<Result<Vec<_>, _>>()?;
    let rt = BeamishRuntime::builder()
        .worker_threads(size.threads)
        .build()
        .map_err(|e| format!("cannot build the runtime: {e}"))?;
    let result = rt.block_on(async move {
        let config = NodeConfig::new(format!("bench_cluster_drive_{tag}@127.0.0.1"), COOKIE)
            .epmd_port(port)
            .embedded_epmd(false);
        dist::start(config)
            .await
            .map_err(|e| format!("cannot start this node: {e}"))?;
        beamish::global::start().await.map_err(|e| e.to_string())?;
        beamish::pg::start().map_err(|e| e.to_string())?;
        let atom = |s: &str| Atom::new(s).map_err(|e| e.to_string());
        let mut nodes = Vec::new();
        for n in &names {
            let node = atom(n)?;
            // Connect (any message does), then wait for global's sync.
            dist::send_named(atom("nobody")?, node, Term::Nil);
            let name = Term::Tuple(vec![Term::Atom(atom("bench_node")?), Term::Atom(node)]);
            let t0 = Instant::now();
            while beamish::global::whereis_name(&name).is_none() {
                if t0.elapsed() > std::time::Duration::from_secs(30) {
                    return Err(format!("global never showed {name}"));
                }
                beamish::sleep(std::time::Duration::from_millis(20)).await;
            }
            nodes.push(node);
        }
        let far = nodes[0];
        cluster_round(far, size.n.min(100), 0).await?;
        let mut rounds = Vec::new();
        for r in 1..=size.rounds {
            rounds.push(cluster_round(far, size.n, r).await?);
        }
        Ok::<_, String>(rounds)
    });
    std::mem::forget(rt);
    drop(nuts);
    result.map_err(|reason| format!("driver process ended: {reason}"))?
}

/// As `otp_bench.escript`'s `cluster_round`: mean µs of a register +
/// unregister, and of a join until `far` sees it.
async fn cluster_round(far: Atom, n: u64, round: u64) -> Result<(u64, u64), String> {
    let me = beamish::self_pid();
    let key = |what: &str, i: u64| {
        Term::Tuple(vec![
            Term::atom(what).unwrap_or(Term::Nil),
            Term::Int(round as i64),
            Term::Int(i as i64),
        ])
    };
    let t0 = Instant::now();
    for i in 0..n {
        let name = key("bench_name", i);
        beamish::global::register_name(name.clone(), me)
            .await
            .map_err(|e| format!("register_name: {e}"))?;
        let _ = beamish::global::unregister_name(&name).await;
    }
    let register = t0.elapsed().as_micros() as u64 / n.max(1);
    let mut joins = 0u64;
    for i in 0..n {
        let group = key("bench_group", i);
        let s = Instant::now();
        beamish::pg::join(group.clone(), me)
            .await
            .map_err(|e| format!("pg join: {e}"))?;
        loop {
            match beamish::rpc::call(far, "pg", "get_members", vec![group.clone()]).await {
                Ok(ms) if ms.as_list().is_some_and(|ms| ms.contains(&Term::Pid(me))) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("pg:get_members on {far}: {e}")),
            }
        }
        joins += s.elapsed().as_micros() as u64;
        let _ = beamish::pg::leave(group, me).await;
    }
    Ok((register, joins / n.max(1)))
}

/// The command line of a node under test for `otp_bench.escript`.
fn nut_cmd(erl_nut: bool, size: Size) -> Result<String, String> {
    if erl_nut {
        return shell_word(&interop_file(ERL_OTP_NUT)?);
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this executable to start a node: {e}"))?;
    Ok(format!(
        "{} node --bench-services --threads {}",
        shell_word(&exe)?,
        size.nut_threads
    ))
}

// ------------------------------------------------------------- erl-peered runs

/// `escript otp_bench.escript MODE NUT_CMD n callers rounds` against a
/// private `epmd`; `erl_nut` picks the erl node, else `beamish node`.
fn escript_pair(op: Op, erl_nut: bool, size: Size) -> Result<Vec<u64>, String> {
    if let Some(why) = erl_missing() {
        return Err(why);
    }
    let nut_cmd = nut_cmd(erl_nut, size)?;
    let args = [
        op.escript_mode().to_owned(),
        nut_cmd,
        (size.each() * size.callers).to_string(),
        size.callers.to_string(),
        size.rounds.to_string(),
    ];
    let rates = parse_escript(&run_escript(OTP_BENCH, &args)?);
    if rates.len() as u64 != size.rounds {
        return Err(format!(
            "{OTP_BENCH} printed {} rounds of {}",
            rates.len(),
            size.rounds
        ));
    }
    Ok(rates)
}

/// The `calls_per_s=R` lines of `otp_bench.escript`.
fn parse_escript(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("calls_per_s=")?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escript_output() {
        let out = "calls_per_s=12000\ncalls_per_s=14000\nbest_calls_per_s=14000\n";
        assert_eq!(parse_escript(out), [12000, 14000]);
        assert!(parse_escript("stalled\n").is_empty());
    }

    #[test]
    fn callers_share_the_calls() {
        let s = Size {
            n: 1000,
            callers: 100,
            rounds: 1,
            threads: 1,
            nut_threads: 1,
        };
        assert_eq!(s.each(), 10);
        assert_eq!(Size { n: 5, ..s }.each(), 1, "at least one call each");
    }
}
