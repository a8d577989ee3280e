//! `scripts/failover/demo.sh` as a person runs it: three nodes of the
//! `failover` example, a client calling a singleton and eight distributed
//! children, a SIGKILL of the singleton's node and a SIGSTOP/SIGCONT of
//! the next one. The script's own output is what is checked: each fault
//! is followed by the services answering again, with the window and the
//! failed calls printed, and the client's summary.

#[path = "../../beamish/tests/support/erl.rs"]
mod erl;

use std::process::Command;

use erl::{example_binary, repo_root};

/// The figure after `key` in `line` (`key` ends just before it).
fn figure(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[test]
fn the_failover_demo_shows_each_outage() {
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/install_erlang.sh"))
        .status()
        .expect("run install_erlang.sh");
    assert!(status.success(), "installing Erlang (for epmd) failed");
    let bin = example_binary("failover");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/failover/demo.sh"))
        .arg("20")
        .env("FAILOVER_BIN", &bin)
        .output()
        .expect("run demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "demo.sh failed:\n{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{stdout}"))
    };
    let (kill, stop, cont) = (
        at("script: SIGKILL"),
        at("script: SIGSTOP"),
        at("script: SIGCONT"),
    );
    let victim = lines[kill]
        .split_whitespace()
        .nth(3)
        .expect("the killed node");
    // After the kill: the singleton answers again on another node, soon
    // after the nodedown, with the failed calls counted; or, when the
    // takeover was quicker than the calls to it, it moved with no call
    // failed.
    let back = lines[kill..stop]
        .iter()
        .find(|l| {
            l.contains("singleton: answered again on")
                || l.contains(&format!("singleton: moved from {victim} to"))
        })
        .unwrap_or_else(|| panic!("the singleton did not come back after the kill:\n{stdout}"));
    assert!(!back.contains(&format!("on '{victim}'")), "{back}");
    assert!(!back.contains(&format!("to '{victim}'")), "{back}");
    let after_down = back
        .split_once(" ms after the nodedown")
        .and_then(|(before, _)| before.split_whitespace().last())
        .and_then(|ms| ms.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no nodedown window in {back:?}"));
    assert!(after_down < 2000.0, "{back}");
    assert!(
        figure(back, "ms after the nodedown; ").is_some() || back.ends_with("no call failed"),
        "no failed-call count in {back:?}"
    );
    // The stopped node's services answer again elsewhere after the tick
    // timeout; after SIGCONT the client still gets answers.
    assert!(
        lines[stop..cont]
            .iter()
            .any(|l| l.contains("singleton: answered again on")),
        "the singleton did not come back during the stop:\n{stdout}"
    );
    let summary = lines[at("summary: ")];
    let calls = figure(summary, "summary: ").expect("the number of calls");
    assert!(calls > 10_000.0, "{summary}");
    for l in lines.iter().filter(|l| l.starts_with("summary ")) {
        assert!(!l.ends_with("now on ?"), "never answered: {l}");
    }
}
