//! The interop contract suite (`scripts/interop/contract.escript`) against
//! `beamish node`, on a private EPMD: every check must pass, including
//! `start.epmd_registration` (we register as versions 6..6).
//!
//! The tick checks take about 90 s, so they run only in the release test run
//! (`cargo test --release`), in a test of their own.

#[path = "../../beamish/tests/support/erl.rs"]
mod erl;

use std::time::Duration;

use erl::{Epmd, Proc, repo_root};

/// Bound on the whole suite (it takes seconds; the tick checks about 90 s).
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

/// The suite's NUT_CMD: a shell command prefix to which the suite appends
/// `--name N --cookie C`.
fn nut_cmd() -> String {
    let bin = env!("CARGO_BIN_EXE_beamish");
    // Single-quoted for the shell the suite runs it with.
    format!("'{}' node --threads 2", bin.replace('\'', r"'\''"))
}

/// Runs the suite with `args` before NUT_CMD and returns its output; panics
/// with that output unless it exits with status 0.
fn run_suite(args: &[&str]) -> String {
    let epmd = Epmd::start();
    let mut cmd = epmd.escript(repo_root().join("scripts/interop/contract.escript"));
    cmd.args(args).arg(nut_cmd());
    let mut suite = Proc::spawn("contract.escript", cmd);
    let status = suite
        .wait_exit(SUITE_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    // Let the reader take the last lines: wait (briefly) for stdout to close.
    let _ = suite.wait_for_line(Duration::from_secs(5), |_| false);
    let output = suite.output();
    assert!(
        status.success(),
        "contract.escript exited with {status}:\n{output}"
    );
    assert!(
        !output.contains("FAIL"),
        "contract.escript exited with 0 but printed a FAIL:\n{output}"
    );
    drop(suite);
    drop(epmd);
    output
}

/// The line `contract: N passed, 0 failed, M skipped`.
fn summary(output: &str) -> &str {
    output
        .lines()
        .rev()
        .find(|l| l.contains("passed,"))
        .unwrap_or_else(|| panic!("no summary line in the suite's output:\n{output}"))
}

#[test]
fn the_contract_suite_passes_against_beamish_node() {
    let output = run_suite(&[]);
    for check in [
        "PASS start.ready",
        "PASS start.epmd_registration",
        "PASS dist.handshake_flags",
        "PASS echo.roundtrip.",
        "PASS dist.connection_loss.",
        "PASS dist.nodedown_when_nut_killed.link_noconnection",
    ] {
        assert!(
            output.contains(check),
            "the suite did not report {check:?}:\n{output}"
        );
    }
    let summary = summary(&output);
    assert!(
        summary.contains(" 0 failed, 1 skipped"),
        "only dist.ticks may be skipped: {summary}\n{output}"
    );
    println!("{summary}");
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "about 90 s: runs in the release test run (cargo test --release)"
)]
fn the_contract_tick_checks_pass_against_beamish_node() {
    let output = run_suite(&["--ticks", "--only", "dist.ticks"]);
    for check in [
        "PASS dist.ticks.idle_connection_stays_up",
        "PASS dist.ticks.sending_peer_stays_up",
        "PASS dist.ticks.silent_peer_dropped",
    ] {
        assert!(
            output.contains(check),
            "the suite did not report {check:?}:\n{output}"
        );
    }
    assert!(
        !output.contains("SKIP dist.ticks"),
        "dist.ticks was skipped:\n{output}"
    );
    println!("{}", summary(&output));
}
