//! The name and lock tables (OTP's `global_names` and `global_locks`).
//!
//! The server is their only writer; the locker reads them (`can_set_lock`,
//! `is_global_lock_set`), as OTP's locker reads the ETS tables. They sit
//! behind one mutex shared by the two processes of one name server.

use std::collections::BTreeMap;

use crate::dist::Term;
use crate::{Pid, Ref};

use super::proto::LockId;

/// A registered name.
#[derive(Clone, Debug)]
pub(crate) struct Registered {
    /// The process.
    pub(crate) pid: Pid,
    /// Its resolve method, as a term (an export fun, usually).
    pub(crate) method: Term,
    /// Our monitor of `pid`.
    pub(crate) monitor: Ref,
}

/// A lock: one requester id, one or more holders.
#[derive(Clone, Debug)]
pub(crate) struct Lock {
    /// The requester id every holder locked with.
    pub(crate) requester: Term,
    /// The holders and our monitors of them.
    pub(crate) holders: Vec<(Pid, Ref)>,
}

/// Both tables.
#[derive(Default, Debug)]
pub(crate) struct Tables {
    /// Name -> registration.
    pub(crate) names: BTreeMap<Term, Registered>,
    /// Resource id -> lock.
    pub(crate) locks: BTreeMap<Term, Lock>,
    /// True when global's own lock was last removed because its holder
    /// died (not by `del_lock`): a late `register` that needed it is then
    /// not applied (OTP's `global_lock_down`).
    pub(crate) global_lock_down: bool,
}

impl Tables {
    /// Whether `id` could be locked now (OTP's `can_set_lock`).
    pub(crate) fn can_set_lock(&self, id: &LockId) -> bool {
        self.locks
            .get(&id.resource)
            .is_none_or(|l| l.requester == id.requester)
    }

    /// Whether anyone holds global's own lock.
    pub(crate) fn is_global_lock_set(&self) -> bool {
        self.locks.contains_key(&super::proto::a("global"))
    }

    /// The names registered to `pid`.
    pub(crate) fn names_of(&self, pid: Pid) -> Vec<Term> {
        self.names
            .iter()
            .filter(|(_, r)| r.pid == pid)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::proto::a;

    #[test]
    fn a_lock_is_shared_by_one_requester_only() {
        let mut t = Tables::default();
        let id = |req: i64| LockId {
            resource: a("global"),
            requester: Term::Int(req),
        };
        assert!(t.can_set_lock(&id(1)));
        assert!(!t.is_global_lock_set());
        t.locks.insert(
            a("global"),
            Lock {
                requester: Term::Int(1),
                holders: Vec::new(),
            },
        );
        assert!(t.is_global_lock_set());
        assert!(t.can_set_lock(&id(1)));
        assert!(!t.can_set_lock(&id(2)));
    }
}
