//! `beamish observer` against real nodes, each an OS process on a private
//! EPMD, driven as a person would.
//!
//! `--once`: a `beamish node` and an `erl` node give the same summary and
//! top lists; a wrong cookie, an unknown node and a node killed between
//! the two samples give a clear error and a failure status.
//!
//! The terminal UI, in tmux (send-keys, capture-pane): pages, sort and
//! filter, the process page with a live trace, kill, the applications
//! page, a 20×10 terminal, two observers at once, the observed node dying,
//! and `q`; and the same UI opened by a program on itself
//! (`examples/observer_embedded`, no distribution).

#[path = "../../beamish/tests/support/erl.rs"]
mod erl;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use erl::{Epmd, ErlNode, Proc, example_binary_with, node_name, unique_name};

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

/// A tmux session running one command, killed when dropped.
struct Tmux {
    session: String,
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (scripts/install_tools.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Tmux {
    fn start(epmd: &Epmd, node: &str) -> Tmux {
        Tmux::run(&format!(
            "ERL_EPMD_PORT={} '{}' observer --node {node} --cookie {COOKIE} --interval 300",
            epmd.port(),
            env!("CARGO_BIN_EXE_beamish")
        ))
    }

    /// Runs `cmd` (a shell command line) in a new 120×40 session.
    fn run(cmd: &str) -> Tmux {
        let session = unique_name("tui");
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "120",
                "-y",
                "40",
                cmd,
            ])
            .status()
            .expect("tmux is installed (scripts/install_tools.sh)");
        assert!(status.success());
        tmux(&["set-option", "-t", &session, "remain-on-exit", "on"]);
        Tmux { session }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            tmux(&["send-keys", "-t", &self.session, k]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.session])
    }

    /// Waits until the screen shows every needle.
    fn expect(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if needles.iter().all(|n| s.contains(n)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {needles:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Presses `q` and waits for the command to end.
    fn quit(&self) {
        self.keys(&["q"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.dead() {
            assert!(
                Instant::now() < deadline,
                "q did not end it:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dead(&self) -> bool {
        tmux(&["list-panes", "-t", &self.session, "-F", "#{pane_dead}"]).trim() == "1"
    }

    fn resize(&self, w: u16, h: u16) {
        tmux(&[
            "resize-window",
            "-t",
            &self.session,
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
        ]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.session]);
    }
}

#[test]
fn the_ui_against_a_beamish_node() {
    let epmd = Epmd::start();
    let (mut node, name) = beamish_node(&epmd);
    let ui = Tmux::start(&epmd, &name);
    ui.expect(&[
        "1 System",
        "(beamish)",
        "processes",
        "schedulers",
        "load %",
        "memory MB",
        "rss",
    ]);
    // A second observer at once.
    let other = Tmux::start(&epmd, &name);
    other.expect(&["(beamish)", "processes"]);

    ui.keys(&["2"]);
    ui.expect(&["processes by recent reductions", "echo", "net_kernel"]);
    ui.keys(&["m"]);
    ui.expect(&["processes by memory"]);
    ui.keys(&["/", "e", "c", "h", "o", "Enter"]);
    let s = ui.expect(&["filter: echo"]);
    assert!(!s.contains("net_kernel"), "{s}");
    ui.keys(&["Enter"]);
    ui.expect(&["registered_name: echo", "mailbox_head"]);
    ui.keys(&["t"]);
    ui.expect(&["trace (on", "tracing"]);
    // Traffic for the traced process: an erl node calls the echo service.
    let mut caller = ErlNode::builder(&epmd, "tui_caller")
        .cookie(COOKIE)
        .eval(&format!(
            "[begin {{echo, '{name}'}} ! {{self(), N, hello}}, receive {{N, hello}} -> ok end end \
             || N <- lists:seq(1, 5)], io:format(\"PASS sent~n\")"
        ))
        .start();
    caller.expect_pass(Duration::from_secs(20));
    // Its requests and its replies (the observer's own process_info
    // requests are not traced as its sends).
    let s = ui.expect(&["Receive", "Send"]);
    assert!(!s.contains("InfoReply"), "{s}");

    // The terminal shrinks to 20×10 and grows again: it keeps running.
    ui.resize(20, 10);
    std::thread::sleep(Duration::from_millis(700));
    assert!(!ui.dead(), "{}", ui.screen());
    ui.resize(120, 40);
    ui.expect(&["trace (on"]);

    // Kill the echo process from the UI.
    ui.keys(&["K"]);
    ui.expect(&["kill the selected process? y/n"]);
    ui.keys(&["y"]);
    ui.expect(&["the process has ended"]);

    ui.keys(&["4"]);
    ui.expect(&["applications", "no applications"]);

    // The node dies: the last figures stay, the error shows, no crash.
    node.kill();
    ui.keys(&["1"]);
    ui.expect(&["error: cannot reach", "(beamish)"]);
    assert!(!ui.dead());
    ui.quit();
    drop(other);
}

#[test]
fn the_ui_against_an_erl_node() {
    let epmd = Epmd::start();
    let mut node = ErlNode::builder(&epmd, "tui_erl")
        .cookie(COOKIE)
        .eval(
            "register(busy_mailbox, spawn(fun() -> receive never -> ok end end)), \
             [busy_mailbox ! {hello, N} || N <- lists:seq(1, 300)], \
             io:format(\"PASS ready~n\")",
        )
        .start();
    node.expect_pass(Duration::from_secs(20));
    let ui = Tmux::start(&epmd, node.node());
    ui.expect(&["(erl)", "processes_used", "total"]);
    ui.keys(&["2", "u"]);
    let s = ui.expect(&["processes by message queue", "busy_mailbox"]);
    let first = s.lines().find(|l| l.contains("<0.")).unwrap_or_default();
    assert!(
        first.contains("busy_mailbox") && first.contains("300"),
        "{s}"
    );
    ui.keys(&["Enter"]);
    ui.expect(&["message_queue_len: 300", "current_function"]);
    ui.keys(&["4"]);
    ui.expect(&["kernel", "kernel_sup (supervisor)", "code_server"]);
    ui.keys(&["q"]);
}

/// The UI of a program that observes itself (`observe::console` over
/// `Target::Local`): its application, its busy and its full-mailbox
/// processes, kill and trace in-process, and `q` gives the terminal back
/// and ends the program.
#[test]
fn the_ui_embedded_in_a_program() {
    let bin = example_binary_with("observer_embedded", &["console"]);
    // `--once` first: the text summary of the program itself.
    let out = Command::new(&bin)
        .arg("--once")
        .output()
        .expect("runs the example");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.starts_with("node nonode@nohost (beamish)"),
        "{stdout}"
    );
    assert!(stdout.contains("processes 1000"), "{stdout}");
    let busiest = section(&stdout, "top by reductions");
    assert!(
        busiest.first().is_some_and(|l| l.contains("prices")),
        "{stdout}"
    );
    let queued = section(&stdout, "top by message queue");
    assert!(
        queued
            .first()
            .is_some_and(|l| l.contains("inbox") && l.contains(" 300 ")),
        "{stdout}"
    );

    let ui = Tmux::run(&format!("'{}'", bin.display()));
    ui.expect(&["1 System", "nonode@nohost (beamish)", "processes", "load %"]);
    ui.keys(&["2"]);
    ui.expect(&["processes by recent reductions", "prices"]);
    ui.keys(&["u"]);
    ui.expect(&["processes by message queue", "inbox"]);
    ui.keys(&["/", "p", "r", "i", "c", "e", "s", "Enter"]);
    let s = ui.expect(&["filter: prices"]);
    assert!(!s.contains("inbox"), "{s}");
    ui.keys(&["Enter"]);
    ui.expect(&["registered_name: prices", "mailbox_head"]);
    ui.keys(&["t"]);
    // Each round it sends itself a tick and takes it; the observer's own
    // process_info requests are not traced as its sends.
    let s = ui.expect(&["trace (on", "Receive", "Tick"]);
    assert!(!s.contains("InfoReply"), "{s}");
    ui.keys(&["4"]);
    ui.expect(&["shop", "prices", "pool"]);
    // Kill it from the UI: its supervisor starts it again.
    ui.keys(&["3", "K"]);
    ui.expect(&["kill the selected process? y/n"]);
    ui.keys(&["y"]);
    ui.expect(&["the process has ended"]);
    ui.keys(&["4"]);
    ui.expect(&["prices", "restarts=1"]);
    ui.quit();
}
