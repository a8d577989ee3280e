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
#[cfg(feature = "dist")]
pub use gen_server::{Codec, Server};
pub use gen_server::{
    DEFAULT_CALL_TIMEOUT, Flow, GenServer, Init, Reply, ReplyTo, ServerRef, StartOptions, start,
    start_link, start_with,
};
pub use supervisor::{
    AutoShutdown, ChildCounts, ChildId, ChildInfo, ChildKind, ChildSpec, Restart, Shutdown,
    Strategy, Supervisor, SupervisorError, SupervisorFlags, SupervisorRef,
};
pub use task::{Task, TaskSupervisor};

/// Waits, looking only at messages after `mark`, for the first `T` that
/// `is_answer` accepts or for the `Down` of monitor `mref`, whichever comes
/// first, then drops the monitor (flushing its `Down`). The request/answer
/// step shared by starting a server, starting an application and asking a
/// master for its tree.
pub(crate) async fn answer_or_down<T: Send + 'static>(
    mark: crate::Mark,
    mref: crate::Ref,
    mut is_answer: impl FnMut(&T) -> bool,
) -> Result<T, crate::Down> {
    let msg = crate::receive_match(move |m| {
        m.downcast_ref::<T>().is_some_and(&mut is_answer)
            || m.downcast_ref::<crate::Down>()
                .is_some_and(|d| d.monitor == mref)
    })
    .after_mark(mark)
    .await;
    crate::demonitor_flush(mref);
    match msg.downcast::<T>() {
        Ok(answer) => Ok(answer),
        Err(m) => Err(m.downcast::<crate::Down>().unwrap_or(crate::Down {
            monitor: mref,
            pid: crate::self_pid(),
            reason: crate::Reason::NoProc,
        })),
    }
}
