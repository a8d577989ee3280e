//! OTP behaviours on top of processes: [`GenServer`] (more to come:
//! supervisors, tasks, applications).

pub mod gen_server;

pub use gen_server::{
    DEFAULT_CALL_TIMEOUT, Flow, GenServer, Init, Reply, ReplyTo, ServerRef, StartOptions, start,
    start_link, start_with,
};
