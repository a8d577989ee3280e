//! A TCP echo server: one beamish process per connection.
//!
//! ```text
//! cargo run --release --example tcp_echo -- 7007
//! ```
//!
//! prints the address it listens on (port from the first argument, default
//! 7007; 0 picks a free port), then, in another terminal:
//!
//! ```text
//! nc 127.0.0.1 7007
//! hello
//! hello
//! ```
//!
//! Every line you type comes back. An acceptor process accepts connections
//! and spawns a process for each; that process echoes until the client
//! closes. A process that panics ends alone, as in Erlang: send the line
//! `PANIC` and your connection's process crashes (the panic message is
//! printed, and the process's destructors close your socket) while every
//! other connection, and the acceptor, carry on.
//!
//! The integration test `tests/tcp_echo.rs` includes this file as a module
//! and runs [`serve`] itself.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

/// Port used when none is given on the command line.
pub const DEFAULT_PORT: u16 = 7007;

/// The longest line echoed at once: longer lines come back in pieces, so a
/// client that never sends a newline cannot make the server buffer without
/// bound.
pub const MAX_LINE: u64 = 64 * 1024;

/// A connection that sends exactly this line makes its handler panic (to
/// show that a crash ends only that connection's process).
pub const PANIC_LINE: &[u8] = b"PANIC\n";

/// Accepts connections on `listener` forever, spawning one process per
/// connection. Must run inside a beamish process (it calls
/// [`beamish::spawn`]).
pub async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                // A process of its own: if `echo` panics, only this
                // connection's process ends; the acceptor is not linked to it.
                beamish::spawn(async move {
                    // An IO error (say, a reset by the peer) just ends the
                    // connection; the process exits normally.
                    let _ = echo(stream).await;
                });
            }
            Err(e) => {
                // Out of file descriptors, a connection aborted before it
                // was accepted, ...: none of them is the listener's fault.
                // Back off a little and keep accepting.
                eprintln!("tcp_echo: accept failed: {e}");
                beamish::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes everything read from `stream` back to it, line by line, until the
/// client closes its side.
///
/// # Panics
/// When the client sends the line [`PANIC_LINE`].
pub async fn echo(stream: TcpStream) -> std::io::Result<()> {
    // Small request/response exchanges: don't let Nagle hold replies back.
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut writer = BufWriter::new(writer);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            // End of stream: the client closed. The process ends normally.
            writer.flush().await?;
            return Ok(());
        }
        if line == PANIC_LINE {
            panic!("tcp_echo: the client asked this connection's process to crash");
        }
        writer.write_all(&line).await?;
        // Pipelined lines already read are echoed in one write; flush once
        // nothing more is waiting.
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
}

#[allow(dead_code)] // the integration test includes this file without `main`
fn main() {
    let port = match std::env::args().nth(1) {
        None => DEFAULT_PORT,
        Some(arg) => match arg.parse::<u16>() {
            Ok(port) => port,
            Err(e) => {
                eprintln!("tcp_echo: bad port {arg:?}: {e}");
                eprintln!("usage: tcp_echo [PORT]   (default {DEFAULT_PORT})");
                std::process::exit(2);
            }
        },
    };
    let result = beamish::run(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("tcp_echo: listening on {}", listener.local_addr()?);
        println!(
            "tcp_echo: try `nc 127.0.0.1 {}`",
            listener.local_addr()?.port()
        );
        serve(listener).await;
        Ok::<(), std::io::Error>(())
    });
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("tcp_echo: {e}");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("tcp_echo: the runtime failed: {e}");
            std::process::exit(1);
        }
    }
}
