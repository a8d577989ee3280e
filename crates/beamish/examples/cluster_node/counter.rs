//! `counter`: a GenServer that runs on one node of the cluster at a time,
//! registered with `global` as `beamish_counter` by a
//! [`Singleton`](beamish::cluster::Singleton) manager that every cluster
//! node runs. `incr` gives the next integer (from 1 with each instance),
//! `where` the node it runs on. When the instance is stopped because
//! another won a clash, `terminate` logs the reason
//! (`{shutdown,singleton_conflict}`).

use std::time::Duration;

use beamish::cluster::Singleton;
use beamish::dist::{self, Atom, Term};
use beamish::otp::{
    self, ChildSpec, Codec, GenServer, Reply, ReplyTo, StartOptions, Strategy, Supervisor,
    SupervisorFlags,
};
use beamish::{Error, Reason};

/// The global name.
pub const NAME: &str = "beamish_counter";

/// Starts the singleton's manager under a supervisor of its own.
pub async fn start() -> Result<(), Error> {
    let spec = ChildSpec::worker("counter", || async {
        let server = otp::start_with(
            Counter { next: 1 },
            StartOptions::new().link().trap_exit(true),
        )
        .await?;
        Ok(server.pid())
    });
    let name = Term::Atom(Atom::new(NAME).map_err(|e| Error::Config(e.to_string()))?);
    let singleton = Singleton::new(name, spec).intensity(10, Duration::from_secs(10));
    let flags = SupervisorFlags::new(Strategy::OneForOne)
        .intensity(10)
        .period(Duration::from_secs(10));
    Supervisor::start_link_named("counter_sup", flags, vec![singleton.child_spec()]).await?;
    Ok(())
}

struct Counter {
    next: i64,
}

impl GenServer for Counter {
    type Call = Term;
    type Reply = Term;
    type Cast = Term;

    async fn handle_call(&mut self, request: Term, _from: ReplyTo<Term>) -> Reply<Term> {
        Reply::reply(match &request {
            Term::Atom(a) if a.as_str() == "incr" => {
                let n = self.next;
                self.next += 1;
                Term::Int(n)
            }
            Term::Atom(a) if a.as_str() == "where" => Term::Atom(dist::this_node()),
            _ => Term::Tuple(vec![
                Term::Atom(Atom::ERROR),
                Term::Tuple(vec![
                    Term::Atom(Atom::new("unknown_request").unwrap_or(Atom::UNDEFINED)),
                    request.clone(),
                ]),
            ]),
        })
    }

    async fn terminate(&mut self, reason: &Reason) {
        tracing::info!(%reason, next = self.next, "counter: terminate");
    }

    fn codec() -> Option<Codec<Counter>> {
        Some(Codec::wire())
    }

    fn state_term(&self) -> Term {
        Term::Int(self.next)
    }
}
