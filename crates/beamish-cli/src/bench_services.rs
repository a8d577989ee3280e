//! What `beamish node --bench-services` serves to the `gen_call` and `erpc`
//! workloads, the same as `scripts/interop/beamish_bench.erl` serves on an
//! erl node:
//!
//! - `bench_kv`, a GenServer whose requests and replies are serde types:
//!   `{echo, I}` → `{ok, I}` for `gen_server:call` from erl, the same
//!   [`BenchCall`] and [`BenchReply`] values for a beamish caller;
//! - `beamish_bench:echo(X)` → `X`, a Rust function for `erpc:call`.

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

/// Starts `bench_kv` and registers `beamish_bench:echo/1` (the node must be
/// started).
pub async fn start() -> Result<(), beamish::Error> {
    otp::start_with(BenchKv, StartOptions::new().name(BENCH_KV)).await?;
    rpc::register(ECHO_MFA.0, ECHO_MFA.1, |args: Vec<Term>| async move {
        match <[Term; 1]>::try_from(args) {
            Ok([x]) => Ok(x),
            Err(_) => Err(Exception::Error(Term::Atom(Atom::BADARG))),
        }
    })
}
