//! What `beamish node --bench-services` serves to the `gen_call` and `erpc`
//! workloads, the same as `scripts/interop/beamish_bench.erl` serves on an
//! erl node:
//!
//! - `bench_kv`, a GenServer whose requests and replies are serde types:
//!   `{echo, I}` → `{ok, I}` for `gen_server:call` from erl, the same
//!   [`BenchCall`] and [`BenchReply`] values for a beamish caller;
//! - `beamish_bench:echo(X)` → `X`, a Rust function for `erpc:call`;
//! - for `cluster`: `global` and the default `pg` scope running, the global
//!   name `{bench_node, Node}`, and `pg:get_members(Group)` answered to
//!   erpc (a Rust function under Erlang's name, reading beamish's pg);
//! - for `failover`: `fo_counter`, a [`Singleton`] registered globally
//!   (`where` → the node it runs on, `incr` → the next integer), and
//!   `global:whereis_name(Name)` answered to erpc.

use beamish::cluster::Singleton;
use beamish::dist::{Atom, Term};
use beamish::otp::{self, ChildSpec, Codec, GenServer, Reply, ReplyTo, StartOptions};
use beamish::rpc::{self, Exception};
use serde::{Deserialize, Serialize};

/// The server's registered name.
pub const BENCH_KV: &str = "bench_kv";
/// The module and function of the Rust function erl calls.
pub const ECHO_MFA: (&str, &str) = ("beamish_bench", "echo");

/// A request to `bench_kv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchCall {
    /// `{echo, I}`.
    Echo(i64),
}

/// `bench_kv`'s reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchReply {
    /// `{ok, I}`.
    Ok(i64),
}

/// The `bench_kv` server (it keeps no state: the figure is the call's).
pub struct BenchKv;

impl GenServer for BenchKv {
    type Call = BenchCall;
    type Reply = BenchReply;
    type Cast = ();

    async fn handle_call(
        &mut self,
        request: BenchCall,
        _: ReplyTo<BenchReply>,
    ) -> Reply<BenchReply> {
        let BenchCall::Echo(i) = request;
        Reply::reply(BenchReply::Ok(i))
    }

    fn codec() -> Option<Codec<BenchKv>> {
        Some(Codec::wire())
    }
}

/// The global name of the `failover` workload's singleton.
pub const FO_COUNTER: &str = "fo_counter";

/// The `failover` singleton: `where` → this node, `incr` → the next
/// integer (from 1 with each instance); its requests are terms, so erl
/// calls it too.
struct FoCounter(i64);

impl GenServer for FoCounter {
    type Call = Term;
    type Reply = Term;
    type Cast = ();

    async fn handle_call(&mut self, request: Term, _: ReplyTo<Term>) -> Reply<Term> {
        Reply::reply(match &request {
            Term::Atom(a) if a.as_str() == "where" => Term::Atom(beamish::dist::this_node()),
            Term::Atom(a) if a.as_str() == "incr" => {
                self.0 += 1;
                Term::Int(self.0)
            }
            _ => Term::Atom(Atom::BADARG),
        })
    }

    fn codec() -> Option<Codec<FoCounter>> {
        Some(Codec::wire())
    }
}

/// The one argument of a call, or `badarg`.
fn one_arg(args: Vec<Term>) -> Result<Term, Exception> {
    match <[Term; 1]>::try_from(args) {
        Ok([x]) => Ok(x),
        Err(_) => Err(Exception::Error(Term::Atom(Atom::BADARG))),
    }
}

/// Starts `bench_kv`, `global` and `pg`, and registers the functions (the
/// node must be started).
pub async fn start() -> Result<(), beamish::Error> {
    let kv = otp::start_with(BenchKv, StartOptions::new().name(BENCH_KV)).await?;
    rpc::register(ECHO_MFA.0, ECHO_MFA.1, |args: Vec<Term>| async move {
        one_arg(args)
    })?;
    rpc::register("pg", "get_members", |args: Vec<Term>| async move {
        let group = one_arg(args)?;
        Ok(Term::List(
            beamish::pg::get_members(&group)
                .into_iter()
                .map(Term::Pid)
                .collect(),
        ))
    })?;
    rpc::register("global", "whereis_name", |args: Vec<Term>| async move {
        let name = one_arg(args)?;
        Ok(beamish::global::whereis_name(&name).map_or(Term::Atom(Atom::UNDEFINED), Term::Pid))
    })?;
    beamish::global::start().await?;
    beamish::pg::start()?;
    let counter = ChildSpec::worker(FO_COUNTER, || async {
        let s = otp::start_with(FoCounter(0), StartOptions::new().link().trap_exit(true)).await?;
        Ok(s.pid())
    });
    let name =
        Term::Atom(Atom::new(FO_COUNTER).map_err(|e| beamish::Error::Config(e.to_string()))?);
    Singleton::new(name, counter)
        .intensity(100, std::time::Duration::from_secs(1))
        .start()
        .await?;
    let me = Term::Tuple(vec![
        Term::Atom(Atom::new("bench_node").map_err(|e| beamish::Error::Config(e.to_string()))?),
        Term::Atom(beamish::dist::this_node()),
    ]);
    beamish::global::register_name(me, kv.pid()).await
}
