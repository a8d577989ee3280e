//! The registrar: registers and unregisters names on every known node under
//! global's lock (OTP's `the_registrar` and `trans_all_known`).
//!
//! 1. Lock `{global, Registrar}` on the boss (the greatest of us and the
//!    known nodes), then on all of them; if the known nodes changed
//!    meanwhile, or a node refused, unlock and retry after a random sleep.
//! 2. Run the job: `multi_call` of `{register, Name, Pid, Method}` or
//!    `{unregister, Name}` to every locked node (us included).
//! 3. Unlock, the boss last, and answer the caller.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::dist::{self, Atom, Term};
use crate::{Error, Pid, Ref};

use super::locker::{del_lock, delete_global_lock, set_lock_on_nodes};
use super::proto::{self, LockId, NameEntry, a};
use super::tables::Tables;
use super::{ApiReply, ApiValue, CALL_TIMEOUT, Resolve, Rng, SERVER, ToServer, call};

/// What the registrar does for a caller.
pub(crate) enum Job {
    Register {
        name: Term,
        pid: Pid,
        resolve: Resolve,
        /// `re_register_name`: replace whoever has it.
        replace: bool,
    },
    Unregister(Term),
}

/// A job and whom to answer.
pub(crate) struct RegistrarJob {
    pub(crate) job: Job,
    pub(crate) reply: Pid,
    pub(crate) id: Ref,
}

pub(crate) async fn run(server: Pid, tables: Arc<Mutex<Tables>>) {
    let mut rng = Rng::new();
    let me = crate::self_pid();
    loop {
        // Stray replies of timed-out calls and node-downs are dropped here.
        let msg = crate::receive_match(|_| true).await;
        let Ok(job) = msg.downcast::<RegistrarJob>() else {
            continue;
        };
        let id = LockId {
            resource: a("global"),
            requester: Term::Pid(me),
        };
        let nodes = set_lock_known(&id, &tables, &mut rng).await;
        let result = do_job(server, &tables, job.job, &nodes).await;
        delete_global_lock(&id, &nodes).await;
        job.reply.send(ApiReply {
            id: job.id,
            value: ApiValue::Done(result),
        });
    }
}

/// Locks global's lock on us and every known node (OTP's `set_lock_known`).
async fn set_lock_known(id: &LockId, tables: &Mutex<Tables>, rng: &mut Rng) -> Vec<Atom> {
    let here = dist::this_node();
    let mut times = 0u32;
    loop {
        let known = super::known_nodes().await.unwrap_or_default();
        let mut nodes = vec![here];
        nodes.extend(known.iter().copied());
        let boss = nodes
            .iter()
            .copied()
            .max_by(|x, y| x.as_str().cmp(y.as_str()))
            .unwrap_or(here);
        if set_lock_on_nodes(id, &[boss], tables).await {
            if set_lock_on_nodes(id, &nodes, tables).await {
                let now = super::known_nodes().await.unwrap_or_default();
                if now.iter().all(|n| known.contains(n)) {
                    return nodes;
                }
                // New nodes came: they are not locked. Unlock all and retry.
                delete_global_lock(id, &nodes).await;
            } else {
                del_lock(id, &[boss]).await;
            }
        }
        random_sleep(times, rng).await;
        times += 1;
    }
}

/// First up to 1/8 s, then doubling each time, up to 8 s (OTP's
/// `random_sleep`).
async fn random_sleep(times: u32, rng: &mut Rng) {
    let max_ms: u64 = if times > 5 {
        8000
    } else {
        (1u64 << times) * 1000 / 8
    };
    let ms = 1 + rng.below(usize::try_from(max_ms).unwrap_or(1)) as u64;
    crate::sleep(Duration::from_millis(ms)).await;
}

async fn do_job(
    server: Pid,
    tables: &Mutex<Tables>,
    job: Job,
    nodes: &[Atom],
) -> Result<(), Error> {
    match job {
        Job::Register {
            name,
            pid,
            resolve,
            replace,
        } => {
            if !replace {
                let (taken, others) = {
                    let t = tables.lock();
                    let taken = t
                        .names
                        .get(&name)
                        .is_some_and(|r| r.pid.is_remote() || r.pid.is_alive());
                    (taken, t.names_of(pid))
                };
                if taken {
                    return Err(Error::NameTaken(name.to_string().into()));
                }
                if let Some(other) = others.first() {
                    tracing::error!(%pid, name = %name, other = %other, "global: a process registered under several names");
                    return Err(Error::AlreadyRegistered(pid, other.to_string().into()));
                }
            }
            if let Resolve::Custom(cb) = &resolve {
                // Before our own register call, which this message precedes.
                server.send(ToServer::Callback {
                    name: name.clone(),
                    pid,
                    callback: cb.clone(),
                });
            }
            let entry = NameEntry {
                name,
                pid,
                method: resolve.method_term(),
            };
            let req = Term::tuple(vec![
                a("register"),
                entry.name.clone(),
                Term::Pid(entry.pid),
                entry.method.clone(),
            ]);
            let _ = call::multi_call(nodes, proto::atom(SERVER), &req, CALL_TIMEOUT).await;
            Ok(())
        }
        Job::Unregister(name) => {
            let req = Term::tuple(vec![a("unregister"), name]);
            let _ = call::multi_call(nodes, proto::atom(SERVER), &req, CALL_TIMEOUT).await;
            Ok(())
        }
    }
}
