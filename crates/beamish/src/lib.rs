//! # beamish: Erlang/BEAM-style processes for Rust
//!
//! A [`Runtime`] runs lightweight **processes** on one scheduler thread per
//! core. A process is a Rust future with a mailbox: it has a [`Pid`], talks
//! to others only by messages ([`Pid::send`], [`receive`]), and ends alone
//! when it panics. Links ([`link`], [`spawn_link`]), monitors ([`monitor`])
//! and exit signals ([`Pid::exit`], [`trap_exit`]) follow Erlang's rules, so
//! supervisors can restart what crashed.
//!
//! ```
//! use beamish::{Down, Reason};
//!
//! let rt = beamish::Runtime::new().unwrap();
//! rt.block_on(async {
//!     // An echo server.
//!     let server = beamish::spawn(async {
//!         loop {
//!             let (from, text) = beamish::receive::<(beamish::Pid, String)>().await;
//!             from.send(text.to_uppercase());
//!         }
//!     });
//!     server.send((beamish::self_pid(), String::from("hello")));
//!     assert_eq!(beamish::receive::<String>().await, "HELLO");
//!
//!     // A crash is contained, and observed by a monitor.
//!     let (pid, mref) = beamish::spawn_monitor(async { panic!("boom") });
//!     let down = beamish::receive::<Down>().await;
//!     assert_eq!((down.pid, down.monitor), (pid, mref));
//!     assert!(matches!(down.reason, Reason::Panic(_)));
//! }).unwrap();
//! ```
//!
//! ## Preemption
//!
//! Every runtime operation costs reductions; after about 4000 a process
//! yields at its next await point. A loop that computes without awaiting
//! should call [`reduce`] (or [`yield_now`]) now and then. A process that
//! never awaits cannot be interrupted in Rust; the watchdog reports it
//! ([`LongSchedule`]) and moves the other processes off its thread.
//!
//! ## Async IO
//!
//! With the `tokio` feature (on by default) processes can await tokio's
//! sockets, files and timers: the runtime drives a tokio reactor.

#![warn(missing_docs)]
#![cfg_attr(loom, allow(dead_code))]

mod loom;

#[cfg(all(not(loom), feature = "dist"))]
pub mod cluster;
#[cfg(all(not(loom), feature = "dist"))]
pub mod dist;
#[cfg(not(loom))]
mod error;
#[cfg(all(not(loom), feature = "dist"))]
pub mod global;
#[cfg(not(loom))]
mod mailbox;
#[cfg(not(loom))]
pub mod observe;
#[cfg(not(loom))]
pub mod otp;
#[cfg(all(not(loom), feature = "dist"))]
pub mod pg;
#[cfg(not(loom))]
mod pid;
#[cfg(not(loom))]
mod process;
#[cfg(not(loom))]
mod reason;
#[cfg(not(loom))]
mod reference;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
mod runtime;
#[cfg(not(loom))]
mod scheduler;
#[cfg(not(loom))]
mod signal;
#[cfg(not(loom))]
mod timer;
#[cfg(not(loom))]
pub mod trace;
#[cfg(not(loom))]
mod yielding;

#[cfg(loom)]
#[path = ""]
mod loom_models {
    //! Under `--cfg loom` only the lock-free pieces are built, with their models.
    #[path = "scheduler/idle.rs"]
    pub(crate) mod idle;
    #[path = "scheduler/idle_clock.rs"]
    pub(crate) mod idle_clock;
    #[path = "mailbox/inbound.rs"]
    pub(crate) mod inbound;
    #[path = "mailbox/node.rs"]
    pub(crate) mod node;
    #[path = "scheduler/park.rs"]
    pub(crate) mod park;
    #[path = "process/state.rs"]
    pub(crate) mod state;
    #[path = "loom_tests.rs"]
    mod tests;
}

#[cfg(all(not(loom), feature = "dist"))]
pub use crate::dist::rpc;
#[cfg(not(loom))]
pub use crate::{
    error::Error,
    mailbox::Message,
    mailbox::receive::{
        ByMessage, ByPredicate, ByType, Mark, Matcher, Receive, ReceiveTimeout, mark, receive,
        receive_if, receive_match,
    },
    pid::Pid,
    process::info::{process_info, processes},
    process::spawn::{spawn, spawn_link, spawn_monitor},
    process::{Priority, ProcessInfo, SpawnOptions, Spawned, Status},
    reason::{Down, Exit, Reason},
    reference::Ref,
    registry::{register, registered, send_named, unregister, whereis},
    runtime::{Builder, Handle, Runtime, run},
    signal::api::{
        Exiting, demonitor, demonitor_flush, demonitor_flush_info, demonitor_info, exit, link,
        monitor, self_pid, trap_exit, try_self_pid, unlink,
    },
    timer::{Sleep, TimerRef, cancel_timer, send_after, sleep},
    yielding::{LongSchedule, Reduce, YieldNow, reduce, subscribe_long_schedule, yield_now},
};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
