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
//!   erpc (a Rust function under Erlang's name, reading beamish's pg).

use beamish::dist::{Atom, Term};
use beamish::otp::{self, Codec, GenServer, Reply, ReplyTo, StartOptions};
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
    beamish::global::start().await?;
    beamish::pg::start()?;
    let me = Term::Tuple(vec![
        Term::Atom(Atom::new("bench_node").map_err(|e| beamish::Error::Config(e.to_string()))?),
        Term::Atom(beamish::dist::this_node()),
    ]);
    beamish::global::register_name(me, kv.pid()).await
}
