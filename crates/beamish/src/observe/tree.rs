//! Supervision trees, as OTP's observer draws them: every supervisor
//! (static or dynamic) answers one introspection message with its children,
//! and the tree is walked from a root supervisor or from every running
//! [`crate::otp::Application`].

use std::sync::Arc;
use std::time::Duration;

use crate::otp::supervisor::{ChildInfo, ChildKind, Strategy};
use crate::{Down, Error, Pid, Ref};

/// How long a supervisor has to answer before it is reported as
/// [`TreeKind::Unknown`] (a process started as a supervisor child that
/// does not speak the protocol, or one that is stuck).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Levels walked at most (a tree deeper than this is cut, not followed).
const MAX_DEPTH: usize = 64;

/// What kind of supervisor a node of the tree is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeKind {
    /// A [`crate::otp::Supervisor`] with its strategy.
    Supervisor(Strategy),
    /// A [`crate::otp::DynamicSupervisor`].
    DynamicSupervisor,
    /// A child of kind supervisor that did not answer as one in time.
    Unknown,
}

impl TreeKind {
    /// The strategy in OTP's words (`simple_one_for_one` for a dynamic
    /// supervisor), or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TreeKind::Supervisor(Strategy::OneForOne) => "one_for_one",
            TreeKind::Supervisor(Strategy::OneForAll) => "one_for_all",
            TreeKind::Supervisor(Strategy::RestForOne) => "rest_for_one",
            TreeKind::DynamicSupervisor => "simple_one_for_one",
            TreeKind::Unknown => "unknown",
        }
    }
}

/// A supervisor and its children.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupervisorNode {
    /// The supervisor.
    pub pid: Pid,
    /// Its registered name.
    pub name: Option<Arc<str>>,
    /// Static, dynamic, or not answering.
    pub kind: TreeKind,
    /// Its children, in its own order (start order for a static one).
    pub children: Vec<TreeChild>,
}

/// One child of a supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TreeChild {
    /// What the supervisor reports of it (id, pid, kind, state, restarts).
    pub info: ChildInfo,
    /// Its own registered name.
    pub name: Option<Arc<str>>,
    /// Its subtree, for a running child of kind supervisor.
    pub tree: Option<SupervisorNode>,
}

impl SupervisorNode {
    /// Every process of the tree (supervisors and children), depth first.
    pub fn pids(&self) -> Vec<Pid> {
        let mut out = vec![self.pid];
        for c in &self.children {
            match &c.tree {
                Some(t) => out.extend(t.pids()),
                None => out.extend(c.info.pid),
            }
        }
        out
    }
}

/// Supervisor ← observer: your children, please.
pub(crate) struct TreeQuery {
    from: Pid,
    tag: Ref,
}

/// Supervisor → observer.
struct TreeAnswer {
    tag: Ref,
    kind: TreeKind,
    children: Vec<ChildInfo>,
}

impl TreeQuery {
    /// Answers the query for a supervisor of `kind` with `children`.
    pub(crate) fn answer(self, kind: TreeKind, children: Vec<ChildInfo>) {
        self.from.send(TreeAnswer {
            tag: self.tag,
            kind,
            children,
        });
    }
}

/// The supervision tree under `supervisor`: its children and, recursively,
/// theirs. A child of kind supervisor that does not answer within two
/// seconds is listed with [`TreeKind::Unknown`] and no children.
///
/// # Errors
/// `NoProc` if `supervisor` is not alive; `Timeout` if it does not answer
/// as a supervisor.
///
/// # Panics
/// Outside a beamish process.
pub async fn supervision_tree(supervisor: Pid) -> Result<SupervisorNode, Error> {
    let (kind, children) = ask(supervisor).await?;
    let mut node = SupervisorNode {
        pid: supervisor,
        name: crate::registry::name_of(supervisor),
        kind,
        children: Vec::with_capacity(children.len()),
    };
    // Iterative walk: (path to the node in `node`, its children to expand).
    let mut stack: Vec<(Vec<usize>, Vec<ChildInfo>)> = vec![(Vec::new(), children)];
    while let Some((path, children)) = stack.pop() {
        let mut expanded = Vec::with_capacity(children.len());
        let mut below = Vec::new();
        for (i, info) in children.into_iter().enumerate() {
            let name = info.pid.and_then(crate::registry::name_of);
            let tree = match (info.kind, info.pid) {
                (ChildKind::Supervisor, Some(pid)) if path.len() < MAX_DEPTH => {
                    Some(match ask(pid).await {
                        Ok((kind, grandchildren)) => {
                            let mut p = path.clone();
                            p.push(i);
                            below.push((p, grandchildren));
                            SupervisorNode {
                                pid,
                                name: name.clone(),
                                kind,
                                children: Vec::new(),
                            }
                        }
                        Err(_) => SupervisorNode {
                            pid,
                            name: name.clone(),
                            kind: TreeKind::Unknown,
                            children: Vec::new(),
                        },
                    })
                }
                _ => None,
            };
            expanded.push(TreeChild { info, name, tree });
        }
        at_path(&mut node, &path).children = expanded;
        stack.extend(below);
    }
    Ok(node)
}

fn at_path<'a>(mut node: &'a mut SupervisorNode, path: &[usize]) -> &'a mut SupervisorNode {
    for &i in path {
        node = node.children[i]
            .tree
            .as_mut()
            .expect("a path only leads through subtrees");
    }
    node
}

/// Asks one supervisor for its children.
async fn ask(supervisor: Pid) -> Result<(TreeKind, Vec<ChildInfo>), Error> {
    let mark = crate::mark();
    let mref = crate::monitor(supervisor);
    let tag = Ref::new();
    supervisor.send(TreeQuery {
        from: crate::self_pid(),
        tag,
    });
    let answer = crate::receive_match(move |m| {
        m.downcast_ref::<TreeAnswer>().is_some_and(|a| a.tag == tag)
            || m.downcast_ref::<Down>().is_some_and(|d| d.monitor == mref)
    })
    .after_mark(mark)
    .timeout(ANSWER_TIMEOUT)
    .await;
    crate::demonitor_flush(mref);
    let Some(msg) = answer else {
        return Err(Error::Timeout);
    };
    match msg.downcast::<TreeAnswer>() {
        Ok(a) => Ok((a.kind, a.children)),
        Err(_) => Err(Error::NoProc(supervisor)),
    }
}

/// Every running [`crate::otp::Application`] of this runtime with its
/// supervision tree, by application name.
///
/// # Panics
/// Outside a beamish process.
pub async fn application_trees() -> Vec<(Arc<str>, Result<SupervisorNode, Error>)> {
    let mut names: Vec<Arc<str>> = crate::registered()
        .into_iter()
        .filter_map(|n| {
            n.strip_prefix(crate::otp::application::MASTER_PREFIX)
                .map(Arc::from)
        })
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let tree = match crate::otp::Application::whereis(&name).await {
            Some(app) => supervision_tree(app.supervisor().pid()).await,
            None => Err(Error::NoProc(crate::self_pid())),
        };
        out.push((name, tree));
    }
    out
}
