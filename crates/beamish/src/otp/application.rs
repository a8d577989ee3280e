//! Applications: a named supervision tree that is started, stopped in order,
//! and waited for as one unit, like an OTP application.
//!
//! An application runs under its own *master* process (OTP's
//! application master), registered under the application's name: the
//! master traps exits and links to the root supervisor, so the tree does not
//! depend on the process that started it, and the master sees the tree end
//! whatever the cause (a stop, or restart intensity exceeded at the root).

use std::sync::Arc;

use super::supervisor::{ChildSpec, Supervisor, SupervisorError, SupervisorFlags, SupervisorRef};
use crate::{Down, Error, Exit, Pid, Reason, Ref};

/// A running application.
///
/// ```
/// use beamish::otp::{Application, ChildSpec, Strategy, SupervisorFlags};
///
/// let rt = beamish::Runtime::new().unwrap();
/// rt.block_on(async {
///     let worker = ChildSpec::worker("worker", || async {
///         Ok(beamish::spawn_link(async { beamish::receive::<()>().await }))
///     });
///     let app = Application::start("shop", SupervisorFlags::new(Strategy::OneForOne), vec![worker])
///         .await
///         .unwrap();
///     let found = Application::whereis("shop").await.unwrap();
///     assert_eq!(found.supervisor(), app.supervisor());
///     let children = app.supervisor().which_children().await.unwrap();
///     assert_eq!(children.len(), 1);
///     app.stop().await.unwrap();
///     assert!(Application::whereis("shop").await.is_none());
/// }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Application {
    name: Arc<str>,
    master: Pid,
    supervisor: SupervisorRef,
}

/// Messages to the master: stop the application.
struct StopApp;

/// Messages to the master: which is your root supervisor?
struct Which(Pid, Ref);

/// The master's answer to [`Which`].
struct Root(Ref, SupervisorRef);

/// The master's answer to the starter.
struct Started(Ref, Result<SupervisorRef, SupervisorError>);

/// What an application master's registered name starts with.
pub(crate) const MASTER_PREFIX: &str = "application:";

/// The master's registered name for application `name`.
fn master_name(name: &str) -> String {
    format!("{MASTER_PREFIX}{name}")
}

impl Application {
    /// Starts the application `name`: its master process, registered under
    /// the name, and the root supervisor with `children`. Fails if the name
    /// is taken (an application of that name runs) or if the tree fails to
    /// start (the error names the child).
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn start(
        name: impl Into<Arc<str>>,
        flags: SupervisorFlags,
        children: Vec<ChildSpec>,
    ) -> Result<Application, SupervisorError> {
        let name: Arc<str> = name.into();
        let starter = crate::self_pid();
        let tag = Ref::new();
        let mark = crate::mark();
        let spawned = crate::SpawnOptions::new()
            .monitor()
            .trap_exit(true)
            .name(master_name(&name))
            .spawn(master(starter, tag, flags, children))
            .map_err(SupervisorError::Runtime)?;
        let mref = spawned.monitor.unwrap_or_else(Ref::new);
        match super::answer_or_down(mark, mref, move |s: &Started| s.0 == tag).await {
            Ok(Started(_, Ok(supervisor))) => Ok(Application {
                name,
                master: spawned.pid,
                supervisor,
            }),
            Ok(Started(_, Err(e))) => Err(e),
            Err(down) => Err(SupervisorError::Runtime(Error::Exited(down.reason))),
        }
    }

    /// The running application called `name`, if any.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn whereis(name: &str) -> Option<Application> {
        let master = crate::whereis(&master_name(name))?;
        let mark = crate::mark();
        let mref = crate::monitor(master);
        master.send(Which(crate::self_pid(), mref));
        let Root(_, supervisor) = super::answer_or_down(mark, mref, move |r: &Root| r.0 == mref)
            .await
            .ok()?;
        Some(Application {
            name: name.into(),
            master,
            supervisor,
        })
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root supervisor.
    pub fn supervisor(&self) -> SupervisorRef {
        self.supervisor
    }

    /// Stops the application: the root supervisor stops its children in
    /// reverse start order, then the master ends. Returns when everything
    /// has ended; `NoProc` if the application was not running.
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn stop(&self) -> Result<(), Error> {
        let mref = crate::monitor(self.master);
        self.master.send(StopApp);
        let down = crate::receive_if(move |d: &Down| d.monitor == mref).await;
        match down.reason {
            Reason::NoProc => Err(Error::NoProc(self.master)),
            _ => Ok(()),
        }
    }

    /// Waits until the application ends (stopped, or its root supervisor
    /// gave up after too many restarts) and returns the root supervisor's
    /// exit reason (`normal` after a stop).
    ///
    /// # Panics
    /// Outside a beamish process.
    pub async fn wait(&self) -> Reason {
        let mref = crate::monitor(self.master);
        let down = crate::receive_if(move |d: &Down| d.monitor == mref).await;
        down.reason
    }
}

/// The master process: starts the root supervisor (linked to itself), tells
/// the starter, then waits for a stop request or the tree's end.
async fn master(starter: Pid, tag: Ref, flags: SupervisorFlags, children: Vec<ChildSpec>) {
    let started = Supervisor::start_link(flags, children).await;
    let supervisor = match started {
        Ok(s) => s,
        Err(e) => {
            starter.send(Started(tag, Err(e)));
            return;
        }
    };
    starter.send(Started(tag, Ok(supervisor)));
    let reason = loop {
        let msg =
            crate::receive_match(|m| m.is::<StopApp>() || m.is::<Exit>() || m.is::<Which>()).await;
        let msg = match msg.downcast::<Which>() {
            Ok(Which(asker, r)) => {
                asker.send(Root(r, supervisor));
                continue;
            }
            Err(msg) => msg,
        };
        match msg.downcast::<Exit>() {
            Ok(Exit { from, reason }) if from == supervisor.pid() => break reason,
            Ok(_) => continue,
            Err(_) => {
                // A stop: the supervisor takes its children down in reverse
                // order; its exit follows as an Exit message.
                let _ = supervisor.stop().await;
                let reason = crate::receive_if(move |e: &Exit| e.from == supervisor.pid())
                    .timeout(std::time::Duration::from_secs(5))
                    .await
                    .map_or(Reason::Normal, |e| e.reason);
                break reason;
            }
        }
    };
    crate::exit::<()>(reason).await
}
