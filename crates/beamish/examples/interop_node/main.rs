//! A beamish node that real Erlang nodes can talk to: the node of the
//! interop contract.
//!
//! ```text
//! cargo run --release --example interop_node -- --name nut@127.0.0.1 --cookie secret
//! ```
//!
//! It registers with EPMD (starting an embedded one when none runs), prints
//! `ready` on stdout once it accepts connections, logs on stderr, and runs
//! until killed. A process registered as `echo` follows the protocol below;
//! every process it spawns for a `spawn` request does too. From `erl`:
//!
//! ```text
//! erl -name a@127.0.0.1 -setcookie secret
//! 1> {echo, 'nut@127.0.0.1'} ! {self(), make_ref(), hello}, flush().
//! Shell got {#Ref<0.1.2.3>,hello}
//! ```
//!
//! | request                            | what the process does                                  |
//! |------------------------------------|--------------------------------------------------------|
//! | `{From, Ref, spawn}`               | spawns another echo process, replies `{Ref, NewPid}`   |
//! | `{From, Ref, crash}`               | exits with `{crashed, Ref}`                            |
//! | `{From, Ref, link_me}`             | links to `From`, replies `{Ref, linked}`               |
//! | `{From, Ref, trap}`                | traps exits, replies `{Ref, trapping}`; then reports each `{'EXIT', Pid, Reason}` to `From` as `{exit_seen, Pid, Reason}` |
//! | `{From, Ref, monitor, Pid}`        | monitors `Pid`, replies `{Ref, monitoring}`; on `DOWN` sends `{down_seen, Pid, Reason}` |
//! | `{From, Ref, monitor_node, Node}`  | watches `Node`, replies `{Ref, monitoring_node}`; on nodedown sends `{nodedown_seen, Node}` |
//! | `{From, Ref, send, Dest, Term}`    | sends `Term` to a pid, a local name or `{Name, Node}`, replies `{Ref, sent}` |
//! | `{From, Ref, Term}`                | replies `{Ref, Term}`, the term exactly as received    |
//! | anything else                      | ignored                                                |

use beamish::dist::NodeConfig;

mod echo;

struct Args {
    name: String,
    cookie: String,
}

fn args() -> Result<Args, String> {
    let mut name = None;
    let mut cookie = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--name" => name = it.next(),
            "--cookie" => cookie = it.next(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        name: name.ok_or("--name NAME@HOST is required")?,
        cookie: cookie.ok_or("--cookie COOKIE is required")?,
    })
}

fn main() {
    echo::init_logging();
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("interop_node: {e}\nusage: interop_node --name NAME@HOST --cookie COOKIE");
            std::process::exit(2);
        }
    };
    let rt = beamish::Runtime::new().expect("runtime");
    let result = rt.block_on(echo::serve(
        NodeConfig::new(args.name, args.cookie),
        async { Ok(()) },
    ));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("interop_node: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("interop_node: {e}");
            std::process::exit(1);
        }
    }
}
