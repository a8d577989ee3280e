//! A program that opens the observer on itself: the terminal UI of
//! `beamish observer` over this program's own runtime, with no
//! distribution and no second process.
//!
//! ```text
//! cargo run --release --example observer_embedded --features console
//! cargo run --release --example observer_embedded --features console -- --once
//! ```
//!
//! The program runs a small shop: an application `shop` whose supervisor
//! has a worker pool and a `prices` process that keeps busy, a registered
//! `inbox` with a few hundred messages waiting, and ten thousand idle
//! processes. Without arguments it shows the UI until `q`; with `--once`
//! it prints the text summary (two samples 1.2 s apart) and exits.

use std::time::Duration;

use beamish::observe::console::{self, Target};
use beamish::otp::{Application, ChildSpec, Strategy, SupervisorFlags};
use beamish::{Error, receive};

/// A price update, which `prices` sends itself after each round.
#[derive(Debug)]
struct Tick;

/// Computes, takes a message, sleeps a little: a process that shows up at
/// the top by reductions, with sends and receives to trace.
async fn prices() {
    let me = beamish::self_pid();
    loop {
        for _ in 0..200 {
            beamish::reduce(10).await;
        }
        me.send(Tick);
        receive::<Tick>().await;
        beamish::sleep(Duration::from_millis(1)).await;
    }
}

fn main() -> Result<(), Error> {
    let once = std::env::args().any(|a| a == "--once");
    let rt = beamish::Runtime::builder().worker_threads(2).build()?;
    // The program's own processes. The application and the spawned
    // processes live on after this block returns.
    rt.block_on(async {
        let busy = ChildSpec::worker("prices", || async {
            let pid = beamish::spawn_link(prices());
            beamish::register("prices", pid)?;
            Ok(pid)
        });
        let pool = ChildSpec::worker("pool", || async {
            Ok(beamish::spawn_link(async { receive::<()>().await }))
        });
        let app = Application::start(
            "shop",
            SupervisorFlags::new(Strategy::OneForOne),
            vec![busy, pool],
        )
        .await?;
        // The application keeps running; this block does not own it.
        std::mem::forget(app);
        let inbox = beamish::spawn(async {
            // Reads nothing for an hour: its mailbox fills.
            beamish::sleep(Duration::from_secs(3600)).await;
        });
        beamish::register("inbox", inbox)?;
        for n in 0..300u32 {
            inbox.send(n);
        }
        for _ in 0..10_000 {
            beamish::spawn(async { receive::<()>().await });
        }
        Ok::<(), Error>(())
    })
    .map_err(Error::Exited)??;
    if once {
        let text = rt
            .block_on(console::summary(
                Target::Local,
                10,
                // Past the first reductions window (1 s), which the first
                // sample opens.
                Duration::from_millis(1200),
            ))
            .map_err(Error::Exited)??;
        print!("{text}");
        return Ok(());
    }
    console::run(&rt.handle(), Target::Local, Duration::from_millis(500))
}
