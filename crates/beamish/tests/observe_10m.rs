//! Observing a node with ten million processes (the edge case):
//! a sample through the observer endpoint (what `beamish observer` calls,
//! here in-process) counts all of them, ranks the top ten by mailbox and
//! by memory from one pass over the table, and leaves the node working.
//! Its own file, so that no other test shares the process's memory.
//!
//! The documented outcome: a refresh is one pass over the table, linear
//! in the processes (the figures are printed, not asserted: the machines
//! are shared); rows are capped at `MAX_TOP` whatever the caller asks.

use std::time::{Duration, Instant};

use beamish::dist::Term;
use beamish::observe::serve::{self, MAX_TOP};
use beamish::observe::{Observer, os_rss};
use beamish::{Runtime, receive};

const N: usize = 10_000_000;

fn field<'a>(t: &'a Term, key: &str) -> &'a Term {
    t.map_get(&Term::atom(key).unwrap())
        .unwrap_or_else(|| panic!("no {key} in the sample"))
}

#[test]
// Ten million spawns take minutes unoptimised; the release run of the
// test suite runs it.
#[cfg_attr(debug_assertions, ignore = "run by the release test run")]
fn a_node_with_ten_million_processes() {
    let rt = Runtime::builder().worker_threads(2).build().unwrap();
    rt.block_on(async {
        let started = Instant::now();
        for _ in 0..N {
            beamish::spawn(async { receive::<()>().await });
        }
        let spawned = started.elapsed();
        // One process with a mailbox, to be found among ten million.
        let full = beamish::spawn(async {
            receive::<()>().await;
        });
        for i in 0..500u32 {
            full.send(i);
        }
        serve::install(false).unwrap();
        // Twice: the first sample switches accounting on.
        let mut took = Vec::new();
        let mut answer = Term::Nil;
        for _ in 0..2 {
            let t = Instant::now();
            answer = serve::call("sample", vec![Term::Int(10)]).await.unwrap();
            took.push(t.elapsed());
        }
        let Term::Int(processes) = *field(&answer, "processes") else {
            panic!("processes is not a number");
        };
        assert!(processes as usize > N, "{processes}");
        let queue = field(&answer, "message_queue").as_list().unwrap();
        // Only processes with messages waiting are ranked by mailbox.
        assert_eq!(queue.len(), 1);
        let first = queue[0].as_tuple().unwrap();
        assert_eq!(first[0], Term::Pid(full));
        assert_eq!(first[4], Term::Int(500));
        assert_eq!(field(&answer, "memory_top").as_list().unwrap().len(), 10);

        // A caller asking for ten million rows gets MAX_TOP.
        let big = serve::call("sample", vec![Term::Int(N as i64)])
            .await
            .unwrap();
        assert_eq!(field(&big, "memory_top").as_list().unwrap().len(), MAX_TOP);

        // The node still answers: a process among them gets a message.
        let mut obs = Observer::current().unwrap();
        let t = Instant::now();
        let s = obs.sample_async(10).await;
        let own = t.elapsed();
        assert!(s.system.processes > N);
        let me = beamish::self_pid();
        let echo = beamish::spawn(async move {
            let n: u64 = receive().await;
            me.send(n + 1);
        });
        echo.send(41u64);
        let got = beamish::receive::<u64>()
            .timeout(Duration::from_secs(30))
            .await;
        assert_eq!(got, Some(42));
        println!(
            "{N} processes: spawned in {spawned:?}; endpoint samples took {took:?}; \
             an Observer's sample_async {own:?}; rss {:.2} GB",
            os_rss().unwrap_or(0) as f64 / 1e9
        );
    })
    .unwrap();
}
