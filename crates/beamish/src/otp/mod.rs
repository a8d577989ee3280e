//! OTP behaviours on top of processes: [`GenServer`], [`Supervisor`],
//! [`DynamicSupervisor`], [`Task`] (and [`TaskSupervisor`]) and
//! [`Application`].

pub mod application;
pub mod dynamic_supervisor;
pub mod gen_server;
pub mod supervisor;
pub mod task;

pub use application::Application;
pub use dynamic_supervisor::{DynamicSupervisor, DynamicSupervisorFlags, DynamicSupervisorRef};
pub use gen_server::{
    DEFAULT_CALL_TIMEOUT, Flow, GenServer, Init, Reply, ReplyTo, ServerRef, StartOptions, start,
    start_link, start_with,
};
pub use supervisor::{
    AutoShutdown, ChildCounts, ChildId, ChildInfo, ChildKind, ChildSpec, Restart, Shutdown,
    Strategy, Supervisor, SupervisorError, SupervisorFlags, SupervisorRef,
};
pub use task::{Task, TaskSupervisor};
