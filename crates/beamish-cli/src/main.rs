//! The `beamish` command: benchmarks of the beamish runtime, and a
//! distributed node.

mod bench;
mod bench_services;
mod node;
mod observer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command-line interface of `beamish`.
#[derive(Parser, Debug)]
#[command(
    name = "beamish",
    version,
    about = "Erlang/BEAM-style lightweight processes for Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs benchmark workloads, each in a fresh child process, and prints one
    /// `bench=<name> runtime=<runtime> <key>=<value> ...` line per run.
    Bench(bench::BenchOpts),
    /// Runs one workload in this very process and prints its line (the child
    /// side of `bench`).
    #[command(name = "bench-one", hide = true)]
    BenchOne(bench::OneOpts),
    /// Runs a distributed node (Erlang's distribution protocol) with the
    /// `echo` service; prints `ready` once it accepts connections.
    Node(node::NodeOpts),
    /// Look inside a running node (beamish or Erlang): processes, schedulers, memory.
    Observer(observer::ObserverOpts),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Bench(opts) => bench::main(opts),
        Command::BenchOne(opts) => bench::one(opts),
        Command::Node(opts) => node::main(opts),
        Command::Observer(opts) => observer::main(opts),
    }
}
