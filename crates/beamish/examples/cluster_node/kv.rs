//! `kv`: a key-value GenServer that Erlang calls with `gen_server`, under a
//! one_for_one supervisor that restarts it. Its requests, replies and casts
//! are terms (keys and values are any terms), so `GenServer::codec` is
//! `Codec::wire()` over `Term`: the server answers `gen_server:call/cast`
//! and `sys:get_state/get_status`. Each (re)start takes its names again in
//! `init`: local `kv`, global `{kv, NAME}`, and pg group `beamish_kv`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use beamish::dist::gen_protocol::{self, Dest};
use beamish::dist::{Atom, Term};
use beamish::otp::{
    self, ChildSpec, Codec, GenServer, Init, Reply, ReplyTo, StartOptions, Strategy, Supervisor,
    SupervisorFlags,
};
use beamish::{Error, Reason};

fn atom(name: &str) -> Term {
    Term::Atom(Atom::new(name).unwrap_or(Atom::UNDEFINED))
}

fn tuple(items: Vec<Term>) -> Term {
    Term::Tuple(items)
}

/// Starts the supervisor with `kv` under it; `node_name` is the name part
/// of this node's name.
pub async fn start(node_name: &str) -> Result<(), Error> {
    let global_name = tuple(vec![atom("kv"), atom(node_name)]);
    let spec = ChildSpec::worker("kv", move || {
        let kv = Kv {
            store: BTreeMap::new(),
            global_name: global_name.clone(),
        };
        async move {
            let server = otp::start_with(kv, StartOptions::new().link().name("kv")).await?;
            Ok(server.pid())
        }
    });
    let flags = SupervisorFlags::new(Strategy::OneForOne)
        .intensity(100)
        .period(Duration::from_secs(1));
    Supervisor::start_link_named("kv_sup", flags, vec![spec]).await?;
    Ok(())
}

/// The server's state.
struct Kv {
    store: BTreeMap<Term, Term>,
    global_name: Term,
}

impl GenServer for Kv {
    type Call = Term;
    type Reply = Term;
    type Cast = Term;

    /// Takes the global name and joins the pg group (the local name comes
    /// with the start).
    async fn init(&mut self) -> Init {
        let me = beamish::self_pid();
        if let Err(e) = beamish::global::re_register_name(self.global_name.clone(), me).await {
            return Init::Stop(Reason::other(format!("global name: {e}")));
        }
        if let Err(e) = beamish::pg::join(atom("beamish_kv"), me).await {
            return Init::Stop(Reason::other(format!("pg join: {e}")));
        }
        Init::Ok
    }

    async fn handle_call(&mut self, request: Term, _from: ReplyTo<Term>) -> Reply<Term> {
        match call(&mut self.store, request).await {
            Ok(reply) => Reply::reply(reply),
            Err(reason) => Reply::stop(reason, None),
        }
    }

    async fn handle_cast(&mut self, request: Term) -> otp::Flow {
        if let Some([Term::Atom(op), k, v]) = request.as_tuple()
            && op.as_str() == "put"
        {
            self.store.insert(k.clone(), v.clone());
        }
        otp::Flow::Ok
    }

    fn codec() -> Option<Codec<Kv>> {
        Some(Codec::wire())
    }

    /// `sys:get_state/1`: the store as a list of `{Key, Value}`.
    fn state_term(&self) -> Term {
        Term::List(
            self.store
                .iter()
                .map(|(k, v)| tuple(vec![k.clone(), v.clone()]))
                .collect(),
        )
    }
}

/// One call: the reply, or the reason to exit with.
async fn call(store: &mut BTreeMap<Term, Term>, request: Term) -> Result<Term, Reason> {
    let unknown = |req: &Term| {
        tuple(vec![
            atom("error"),
            tuple(vec![atom("unknown_request"), req.clone()]),
        ])
    };
    if let Term::Atom(a) = &request {
        return match a.as_str() {
            "crash" => Err(Reason::Term(Arc::new(tuple(vec![
                atom("crashed"),
                atom("kv"),
            ])))),
            _ => Ok(unknown(&request)),
        };
    }
    let Some(items) = request.as_tuple() else {
        return Ok(unknown(&request));
    };
    let op = match items.first() {
        Some(Term::Atom(a)) => a.as_str(),
        _ => return Ok(unknown(&request)),
    };
    Ok(match (op, &items[1..]) {
        ("put", [k, v]) => {
            store.insert(k.clone(), v.clone());
            atom("ok")
        }
        ("get", [k]) => match store.get(k) {
            Some(v) => tuple(vec![atom("ok"), v.clone()]),
            None => atom("not_found"),
        },
        ("delete", [k]) => {
            store.remove(k);
            atom("ok")
        }
        ("sleep", [Term::Int(ms)]) if *ms >= 0 => {
            beamish::sleep(Duration::from_millis(ms.unsigned_abs())).await;
            atom("ok")
        }
        ("global_whereis", [name]) => match beamish::global::whereis_name(name) {
            Some(pid) => Term::Pid(pid),
            None => atom("undefined"),
        },
        ("pg_members", [group]) => {
            let mut members: Vec<Term> = beamish::pg::get_members(group)
                .into_iter()
                .map(Term::Pid)
                .collect();
            members.sort();
            Term::List(members)
        }
        ("call", [dest, req, Term::Int(ms)]) if *ms >= 0 => {
            forward(dest, req.clone(), Duration::from_millis(ms.unsigned_abs())).await
        }
        _ => unknown(&request),
    })
}

/// `{call, Dest, Request, TimeoutMs}`: beamish's own call to `Dest`.
async fn forward(dest: &Term, request: Term, timeout: Duration) -> Term {
    let error = |e: Term| tuple(vec![atom("error"), e]);
    let target = match dest.as_tuple() {
        Some([Term::Atom(g), name]) if g.as_str() == "global" => {
            match beamish::global::whereis_name(name) {
                Some(pid) => Dest::Pid(pid),
                None => return error(atom("noproc")),
            }
        }
        _ => match Dest::from_term(dest) {
            Some(d) => d,
            None => return error(atom("noproc")),
        },
    };
    match gen_protocol::call(&target, request, Some(timeout)).await {
        Ok(reply) => tuple(vec![atom("ok"), reply]),
        Err(Error::Timeout) => error(atom("timeout")),
        Err(Error::Exited(r)) => error(tuple(vec![atom("exit"), r.to_term()])),
        Err(_) => error(atom("noproc")),
    }
}
