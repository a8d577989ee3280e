//! Self-test of `tests/support/erl.rs` and `scripts/interop/`: real `erl`
//! nodes on a private `epmd` find and ping each other, a wrong cookie gets
//! `pang`, dropping the handles leaves no process behind, and the contract
//! suite passes against its `erl` reference node. If this fails, the Erlang
//! installation or the harness is broken, not beamish.

mod support;

use std::time::Duration;

use support::erl::{Epmd, ErlNode, Proc, repo_root};

/// Bound on a node's start-up and on each exchange (erl starts in about a
/// second; CI machines can be much slower).
const TIMEOUT: Duration = Duration::from_secs(60);

/// An `-eval` snippet that prints `ready` once the node is distributed.
const READY: &str = r#"io:format("ready ~s~n", [node()])."#;

/// An `-eval` snippet that pings `target` and prints `PASS` when the answer is
/// `expect`.
fn ping(target: &str, expect: &str) -> String {
    format!(
        r#"case net_adm:ping('{target}') of
               {expect} -> io:format("PASS ping ~s: {expect}~n", ['{target}']);
               Other -> io:format("FAIL ping ~s: ~p~n", ['{target}', Other])
           end."#
    )
}

#[test]
fn two_erl_nodes_ping_each_other_on_a_private_epmd() {
    let epmd = Epmd::start();
    let mut a = ErlNode::builder(&epmd, "harness_a").eval(READY).start();
    a.expect_line("ready", TIMEOUT);
    let names = epmd.names();
    let short = a.node().split('@').next().unwrap();
    assert!(
        names.contains(&format!("name {short} at port")),
        "epmd -names does not list {short}:\n{names}"
    );

    let mut b = ErlNode::builder(&epmd, "harness_b")
        .eval(&ping(a.node(), "pong"))
        .start();
    let line = b.expect_pass(TIMEOUT);
    println!("{line}");
}

#[test]
fn a_wrong_cookie_gets_pang() {
    let epmd = Epmd::start();
    let mut a = ErlNode::builder(&epmd, "harness_c")
        .cookie("right")
        .eval(READY)
        .start();
    a.expect_line("ready", TIMEOUT);
    let mut b = ErlNode::builder(&epmd, "harness_d")
        .cookie("wrong")
        .eval(&ping(a.node(), "pang"))
        .start();
    let line = b.expect_pass(TIMEOUT);
    println!("{line}");
}

#[test]
fn dropping_the_handles_kills_the_nodes_and_epmd() {
    let mut epmd = Epmd::start();
    let mut a = ErlNode::builder(&epmd, "harness_e").eval(READY).start();
    a.expect_line("ready", TIMEOUT);
    let pids = [a.os_pid(), epmd.proc().os_pid()];
    drop(a);
    drop(epmd);
    for pid in pids {
        let pid = libc::pid_t::try_from(pid).unwrap();
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "process {pid} survived its handle");
    }
    println!("PASS drop kills erl and epmd");
}

/// `contract.escript` against `erl_contract_nut.sh` (an `erl` node that
/// implements the contract) passes, apart from the one documented difference
/// of OTP 25's `erl`: it registers with EPMD as versions 5..6, not 6..6.
#[test]
fn the_contract_suite_passes_against_the_erl_reference() {
    let epmd = Epmd::start();
    let interop = repo_root().join("scripts/interop");
    let mut cmd = epmd.escript(interop.join("contract.escript"));
    cmd.args(["--skip", "start.epmd_registration"])
        .arg(interop.join("erl_contract_nut.sh"));
    let mut suite = Proc::spawn("contract.escript", cmd);
    // The header names the nodes and the EPMD port.
    println!("{}", suite.expect_line("contract: ", TIMEOUT));
    let status = suite
        .wait_exit(Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    let output = suite.output();
    assert!(
        status.success(),
        "contract.escript exited with {status}:\n{output}"
    );
    assert!(
        output.contains("PASS dist.nodedown_when_nut_killed.nodedown"),
        "the suite did not run to its last check:\n{output}"
    );
    let last = output
        .lines()
        .rev()
        .find(|l| l.contains("passed"))
        .unwrap_or("");
    println!("PASS contract suite against erl:{last}");
}
