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
//! The node under test serves both: `beamish node --bench-services` (see
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
}

impl Op {
    fn escript_mode(self) -> &'static str {
        match self {
            Op::GenCall => "gen_call",
            Op::Erpc => "erpc",
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
    fn from_args(args: &Args) -> Result<Size, String> {
        Ok(Size {
            n: args.num("n", 20_000)?,
            callers: args.num("callers", 1)?,
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
        other => return Err(format!("{other} is not an OTP call workload")),
    };
    let size = Size::from_args(args)?;
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
                match beamish::rpc::call_timeout(
                    nut,
                    ECHO_MFA.0,
                    ECHO_MFA.1,
                    vec![Term::Int(i)],
                    std::time::Duration::from_secs(5),
                )
                .await
                {
                    Ok(Term::Int(j)) if j == i => {}
                    other => return Err(format!("erpc answered {other:?}")),
                }
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------- erl-peered runs

/// `escript otp_bench.escript MODE NUT_CMD n callers rounds` against a
/// private `epmd`; `erl_nut` picks the erl node, else `beamish node`.
fn escript_pair(op: Op, erl_nut: bool, size: Size) -> Result<Vec<u64>, String> {
    if let Some(why) = erl_missing() {
        return Err(why);
    }
    let nut_cmd = if erl_nut {
        shell_word(&interop_file(ERL_OTP_NUT)?)?
    } else {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this executable to start a node: {e}"))?;
        format!(
            "{} node --bench-services --threads {}",
            shell_word(&exe)?,
            size.nut_threads
        )
    };
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
