//! `beamish observer --once` against real nodes, each an OS process on a
//! private EPMD: a `beamish node` and an `erl` node give the same summary
//! and top lists; a wrong cookie, an unknown node and a node killed between
//! the two samples give a clear error and a failure status.

#[path = "../../beamish/tests/support/erl.rs"]
mod erl;

use std::process::{Command, Output};
use std::time::Duration;

use erl::{Epmd, ErlNode, Proc, node_name, unique_name};

const COOKIE: &str = "observer_cookie";

fn observer(epmd: &Epmd, node: &str, cookie: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamish"));
    cmd.args(["observer", "--node", node, "--cookie", cookie, "--once"])
        .args(extra);
    epmd.configure(&mut cmd);
    cmd.output().expect("runs beamish observer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn beamish_node(epmd: &Epmd) -> (Proc, String) {
    let name = node_name(&unique_name("observed"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamish"));
    cmd.args(["node", "--name", &name, "--cookie", COOKIE]);
    epmd.configure(&mut cmd);
    let mut proc = Proc::spawn(name.clone(), cmd);
    proc.expect_line("ready", Duration::from_secs(20));
    (proc, name)
}

fn erl_node(epmd: &Epmd) -> ErlNode {
    let mut node = ErlNode::builder(epmd, "observed_erl")
        .cookie(COOKIE)
        .eval(
            "register(busy_mailbox, spawn(fun() -> receive never -> ok end end)), \
             [busy_mailbox ! {hello, N} || N <- lists:seq(1, 500)], \
             io:format(\"PASS ready~n\")",
        )
        .start();
    node.expect_pass(Duration::from_secs(20));
    node
}

/// The lines of a `--once` output under its `title` line.
fn section<'a>(out: &'a str, title: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.starts_with(title))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn once_against_a_beamish_node() {
    let epmd = Epmd::start();
    let (_node, name) = beamish_node(&epmd);
    let out = observer(&epmd, &name, COOKIE, &["--interval", "300", "--top", "20"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("node '{name}' (beamish)")),
        "{stdout}"
    );
    assert!(stdout.contains("processes "), "{stdout}");
    assert!(stdout.contains("schedulers "), "{stdout}");
    assert!(
        stdout.contains("memory ") && stdout.contains("rss "),
        "{stdout}"
    );
    // `beamish node` registers the contract's `echo`.
    let by_memory = section(&stdout, "top by memory");
    assert!(by_memory.iter().any(|l| l.contains(" echo ")), "{stdout}");
    assert!(by_memory.iter().all(|l| l.starts_with("<0.")), "{stdout}");
}

#[test]
fn once_against_an_erl_node() {
    let epmd = Epmd::start();
    let node = erl_node(&epmd);
    let out = observer(&epmd, node.node(), COOKIE, &["--interval", "300"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("node '{}' (erl)", node.node())),
        "{stdout}"
    );
    let queue = section(&stdout, "top by message queue");
    let first: Vec<&str> = queue
        .first()
        .expect("a process with messages")
        .split_whitespace()
        .collect();
    assert_eq!((first[1], first[4]), ("busy_mailbox", "500"), "{stdout}");
    let by_memory = section(&stdout, "top by memory");
    assert_eq!(by_memory.len(), 10, "{stdout}");
    assert!(stdout.contains("code_server"), "{stdout}");
    // The erl node's own memory kinds.
    assert!(
        stdout.contains("processes_used ") && stdout.contains("total "),
        "{stdout}"
    );
}

#[test]
fn bad_cookie_unknown_node_and_bad_name_fail_clearly() {
    let epmd = Epmd::start();
    let (_node, name) = beamish_node(&epmd);
    let out = observer(&epmd, &name, "not_the_cookie", &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot reach") && stderr.contains("cookie"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let out = observer(&epmd, "nobody@127.0.0.1", COOKIE, &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot reach 'nobody@127.0.0.1'"));

    let out = observer(&epmd, "no_host", COOKIE, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("name@host"));
}

#[test]
fn a_node_that_dies_between_the_samples() {
    let epmd = Epmd::start();
    let (mut node, name) = beamish_node(&epmd);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_beamish"));
    cmd.args([
        "observer",
        "--node",
        &name,
        "--cookie",
        COOKIE,
        "--once",
        "--interval",
        "1500",
    ]);
    epmd.configure(&mut cmd);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs beamish observer");
    std::thread::sleep(Duration::from_millis(700));
    node.kill();
    let out = child.wait_with_output().expect("the observer ends");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
}
