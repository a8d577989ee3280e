//! Clusters that survive: who the members are, and services that outlive
//! the node they run on.
//!
//! - [`Membership`] keeps this node connected to a list of nodes (given by
//!   name, or found by resolving host names, as libcluster's DNS strategy
//!   does), trying again with exponential back-off and jitter while one is
//!   down. The node up and down events everything else builds on are the
//!   distribution's own: [`dist::monitor_nodes`] (Erlang's
//!   `net_kernel:monitor_nodes/1`).
//! - [`Singleton`] runs a child (any [`ChildSpec`](crate::otp::ChildSpec):
//!   a GenServer, a whole supervision tree) on exactly one node of the
//!   cluster, registered with [`global`](crate::global); when that node
//!   dies another starts it, and when a partition heals with two instances
//!   only one survives.
//! - [`DistSupervisor`] spreads dynamic children over the nodes (placed by
//!   rendezvous hashing of their ids, each under a `global` name), and
//!   starts a dead node's children on the others, moving as few as it can
//!   when nodes come and go.
//!
//! ```no_run
//! # let rt = beamish::Runtime::new().unwrap();
//! # rt.block_on(async {
//! use beamish::cluster::Membership;
//! use beamish::dist::{self, Atom, NodeConfig};
//! dist::start(NodeConfig::new("a@127.0.0.1", "secret")).await.unwrap();
//! Membership::new()
//!     .node(Atom::new("b@127.0.0.1").unwrap())
//!     .host("app", "localhost") // app@127.0.0.1 and any other address of localhost
//!     .start()
//!     .await
//!     .unwrap();
//! # }).unwrap();
//! ```
//!
//! [`dist::monitor_nodes`]: crate::dist::monitor_nodes

mod application;
pub mod dist_supervisor;
pub mod singleton;

pub use application::DistributedApp;
pub use dist_supervisor::{DistSupervisor, DistSupervisorRef};
pub use singleton::{SINGLETON_CONFLICT, Singleton, Start};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::dist::{self, Atom, NodeDown, NodeUp};
use crate::global::Rng;
use crate::{Error, Pid, Ref};

/// An atom term; `undefined` for a text that is no atom.
pub(crate) fn atom(name: &str) -> crate::dist::Term {
    crate::dist::Term::Atom(Atom::new(name).unwrap_or(Atom::UNDEFINED))
}

/// The process `global` has for `name`, if it is alive as far as this
/// node can tell (a remote one: its node is connected).
pub(crate) fn live_global(name: &crate::dist::Term) -> Option<Pid> {
    let pid = crate::global::whereis_name(name)?;
    let alive = if pid.is_remote() {
        dist::nodes().contains(&pid.node())
    } else {
        pid.is_alive()
    };
    alive.then_some(pid)
}

/// Records a restart (or failed start) at `now` in `history`, a sliding
/// window of `period`; true if that makes more than `intensity` (a
/// supervisor's restart intensity, shared by the services of this module).
pub(crate) fn over_intensity(
    history: &mut std::collections::VecDeque<Instant>,
    now: Instant,
    intensity: u32,
    period: Duration,
) -> bool {
    history.push_back(now);
    while history
        .front()
        .is_some_and(|t| now.duration_since(*t) > period)
    {
        history.pop_front();
    }
    history.len() > intensity as usize
}

/// The wait after `failures` failed starts in a row: doubling from
/// 100 ms, at most 5 s.
pub(crate) fn start_backoff(failures: u32) -> Duration {
    Duration::from_millis(100)
        .saturating_mul(1 << failures.min(6))
        .min(Duration::from_secs(5))
}

/// The local name of the membership process.
pub const MEMBERSHIP: &str = "beamish_cluster";

/// How a node finds and keeps its peers: a static list of node names and a
/// list of host names that are resolved (at start and again before each
/// round of retries) to one node per IPv4 address, `basename@address`.
///
/// A node that is not connected is tried again after a back-off that
/// doubles from [`min_backoff`](Membership::backoff) up to its maximum,
/// with equal jitter (half fixed, half random) so that nodes that lost
/// each other at the same moment do not all knock at once; a node that
/// connects (in either direction) starts again from the minimum.
#[derive(Clone, Debug)]
pub struct Membership {
    nodes: Vec<Atom>,
    mandatory: Vec<Atom>,
    hosts: Vec<(String, String)>,
    min_backoff: Duration,
    max_backoff: Duration,
    sync: Duration,
}

impl Default for Membership {
    fn default() -> Membership {
        Membership::new()
    }
}

impl Membership {
    /// No members yet; back-off from 100 ms to 5 s.
    pub fn new() -> Membership {
        Membership {
            nodes: Vec::new(),
            mandatory: Vec::new(),
            hosts: Vec::new(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            sync: Duration::ZERO,
        }
    }

    /// Adds a node by name (`name@host`).
    pub fn node(mut self, node: Atom) -> Membership {
        if !self.nodes.contains(&node) {
            self.nodes.push(node);
        }
        self
    }

    /// Adds nodes by name.
    pub fn nodes(self, nodes: impl IntoIterator<Item = Atom>) -> Membership {
        nodes.into_iter().fold(self, Membership::node)
    }

    /// Adds a host name to resolve: every IPv4 address it resolves to is
    /// the node `basename@address`.
    pub fn host(mut self, basename: impl Into<String>, host: impl Into<String>) -> Membership {
        self.hosts.push((basename.into(), host.into()));
        self
    }

    /// The least and the greatest wait between two attempts to reach a
    /// node (`min` is raised to 1 ms, `max` to `min`).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Membership {
        self.min_backoff = min.max(Duration::from_millis(1));
        self.max_backoff = max.max(self.min_backoff);
        self
    }

    /// Nodes that must be up for [`start`](Membership::start) to succeed
    /// (OTP's `sync_nodes_mandatory`): they join the list, and `start`
    /// fails if one is not connected within the
    /// [`sync_timeout`](Membership::sync_timeout).
    pub fn mandatory(mut self, nodes: impl IntoIterator<Item = Atom>) -> Membership {
        for n in nodes {
            if !self.mandatory.contains(&n) {
                self.mandatory.push(n);
            }
            self = self.node(n);
        }
        self
    }

    /// How long [`start`](Membership::start) waits for the listed nodes
    /// (OTP's `sync_nodes_optional` with `sync_nodes_timeout`): it returns
    /// when every node of the list is connected, or when this time has
    /// passed (default zero: at once). Host names are not waited for.
    pub fn sync_timeout(mut self, timeout: Duration) -> Membership {
        self.sync = timeout;
        self
    }

    /// Starts the membership process, registered as [`MEMBERSHIP`] and not
    /// linked to the caller (it lives as long as the node); see
    /// [`Membership::start_link`] to put it under a supervisor.
    ///
    /// # Errors
    /// [`Error::NotInProcess`] outside a process; [`Error::Config`] if the
    /// node is not distributed or a basename makes no node name;
    /// [`Error::NameTaken`] if a membership process runs already;
    /// [`Error::NodeDown`] naming a [`mandatory`](Membership::mandatory)
    /// node that did not connect in time (the process is stopped then).
    pub async fn start(self) -> Result<Pid, Error> {
        self.start_and_sync(false).await
    }

    /// [`Membership::start`], linked to the caller.
    ///
    /// # Errors
    /// As [`Membership::start`].
    pub async fn start_link(self) -> Result<Pid, Error> {
        self.start_and_sync(true).await
    }

    async fn start_and_sync(self, link: bool) -> Result<Pid, Error> {
        let (sync, nodes, mandatory) = (self.sync, self.nodes.clone(), self.mandatory.clone());
        let pid = self.spawn(link)?;
        wait_for(&nodes, sync).await;
        let up = dist::nodes();
        if let Some(missing) = mandatory
            .iter()
            .find(|n| **n != dist::this_node() && !up.contains(n))
        {
            if link {
                crate::unlink(pid);
            }
            let mon = crate::monitor(pid);
            pid.exit(crate::Reason::Shutdown);
            crate::receive_if(move |d: &crate::Down| d.monitor == mon).await;
            return Err(Error::NodeDown(*missing));
        }
        Ok(pid)
    }

    fn spawn(self, link: bool) -> Result<Pid, Error> {
        crate::try_self_pid().ok_or(Error::NotInProcess)?;
        if dist::this_node() == Atom::NONODE {
            return Err(Error::Config(
                "the node is not distributed (dist::start)".into(),
            ));
        }
        for (basename, _) in &self.hosts {
            if basename.is_empty()
                || !basename
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            {
                return Err(Error::Config(format!("bad node basename {basename:?}")));
            }
        }
        let mut opts = crate::SpawnOptions::new().name(MEMBERSHIP);
        if link {
            opts = opts.link();
        }
        Ok(opts.spawn(run(self))?.pid)
    }
}

/// Waits until every node of `nodes` is connected, at most `timeout`. A
/// helper watches the node events, so the caller's own subscription and
/// mailbox are left alone.
async fn wait_for(nodes: &[Atom], timeout: Duration) {
    if timeout.is_zero() {
        return;
    }
    let me = dist::this_node();
    let nodes = nodes.to_vec();
    let deadline = Instant::now() + timeout;
    let helper = crate::spawn(async move {
        dist::monitor_nodes(true);
        loop {
            let up = dist::nodes();
            if nodes.iter().all(|n| *n == me || up.contains(n)) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = crate::receive_if(|_: &NodeUp| true).timeout(left).await;
        }
    });
    let mon = crate::monitor(helper);
    crate::receive_if(move |d: &crate::Down| d.monitor == mon).await;
}

/// One member, as [`members`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node name.
    pub node: Atom,
    /// Whether it is connected now.
    pub connected: bool,
    /// Failed attempts since it was last connected.
    pub failures: u32,
    /// Whether it came from a host name rather than the node list.
    pub resolved: bool,
}

/// The members the membership process keeps, in name order.
///
/// # Errors
/// [`Error::UnknownName`] when no membership process runs;
/// [`Error::NotInProcess`].
pub async fn members() -> Result<Vec<Member>, Error> {
    crate::try_self_pid().ok_or(Error::NotInProcess)?;
    let pid = crate::whereis(MEMBERSHIP).ok_or_else(|| Error::UnknownName(MEMBERSHIP.into()))?;
    let id = Ref::new();
    let mark = crate::mark();
    let mon = crate::monitor(pid);
    pid.send(Request::Members {
        reply: crate::self_pid(),
        id,
    });
    crate::otp::answer_or_down(mark, mon, move |r: &MembersReply| r.id == id)
        .await
        .map(|r| r.members)
        .map_err(|_| Error::NoProc(pid))
}

enum Request {
    Members { reply: Pid, id: Ref },
}

struct MembersReply {
    id: Ref,
    members: Vec<Member>,
}

/// The end of one connection attempt, from its helper.
struct Attempted {
    node: Atom,
}

/// What host resolution found, from its helper.
struct Resolved {
    nodes: Vec<Atom>,
}

struct Peer {
    link: Link,
    /// Failed attempts since it was last connected.
    failures: u32,
    resolved: bool,
}

/// Where a member stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Connected.
    Up,
    /// Not connected; the next attempt is due then.
    Wait(Instant),
    /// An attempt is out.
    Trying,
}

impl Peer {
    /// A member to try at once, or up already if it is connected.
    fn new(resolved: bool, now: Instant, connected: &[Atom], node: Atom) -> Peer {
        let link = match connected.contains(&node) {
            true => Link::Up,
            false => Link::Wait(now),
        };
        Peer {
            link,
            failures: 0,
            resolved,
        }
    }

    fn due(&self) -> Option<Instant> {
        match self.link {
            Link::Wait(t) => Some(t),
            _ => None,
        }
    }
}

/// The wait before attempt `failures + 1`: `min · 2^failures`, at most
/// `max`, of which the upper half is random.
fn backoff(min: Duration, max: Duration, failures: u32, rng: &mut Rng) -> Duration {
    let full = min
        .checked_mul(1u32 << failures.min(20))
        .unwrap_or(max)
        .min(max);
    let half = full / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let spread = usize::try_from(nanos).unwrap_or(usize::MAX);
    half + Duration::from_nanos(rng.below(spread.saturating_add(1)) as u64)
}

async fn run(config: Membership) {
    let me = dist::this_node();
    let mut rng = Rng::new();
    let now = Instant::now();
    dist::monitor_nodes(true);
    let connected = dist::nodes();
    let mut peers: BTreeMap<Atom, Peer> = config
        .nodes
        .iter()
        .filter(|n| **n != me)
        .map(|n| (*n, Peer::new(false, now, &connected, *n)))
        .collect();
    let resolving_every = config.min_backoff.max(Duration::from_secs(1));
    let mut resolving = false;
    let mut last_resolve: Option<Instant> = None;
    loop {
        let now = Instant::now();
        // Host names are resolved at start and before a round of retries,
        // at most once per `resolving_every`.
        let due = peers.values().any(|p| p.due().is_some_and(|t| t <= now));
        if !config.hosts.is_empty()
            && !resolving
            && (last_resolve.is_none()
                || (due && last_resolve.is_some_and(|t| now - t >= resolving_every)))
        {
            resolving = true;
            last_resolve = Some(now);
            let owner = crate::self_pid();
            let hosts = config.hosts.clone();
            crate::spawn(async move {
                owner.send(Resolved {
                    nodes: resolve_hosts(&hosts).await,
                });
            });
        }
        for (node, p) in peers.iter_mut() {
            if p.due().is_some_and(|t| t <= now) {
                p.link = Link::Trying;
                let (owner, node) = (crate::self_pid(), *node);
                crate::spawn(async move {
                    let _ = dist::connect_node(node).await;
                    owner.send(Attempted { node });
                });
            }
        }
        let wait = peers
            .values()
            .filter_map(Peer::due)
            .min()
            .map_or(Duration::MAX, |t| t.saturating_duration_since(now));
        let Some(msg) = crate::receive_match(|m| {
            m.is::<NodeUp>()
                || m.is::<NodeDown>()
                || m.is::<Attempted>()
                || m.is::<Resolved>()
                || m.is::<Request>()
        })
        .timeout(wait)
        .await
        else {
            continue;
        };
        let now = Instant::now();
        let msg = match msg.downcast::<NodeUp>() {
            Ok(up) => {
                if let Some(p) = peers.get_mut(&up.node) {
                    tracing::debug!(node = %up.node, "cluster: member up");
                    p.link = Link::Up;
                    p.failures = 0;
                }
                continue;
            }
            Err(m) => m,
        };
        let msg = match msg.downcast::<NodeDown>() {
            Ok(down) => {
                // While an attempt is out, its end decides what is next.
                if let Some(p) = peers.get_mut(&down.node)
                    && p.link == Link::Up
                {
                    tracing::info!(node = %down.node, "cluster: member down");
                    let wait = backoff(config.min_backoff, config.max_backoff, 0, &mut rng);
                    p.link = Link::Wait(now + wait);
                }
                continue;
            }
            Err(m) => m,
        };
        let msg = match msg.downcast::<Attempted>() {
            Ok(a) => {
                if let Some(p) = peers.get_mut(&a.node) {
                    // What holds now, not what the attempt saw: the
                    // connection it made may already be down again (its
                    // `NodeDown` came while the attempt was out).
                    if dist::nodes().contains(&a.node) {
                        p.link = Link::Up;
                        p.failures = 0;
                    } else {
                        let wait =
                            backoff(config.min_backoff, config.max_backoff, p.failures, &mut rng);
                        p.failures = p.failures.saturating_add(1);
                        p.link = Link::Wait(now + wait);
                    }
                }
                continue;
            }
            Err(m) => m,
        };
        let msg = match msg.downcast::<Resolved>() {
            Ok(r) => {
                resolving = false;
                let connected = dist::nodes();
                // Addresses that went away leave, unless connected.
                peers.retain(|n, p| !p.resolved || p.link == Link::Up || r.nodes.contains(n));
                for n in r.nodes {
                    if n != me && !peers.contains_key(&n) {
                        peers.insert(n, Peer::new(true, now, &connected, n));
                    }
                }
                continue;
            }
            Err(m) => m,
        };
        if let Ok(Request::Members { reply, id }) = msg.downcast::<Request>() {
            let members = peers
                .iter()
                .map(|(n, p)| Member {
                    node: *n,
                    connected: p.link == Link::Up,
                    failures: p.failures,
                    resolved: p.resolved,
                })
                .collect();
            reply.send(MembersReply { id, members });
        }
    }
}

/// The nodes `basename@address` for every IPv4 address of every host; a
/// host that does not resolve adds nothing (and is logged).
async fn resolve_hosts(hosts: &[(String, String)]) -> Vec<Atom> {
    let mut out = Vec::new();
    for (basename, host) in hosts {
        match tokio::net::lookup_host((host.as_str(), 0)).await {
            Ok(addrs) => {
                for addr in addrs {
                    if let std::net::IpAddr::V4(ip) = addr.ip() {
                        match Atom::new(&format!("{basename}@{ip}")) {
                            Ok(node) if !out.contains(&node) => out.push(node),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(%host, error = %e, "cluster: node name"),
                        }
                    }
                }
            }
            Err(e) => tracing::info!(%host, error = %e, "cluster: host does not resolve"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_stops_at_the_maximum() {
        let mut rng = Rng::new();
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for failures in 0..40 {
            let full = (min * 2u32.pow(failures.min(20))).min(max);
            for _ in 0..50 {
                let d = backoff(min, max, failures, &mut rng);
                assert!(
                    d >= full / 2 && d <= full,
                    "{failures}: {d:?} not in [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        // The random half spreads: not every wait is the same.
        let waits: std::collections::HashSet<_> =
            (0..50).map(|_| backoff(min, max, 3, &mut rng)).collect();
        assert!(waits.len() > 10);
    }

    #[test]
    fn localhost_resolves_to_a_node_on_the_loopback_address() {
        let rt = crate::Runtime::new().unwrap();
        let nodes = rt
            .block_on(async {
                resolve_hosts(&[
                    ("app".into(), "localhost".into()),
                    ("app".into(), "127.0.0.1".into()),
                    ("x".into(), "no-such-host.invalid".into()),
                ])
                .await
            })
            .unwrap();
        assert_eq!(nodes, vec![Atom::new("app@127.0.0.1").unwrap()]);
    }

    #[test]
    fn a_node_that_is_not_distributed_has_no_membership() {
        let rt = crate::Runtime::new().unwrap();
        let r = rt
            .block_on(async { Membership::new().host("a", "localhost").start().await })
            .unwrap();
        assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
        let r = rt.block_on(async { members().await }).unwrap();
        assert!(matches!(r, Err(Error::UnknownName(_))), "{r:?}");
    }
}
