//! A scope's bookkeeping: who is in which group, which peers we know and
//! what they told us, and who watches. Pure data plus an [`Effects`] for
//! the few side effects (monitors and notifications), so the rules can be
//! tested without a cluster.
//!
//! Lists of members are multisets: a process that joined a group twice is
//! in its list twice and must leave twice (OTP's rule). Removing a list of
//! pids removes one occurrence of each, as Erlang's `--` does.

use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use super::{Event, Update};
use crate::dist::Term;
use crate::{Pid, Ref};

/// What the state asks of the world.
pub(crate) trait Effects {
    /// Monitors `pid` (local or remote) and returns the monitor.
    fn monitor(&mut self, pid: Pid) -> Ref;
    /// Takes down a monitor made by [`Effects::monitor`].
    fn demonitor(&mut self, monitor: Ref);
    /// Delivers a notification to a watcher.
    fn notify(&mut self, to: Pid, update: Update);
}

/// The members of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Members {
    /// Every member, of every node, newest first.
    pub(crate) all: Vec<Pid>,
    /// The members that are processes of this node, newest first.
    pub(crate) local: Vec<Pid>,
}

/// The groups of a scope, as readers see them (OTP's ETS table): written
/// by the scope process only, read by anyone.
#[derive(Default)]
pub(crate) struct Table {
    /// Non-empty groups.
    groups: RwLock<FxHashMap<Term, Members>>,
}

impl Table {
    /// Every member of `group`.
    pub(crate) fn members(&self, group: &Term) -> Vec<Pid> {
        self.groups
            .read()
            .get(group)
            .map(|m| m.all.clone())
            .unwrap_or_default()
    }

    /// The members of `group` on this node.
    pub(crate) fn local_members(&self, group: &Term) -> Vec<Pid> {
        self.groups
            .read()
            .get(group)
            .map(|m| m.local.clone())
            .unwrap_or_default()
    }

    /// Every non-empty group.
    pub(crate) fn groups(&self) -> Vec<Term> {
        self.groups.read().keys().cloned().collect()
    }

    /// Every group with a member on this node.
    pub(crate) fn local_groups(&self) -> Vec<Term> {
        self.groups
            .read()
            .iter()
            .filter(|(_, m)| !m.local.is_empty())
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Every group with its members.
    pub(crate) fn snapshot(&self) -> Vec<(Term, Vec<Pid>)> {
        self.groups
            .read()
            .iter()
            .map(|(g, m)| (g.clone(), m.all.clone()))
            .collect()
    }

    fn add(&self, group: &Term, pids: &[Pid], local: bool) {
        let mut groups = self.groups.write();
        let m = groups.entry(group.clone()).or_default();
        m.all.splice(0..0, pids.iter().copied());
        if local {
            m.local.splice(0..0, pids.iter().copied());
        }
    }

    /// Removes one occurrence of each of `pids`; returns those that were
    /// there. A group left empty disappears.
    fn remove(&self, group: &Term, pids: &[Pid], local: bool) -> Vec<Pid> {
        let mut groups = self.groups.write();
        let Some(m) = groups.get_mut(group) else {
            return Vec::new();
        };
        let removed = remove_each(&mut m.all, pids);
        if local {
            remove_each(&mut m.local, &removed);
        }
        if m.all.is_empty() {
            groups.remove(group);
        }
        removed
    }
}

/// Removes one occurrence of each of `pids` from `list` (Erlang's `--`);
/// returns the pids that were found.
fn remove_each(list: &mut Vec<Pid>, pids: &[Pid]) -> Vec<Pid> {
    let mut removed = Vec::with_capacity(pids.len());
    for p in pids {
        if let Some(i) = list.iter().position(|x| x == p) {
            list.remove(i);
            removed.push(*p);
        }
    }
    removed
}

/// What we know of one peer scope process.
struct Peer {
    /// Our monitor of it.
    monitor: Ref,
    /// Its node's members, by group.
    groups: FxHashMap<Term, Vec<Pid>>,
}

/// The scope process's state.
pub(crate) struct State {
    /// The readers' view.
    pub(crate) table: Arc<Table>,
    /// Local members: our monitor of each and the groups it joined (once
    /// per join).
    local: FxHashMap<Pid, (Ref, Vec<Term>)>,
    /// Peer scope processes of other nodes.
    remote: FxHashMap<Pid, Peer>,
    /// Watchers of the whole scope, by the monitor that is also their
    /// subscription.
    scope_monitors: FxHashMap<Ref, Pid>,
    /// Watchers of one group, by subscription.
    group_monitors: FxHashMap<Ref, (Pid, Term)>,
    /// The inverse of `group_monitors`.
    monitored_groups: FxHashMap<Term, Vec<(Pid, Ref)>>,
}

/// What a `Down` the scope process received was about.
#[derive(Debug, PartialEq)]
pub(crate) enum Gone {
    /// A local member ended and left these groups (tell the peers).
    Member(Vec<Term>),
    /// A peer scope (or its node) went away.
    Peer,
    /// A watcher ended; its subscription is dropped.
    Watcher,
    /// Nothing we know (a monitor taken down meanwhile).
    Unknown,
}

impl State {
    pub(crate) fn new(table: Arc<Table>) -> State {
        State {
            table,
            local: FxHashMap::default(),
            remote: FxHashMap::default(),
            scope_monitors: FxHashMap::default(),
            group_monitors: FxHashMap::default(),
            monitored_groups: FxHashMap::default(),
        }
    }

    /// The peer scope processes we know.
    pub(crate) fn peers(&self) -> Vec<Pid> {
        self.remote.keys().copied().collect()
    }

    /// True when `peer` is a known peer.
    #[cfg(test)]
    pub(crate) fn knows(&self, peer: Pid) -> bool {
        self.remote.contains_key(&peer)
    }

    /// How many processes (local members, peers, watchers) we monitor.
    #[cfg(test)]
    pub(crate) fn monitors(&self) -> usize {
        self.local.len() + self.remote.len() + self.scope_monitors.len() + self.group_monitors.len()
    }

    fn notify(&self, fx: &mut impl Effects, event: Event, group: &Term, pids: &[Pid]) {
        if pids.is_empty() {
            return;
        }
        let watchers = self.scope_monitors.iter().map(|(r, p)| (*p, *r));
        let of_group = self
            .monitored_groups
            .get(group)
            .into_iter()
            .flatten()
            .copied();
        for (to, monitor) in watchers.chain(of_group) {
            fx.notify(
                to,
                Update {
                    monitor,
                    event,
                    group: group.clone(),
                    pids: pids.to_vec(),
                },
            );
        }
    }

    /// Local `pids` join `group` (each once per occurrence).
    pub(crate) fn join_local(&mut self, fx: &mut impl Effects, group: &Term, pids: &[Pid]) {
        for &pid in pids {
            match self.local.get_mut(&pid) {
                Some((_, groups)) => groups.push(group.clone()),
                None => {
                    let monitor = fx.monitor(pid);
                    self.local.insert(pid, (monitor, vec![group.clone()]));
                }
            }
        }
        self.table.add(group, pids, true);
        self.notify(fx, Event::Join, group, pids);
    }

    /// Local `pids` leave `group` once each; returns those that were in it
    /// (empty: none was, OTP's `not_joined`).
    pub(crate) fn leave_local(
        &mut self,
        fx: &mut impl Effects,
        group: &Term,
        pids: &[Pid],
    ) -> Vec<Pid> {
        let mut left = Vec::new();
        for &pid in pids {
            let Some((monitor, groups)) = self.local.get_mut(&pid) else {
                continue;
            };
            let Some(i) = groups.iter().position(|g| g == group) else {
                continue;
            };
            groups.swap_remove(i);
            if groups.is_empty() {
                fx.demonitor(*monitor);
                self.local.remove(&pid);
            }
            left.push(pid);
        }
        let removed = self.table.remove(group, &left, true);
        self.notify(fx, Event::Leave, group, &removed);
        left
    }

    /// The local members by group, as a `sync` carries them.
    pub(crate) fn local_groups(&self) -> Vec<(Term, Vec<Pid>)> {
        let mut by_group: FxHashMap<&Term, Vec<Pid>> = FxHashMap::default();
        for (pid, (_, groups)) in &self.local {
            for g in groups {
                by_group.entry(g).or_default().push(*pid);
            }
        }
        by_group.into_iter().map(|(g, p)| (g.clone(), p)).collect()
    }

    /// `peer` discovered us. Returns true when it is new to us (then we
    /// discover it back); either way it gets our `sync`.
    pub(crate) fn discover(&mut self, fx: &mut impl Effects, peer: Pid) -> bool {
        if self.remote.contains_key(&peer) {
            return false;
        }
        let monitor = fx.monitor(peer);
        self.remote.insert(
            peer,
            Peer {
                monitor,
                groups: FxHashMap::default(),
            },
        );
        true
    }

    /// `peer`'s full list of members: replaces what we knew of it. Members
    /// not on the peer's node are dropped.
    pub(crate) fn sync(&mut self, fx: &mut impl Effects, peer: Pid, groups: Vec<(Term, Vec<Pid>)>) {
        let mut new: FxHashMap<Term, Vec<Pid>> = FxHashMap::default();
        for (g, pids) in groups {
            let pids: Vec<Pid> = pids.into_iter().filter(|p| same_node(*p, peer)).collect();
            if !pids.is_empty() {
                new.entry(g).or_default().extend(pids);
            }
        }
        let mut old = match self.remote.remove(&peer) {
            Some(p) => p,
            None => Peer {
                monitor: fx.monitor(peer),
                groups: FxHashMap::default(),
            },
        };
        for (g, pids) in &new {
            let before = old.groups.remove(g).unwrap_or_default();
            if &before == pids {
                continue;
            }
            let mut gone = before.clone();
            let mut came = pids.clone();
            remove_each(&mut gone, pids);
            remove_each(&mut came, &before);
            let removed = self.table.remove(g, &gone, false);
            self.notify(fx, Event::Leave, g, &removed);
            self.table.add(g, &came, false);
            self.notify(fx, Event::Join, g, &came);
        }
        for (g, pids) in old.groups.drain() {
            let removed = self.table.remove(&g, &pids, false);
            self.notify(fx, Event::Leave, &g, &removed);
        }
        old.groups = new;
        self.remote.insert(peer, old);
    }

    /// `pids` of `peer`'s node joined `group`. False (and nothing changes)
    /// when `peer` is not a known peer or a pid is not of its node.
    pub(crate) fn join_remote(
        &mut self,
        fx: &mut impl Effects,
        peer: Pid,
        group: &Term,
        pids: &[Pid],
    ) -> bool {
        if pids.iter().any(|p| !same_node(*p, peer)) {
            return false;
        }
        let Some(p) = self.remote.get_mut(&peer) else {
            return false;
        };
        let list = p.groups.entry(group.clone()).or_default();
        list.splice(0..0, pids.iter().copied());
        if list.is_empty() {
            p.groups.remove(group);
        }
        self.table.add(group, pids, false);
        self.notify(fx, Event::Join, group, pids);
        true
    }

    /// `pids` of `peer`'s node left `groups`. False when `peer` is unknown.
    pub(crate) fn leave_remote(
        &mut self,
        fx: &mut impl Effects,
        peer: Pid,
        pids: &[Pid],
        groups: &[Term],
    ) -> bool {
        let Some(p) = self.remote.get_mut(&peer) else {
            return false;
        };
        let mut changes = Vec::new();
        for g in groups {
            let Some(list) = p.groups.get_mut(g) else {
                continue;
            };
            // Only what the peer had told us: a peer cannot remove another
            // node's members.
            let left = remove_each(list, pids);
            if list.is_empty() {
                p.groups.remove(g);
            }
            changes.push((g, left));
        }
        for (g, left) in changes {
            let removed = self.table.remove(g, &left, false);
            self.notify(fx, Event::Leave, g, &removed);
        }
        true
    }

    /// The monitor `monitor` of `pid` fired.
    pub(crate) fn down(&mut self, fx: &mut impl Effects, monitor: Ref, pid: Pid) -> Gone {
        if let Some((m, _)) = self.local.get(&pid)
            && *m == monitor
        {
            let (_, groups) = self
                .local
                .remove(&pid)
                .unwrap_or_else(|| (monitor, Vec::new()));
            for g in &groups {
                let removed = self.table.remove(g, &[pid], true);
                self.notify(fx, Event::Leave, g, &removed);
            }
            return Gone::Member(groups);
        }
        if let Some(p) = self.remote.get(&pid)
            && p.monitor == monitor
        {
            let groups = self
                .remote
                .remove(&pid)
                .map(|p| p.groups)
                .unwrap_or_default();
            for (g, pids) in groups {
                let removed = self.table.remove(&g, &pids, false);
                self.notify(fx, Event::Leave, &g, &removed);
            }
            return Gone::Peer;
        }
        if self.scope_monitors.remove(&monitor).is_some() {
            return Gone::Watcher;
        }
        if let Some((_, group)) = self.group_monitors.remove(&monitor) {
            self.unwatch_group(monitor, &group);
            return Gone::Watcher;
        }
        Gone::Unknown
    }

    /// `watcher` subscribes to the whole scope: its subscription and the
    /// current groups.
    pub(crate) fn monitor_scope(
        &mut self,
        fx: &mut impl Effects,
        watcher: Pid,
    ) -> (Ref, Vec<(Term, Vec<Pid>)>) {
        let monitor = fx.monitor(watcher);
        self.scope_monitors.insert(monitor, watcher);
        (monitor, self.table.snapshot())
    }

    /// `watcher` subscribes to `group`: its subscription and the members.
    pub(crate) fn monitor_group(
        &mut self,
        fx: &mut impl Effects,
        watcher: Pid,
        group: Term,
    ) -> (Ref, Vec<Pid>) {
        let monitor = fx.monitor(watcher);
        let members = self.table.members(&group);
        self.monitored_groups
            .entry(group.clone())
            .or_default()
            .push((watcher, monitor));
        self.group_monitors.insert(monitor, (watcher, group));
        (monitor, members)
    }

    /// Ends a subscription; false if there was none.
    pub(crate) fn demonitor(&mut self, fx: &mut impl Effects, monitor: Ref) -> bool {
        if self.scope_monitors.remove(&monitor).is_some() {
            fx.demonitor(monitor);
            return true;
        }
        if let Some((_, group)) = self.group_monitors.remove(&monitor) {
            fx.demonitor(monitor);
            self.unwatch_group(monitor, &group);
            return true;
        }
        false
    }

    fn unwatch_group(&mut self, monitor: Ref, group: &Term) {
        if let Some(list) = self.monitored_groups.get_mut(group) {
            list.retain(|(_, r)| *r != monitor);
            if list.is_empty() {
                self.monitored_groups.remove(group);
            }
        }
    }
}

/// True when `pid` lives on the node of `peer`.
fn same_node(pid: Pid, peer: Pid) -> bool {
    pid.is_remote() && pid.node() == peer.node()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the state asked for.
    #[derive(Default)]
    struct Fx {
        monitored: Vec<(Pid, Ref)>,
        demonitored: Vec<Ref>,
        updates: Vec<(Pid, Update)>,
    }

    impl Effects for Fx {
        fn monitor(&mut self, pid: Pid) -> Ref {
            let r = Ref::new();
            self.monitored.push((pid, r));
            r
        }
        fn demonitor(&mut self, monitor: Ref) {
            self.demonitored.push(monitor);
        }
        fn notify(&mut self, to: Pid, update: Update) {
            self.updates.push((to, update));
        }
    }

    impl Fx {
        fn monitor_of(&self, pid: Pid) -> Ref {
            self.monitored
                .iter()
                .rev()
                .find(|(p, _)| *p == pid)
                .unwrap()
                .1
        }
    }

    fn g(s: &str) -> Term {
        Term::atom(s).unwrap()
    }

    /// Local pids from a throwaway runtime (only their identity matters).
    fn local_pids(n: usize) -> Vec<Pid> {
        let rt = crate::Runtime::new().unwrap();
        rt.block_on(async move { (0..n).map(|_| crate::spawn(async {})).collect() })
            .unwrap()
    }

    /// Pids of a made-up node `node`.
    fn remote_pids(node: &str, n: u32) -> Vec<Pid> {
        let node = crate::dist::Atom::new(node).unwrap();
        (1..=n)
            .map(|i| {
                crate::dist::remote::pid_from_wire(crate::dist::WirePid {
                    node,
                    id: i,
                    serial: 0,
                    creation: 7,
                })
                .unwrap()
            })
            .collect()
    }

    fn state() -> State {
        State::new(Arc::new(Table::default()))
    }

    #[test]
    fn a_process_joined_twice_is_listed_twice_and_must_leave_twice() {
        let (mut s, mut fx) = (state(), Fx::default());
        let p = local_pids(1)[0];
        s.join_local(&mut fx, &g("a"), &[p]);
        s.join_local(&mut fx, &g("a"), &[p]);
        assert_eq!(s.table.members(&g("a")), vec![p, p]);
        assert_eq!(fx.monitored.len(), 1, "one monitor per process");
        assert_eq!(s.leave_local(&mut fx, &g("a"), &[p]), vec![p]);
        assert_eq!(s.table.members(&g("a")), vec![p]);
        assert!(fx.demonitored.is_empty());
        assert_eq!(s.leave_local(&mut fx, &g("a"), &[p]), vec![p]);
        assert!(s.table.groups().is_empty(), "an empty group disappears");
        assert_eq!(fx.demonitored.len(), 1);
        assert!(
            s.leave_local(&mut fx, &g("a"), &[p]).is_empty(),
            "not_joined"
        );
        assert_eq!(s.monitors(), 0);
    }

    #[test]
    fn a_local_member_that_ends_leaves_every_group_it_joined() {
        let (mut s, mut fx) = (state(), Fx::default());
        let [p, q] = local_pids(2)[..] else { panic!() };
        s.join_local(&mut fx, &g("a"), &[p, q]);
        s.join_local(&mut fx, &g("b"), &[p]);
        let m = fx.monitor_of(p);
        let gone = s.down(&mut fx, m, p);
        let Gone::Member(mut groups) = gone else {
            panic!("{gone:?}")
        };
        groups.sort();
        assert_eq!(groups, vec![g("a"), g("b")]);
        assert_eq!(s.table.members(&g("a")), vec![q]);
        assert_eq!(s.table.local_members(&g("a")), vec![q]);
        assert!(s.table.members(&g("b")).is_empty());
        assert_eq!(s.table.local_groups(), vec![g("a")]);
    }

    #[test]
    fn a_stale_monitor_changes_nothing() {
        let (mut s, mut fx) = (state(), Fx::default());
        let p = local_pids(1)[0];
        s.join_local(&mut fx, &g("a"), &[p]);
        assert_eq!(s.down(&mut fx, Ref::new(), p), Gone::Unknown);
        assert_eq!(s.table.members(&g("a")), vec![p]);
    }

    #[test]
    fn sync_replaces_what_a_peer_had_said() {
        let (mut s, mut fx) = (state(), Fx::default());
        let peer = remote_pids("n1@h", 1)[0];
        let m = remote_pids("n1@h", 4);
        assert!(s.discover(&mut fx, peer));
        assert!(
            !s.discover(&mut fx, peer),
            "known peers are not monitored again"
        );
        s.sync(
            &mut fx,
            peer,
            vec![(g("a"), vec![m[1], m[2]]), (g("b"), vec![m[3]])],
        );
        assert_eq!(s.table.members(&g("a")), vec![m[1], m[2]]);
        assert!(s.table.local_members(&g("a")).is_empty());
        s.sync(&mut fx, peer, vec![(g("a"), vec![m[2]])]);
        assert_eq!(s.table.members(&g("a")), vec![m[2]]);
        assert!(s.table.members(&g("b")).is_empty());
        assert_eq!(fx.monitored.len(), 1);
    }

    #[test]
    fn a_sync_from_an_unknown_peer_makes_it_a_peer() {
        let (mut s, mut fx) = (state(), Fx::default());
        let peer = remote_pids("n2@h", 1)[0];
        s.sync(&mut fx, peer, vec![(g("a"), vec![peer])]);
        assert!(s.knows(peer));
        assert_eq!(fx.monitored, vec![(peer, fx.monitor_of(peer))]);
    }

    #[test]
    fn peers_cannot_speak_for_other_nodes() {
        let (mut s, mut fx) = (state(), Fx::default());
        let peer = remote_pids("n3@h", 1)[0];
        let other = remote_pids("n4@h", 1)[0];
        let mine = local_pids(1)[0];
        s.discover(&mut fx, peer);
        assert!(!s.join_remote(&mut fx, peer, &g("a"), &[other]));
        assert!(!s.join_remote(&mut fx, peer, &g("a"), &[mine]));
        s.sync(&mut fx, peer, vec![(g("a"), vec![other, mine])]);
        assert!(s.table.members(&g("a")).is_empty());
        s.join_local(&mut fx, &g("a"), &[mine]);
        assert!(s.leave_remote(&mut fx, peer, &[mine], &[g("a")]));
        assert_eq!(
            s.table.members(&g("a")),
            vec![mine],
            "a peer cannot remove our member"
        );
    }

    #[test]
    fn joins_and_leaves_from_unknown_peers_are_ignored() {
        let (mut s, mut fx) = (state(), Fx::default());
        let peer = remote_pids("n5@h", 2);
        assert!(!s.join_remote(&mut fx, peer[0], &g("a"), &[peer[1]]));
        assert!(!s.leave_remote(&mut fx, peer[0], &[peer[1]], &[g("a")]));
        assert!(s.table.groups().is_empty());
    }

    #[test]
    fn a_peer_that_goes_down_takes_its_members_along() {
        let (mut s, mut fx) = (state(), Fx::default());
        let peer = remote_pids("n6@h", 3);
        let mine = local_pids(1)[0];
        s.discover(&mut fx, peer[0]);
        s.join_remote(&mut fx, peer[0], &g("a"), &[peer[1], peer[2]]);
        s.join_local(&mut fx, &g("a"), &[mine]);
        assert_eq!(s.table.members(&g("a")).len(), 3);
        let m = fx.monitor_of(peer[0]);
        assert_eq!(s.down(&mut fx, m, peer[0]), Gone::Peer);
        assert_eq!(s.table.members(&g("a")), vec![mine]);
        assert!(s.peers().is_empty());
    }

    #[test]
    fn watchers_see_joins_and_leaves_and_stop_after_demonitor() {
        let (mut s, mut fx) = (state(), Fx::default());
        let [w1, w2, p] = local_pids(3)[..] else {
            panic!()
        };
        let (scope_ref, groups) = s.monitor_scope(&mut fx, w1);
        assert!(groups.is_empty());
        s.join_local(&mut fx, &g("a"), &[p]);
        let (group_ref, members) = s.monitor_group(&mut fx, w2, g("a"));
        assert_eq!(members, vec![p]);
        s.join_local(&mut fx, &g("b"), &[p]);
        s.leave_local(&mut fx, &g("a"), &[p]);
        let seen: Vec<_> = fx
            .updates
            .iter()
            .map(|(to, u)| (*to, u.monitor, u.event, u.group.clone()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (w1, scope_ref, Event::Join, g("a")),
                (w1, scope_ref, Event::Join, g("b")),
                (w1, scope_ref, Event::Leave, g("a")),
                (w2, group_ref, Event::Leave, g("a")),
            ]
        );
        assert!(s.demonitor(&mut fx, scope_ref));
        assert!(s.demonitor(&mut fx, group_ref));
        assert!(!s.demonitor(&mut fx, group_ref));
        fx.updates.clear();
        s.join_local(&mut fx, &g("a"), &[p]);
        assert!(fx.updates.is_empty());
    }

    #[test]
    fn a_watcher_that_ends_is_forgotten() {
        let (mut s, mut fx) = (state(), Fx::default());
        let [w, p] = local_pids(2)[..] else { panic!() };
        let (r, _) = s.monitor_group(&mut fx, w, g("a"));
        assert_eq!(s.down(&mut fx, r, w), Gone::Watcher);
        s.join_local(&mut fx, &g("a"), &[p]);
        assert!(fx.updates.is_empty());
        assert_eq!(s.monitors(), 1, "only the member is monitored");
    }

    #[test]
    fn local_groups_list_each_join() {
        let (mut s, mut fx) = (state(), Fx::default());
        let [p, q] = local_pids(2)[..] else { panic!() };
        s.join_local(&mut fx, &g("a"), &[p, q, p]);
        let mut sync = s.local_groups();
        assert_eq!(sync.len(), 1);
        sync[0].1.sort_by_key(|p| p.to_bits());
        let mut expected = vec![p, p, q];
        expected.sort_by_key(|p| p.to_bits());
        assert_eq!(sync[0].1, expected);
    }
}
