//! Distributed applications: OTP's `distributed` kernel configuration
//! (`{App, Timeout, [N1, {N2, N3}]}`) for a beamish supervision tree.
//!
//! Every node of the list starts the application's *controller*
//! ([`DistributedApp::start`]); the tree runs on one of them at a time:
//!
//! - **Start**: on the first node of the list that is up and runs a
//!   controller (nodes in one group have the same priority; among them the
//!   smaller name). Wait for the others first with
//!   [`Membership::sync_timeout`](super::Membership::sync_timeout) and
//!   [`Membership::mandatory`](super::Membership::mandatory) (OTP's
//!   `sync_nodes_optional`, `sync_nodes_mandatory`, `sync_nodes_timeout`).
//! - **Failover**: when the node that runs it goes down, the others wait
//!   the failover timeout for it to come back, then the first node of the
//!   list that is up starts it with [`Start::Failover`] (OTP's `{failover,
//!   Node}`).
//! - **Takeover**: when a node of a better priority group than the one
//!   that runs it starts its controller (or comes back), it takes the
//!   application over: the old node stops its tree (after the
//!   [`handoff`](DistributedApp::handoff) function, if any) and the new one
//!   starts with [`Start::Takeover`] (OTP's `{takeover, Node}`).
//!
//! The tree's root supervisor is registered with `global` as
//! `{application, Name}`; [`DistributedApp::whereis`] finds it from any
//! node. It is a [`Singleton`] underneath: its module documentation says
//! how the nodes agree and what happens when a partition heals.
//!
//! Differences from OTP: among nodes of one priority group OTP picks the
//! one running the fewest applications, this picks the smaller name; the
//! takeover stops the old tree before the new one starts (OTP starts the
//! new one first), so that one instance at most ever holds the name.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::singleton::{Singleton, Start};
use crate::dist::{Atom, Term};
use crate::otp::{ChildSpec, Supervisor, SupervisorFlags};
use crate::{Error, Pid, Reason};

/// A supervision tree that runs on one node of a list at a time.
///
/// ```no_run
/// # let rt = beamish::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// use beamish::cluster::DistributedApp;
/// use beamish::dist::Atom;
/// use beamish::otp::{ChildSpec, SupervisorFlags};
/// # beamish::dist::start(beamish::dist::NodeConfig::new("a@127.0.0.1", "c")).await.unwrap();
/// # beamish::global::start().await.unwrap();
/// let n = |s| Atom::new(s).unwrap();
/// // OTP's ['a@127.0.0.1', {'b@127.0.0.1', 'c@127.0.0.1'}]
/// let nodes = vec![vec![n("a@127.0.0.1")], vec![n("b@127.0.0.1"), n("c@127.0.0.1")]];
/// let app = DistributedApp::new("shop", nodes, |start| async move {
///     println!("starting: {start:?}");
///     let worker = ChildSpec::worker("w", || async {
///         Ok(beamish::spawn_link(async { beamish::receive::<()>().await }))
///     });
///     Ok((SupervisorFlags::default(), vec![worker]))
/// })
/// .failover_timeout(Duration::from_secs(5));
/// app.start().await.unwrap();
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct DistributedApp {
    name: Arc<str>,
    singleton: Singleton,
}

/// The future a tree function returns: the root supervisor's flags and
/// children.
type TreeFuture = std::pin::Pin<
    Box<dyn Future<Output = Result<(SupervisorFlags, Vec<ChildSpec>), Error>> + Send>,
>;

impl DistributedApp {
    /// The application `name`, run on the nodes of `nodes` (priority
    /// groups, best first), its tree made by `tree` at each start, told how
    /// it starts. Failover timeout zero; takeover on.
    pub fn new<F, Fut>(name: &str, nodes: Vec<Vec<Atom>>, tree: F) -> DistributedApp
    where
        F: Fn(Start) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(SupervisorFlags, Vec<ChildSpec>), Error>> + Send + 'static,
    {
        let name: Arc<str> = name.into();
        let tree: Arc<dyn Fn(Start) -> TreeFuture + Send + Sync> =
            Arc::new(move |how| Box::pin(tree(how)));
        let root = ChildSpec::supervisor(name.clone(), || async {
            Err(Error::Config(
                "a distributed application starts through its tree".into(),
            ))
        });
        let singleton = Singleton::new(Self::global_name(&name), root)
            .priority(nodes)
            .takeover(true)
            .start_with(move |how| {
                let tree = tree.clone();
                async move {
                    let (flags, children) = tree(how).await?;
                    Supervisor::start_link(flags, children)
                        .await
                        .map(|s| s.pid())
                        .map_err(|e| Error::Exited(Reason::other(e.to_string())))
                }
            });
        DistributedApp { name, singleton }
    }

    /// The priority groups of an OTP node list: `['a@h', {'b@h', 'c@h'}]`
    /// (atoms, and tuples of atoms for equal priority).
    ///
    /// # Errors
    /// [`Error::Config`] for anything else.
    pub fn nodes_from_term(nodes: &Term) -> Result<Vec<Vec<Atom>>, Error> {
        let bad = || {
            Error::Config(format!(
                "bad node list {nodes}: expected [Node | {{Node, ...}}]"
            ))
        };
        let Term::List(items) = nodes else {
            return match nodes {
                Term::Nil => Ok(Vec::new()),
                _ => Err(bad()),
            };
        };
        items
            .iter()
            .map(|item| match item {
                Term::Atom(n) => Ok(vec![*n]),
                Term::Tuple(group) => group
                    .iter()
                    .map(|t| match t {
                        Term::Atom(n) => Ok(*n),
                        _ => Err(bad()),
                    })
                    .collect(),
                _ => Err(bad()),
            })
            .collect()
    }

    /// How long the other nodes wait for a node that went down to come
    /// back before they start the application (OTP's `Timeout` in
    /// `{App, Timeout, Nodes}`).
    pub fn failover_timeout(mut self, timeout: Duration) -> DistributedApp {
        self.singleton = self.singleton.failover_delay(timeout);
        self
    }

    /// Whether a node of better priority takes the application over when it
    /// comes up (on by default, as in OTP).
    pub fn takeover(mut self, on: bool) -> DistributedApp {
        self.singleton = self.singleton.takeover(on);
        self
    }

    /// What the old node runs in a takeover before its tree stops: given
    /// the root supervisor, the state for the new node's
    /// [`Start::Takeover`].
    pub fn handoff<F, Fut>(mut self, handoff: F) -> DistributedApp
    where
        F: Fn(Pid) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Term>> + Send + 'static,
    {
        self.singleton = self.singleton.handoff(handoff);
        self
    }

    /// Restart intensity of the tree as a whole: at most `intensity` starts
    /// of it that fail or end abnormally in `period` on one node, after
    /// which that node's controller gives up (default 3 in 5 s).
    pub fn intensity(mut self, intensity: u32, period: Duration) -> DistributedApp {
        self.singleton = self.singleton.intensity(intensity, period);
        self
    }

    /// How often a controller checks the name table (default 500 ms).
    pub fn check_every(mut self, period: Duration) -> DistributedApp {
        self.singleton = self.singleton.check_every(period);
        self
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts this node's controller, registered locally as
    /// `application:NAME`: it starts the tree here when this node is the
    /// one to run it, and watches it otherwise. Returns once it has
    /// decided.
    ///
    /// # Errors
    /// [`Error::NameTaken`] if a controller (or a local application) of
    /// that name runs here; the tree's start error when it fails to start
    /// here at once; as [`Singleton::start`].
    pub async fn start(self) -> Result<Pid, Error> {
        let local = controller_name(&self.name);
        if let Some(pid) = crate::whereis(&local) {
            return Err(Error::AlreadyRegistered(pid, local.into()));
        }
        let pid = self.singleton.start().await?;
        if let Err(e) = crate::register(local.as_str(), pid) {
            pid.exit(Reason::Shutdown);
            return Err(e);
        }
        Ok(pid)
    }

    /// Stops this node's controller, and the tree if it runs here (another
    /// node of the list then starts it, as when a node stops in OTP).
    ///
    /// # Errors
    /// [`Error::UnknownName`] if no controller of that name runs here.
    pub async fn stop(name: &str) -> Result<(), Error> {
        let local = controller_name(name);
        let pid = crate::whereis(&local).ok_or_else(|| Error::UnknownName(local.into()))?;
        let mon = crate::monitor(pid);
        pid.exit(Reason::Shutdown);
        crate::receive_if(move |d: &crate::Down| d.monitor == mon).await;
        Ok(())
    }

    /// The root supervisor of the application `name`, on whatever node it
    /// runs.
    pub fn whereis(name: &str) -> Option<Pid> {
        crate::global::whereis_name(&Self::global_name(name))
    }

    /// `{application, Name}`.
    fn global_name(name: &str) -> Term {
        Term::Tuple(vec![
            Term::Atom(Atom::new("application").unwrap_or(Atom::UNDEFINED)),
            Term::Atom(Atom::new(name).unwrap_or(Atom::UNDEFINED)),
        ])
    }
}

fn controller_name(name: &str) -> String {
    format!("application:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_as_otp_writes_them() {
        let a = |s| Atom::new(s).unwrap();
        let t = |s| Term::Atom(a(s));
        // ['a@h', {'b@h', 'c@h'}, 'd@h']
        let list = Term::List(vec![
            t("a@h"),
            Term::Tuple(vec![t("b@h"), t("c@h")]),
            t("d@h"),
        ]);
        let groups = DistributedApp::nodes_from_term(&list).unwrap();
        assert_eq!(
            groups,
            vec![vec![a("a@h")], vec![a("b@h"), a("c@h")], vec![a("d@h")]]
        );
        assert_eq!(
            DistributedApp::nodes_from_term(&Term::Nil).unwrap(),
            Vec::<Vec<Atom>>::new()
        );
        for bad in [
            t("a@h"),
            Term::List(vec![Term::Int(1)]),
            Term::List(vec![Term::Tuple(vec![t("a@h"), Term::Int(2)])]),
            Term::List(vec![Term::Binary(b"a@h".to_vec().into())]),
        ] {
            let r = DistributedApp::nodes_from_term(&bad);
            assert!(matches!(r, Err(Error::Config(_))), "{bad}: {r:?}");
        }
    }
}
