//! The observer's web dashboard: the pages of `beamish observer` in a
//! browser, with live charts over server-sent events, and a
//! Prometheus-format `/metrics`.
//!
//! | path | what |
//! |---|---|
//! | `/` | the dashboard (one page, no external resources) |
//! | `/events` | server-sent events: one `sample` event per interval, the JSON of `/api/sample` |
//! | `/api/sample` | the latest sample: system, memory, top processes |
//! | `/api/applications` | every application's supervision tree |
//! | `/metrics` | Prometheus text format |
//!
//! One sampler thread takes a sample per interval (off the reactor: a pass
//! over a million processes takes tens of milliseconds) and publishes it in
//! a `watch` channel; every event stream sends the latest sample when it
//! changes. A client that stops reading holds at most the one sample its
//! stream is writing, never a queue, and the node is not slowed by it.
//! The server runs on the runtime's tokio reactor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Observer, ProcessSummary, Sample, SupervisorNode};
use crate::{Error, Handle};

/// Rows of each ranking in a sample.
const TOP: usize = 50;

/// The page.
const PAGE: &str = include_str!("web_page.html");

/// A running dashboard; stops when dropped.
pub struct Dashboard {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Dashboard {
    /// The address it listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.running
            .store(false, std::sync::atomic::Ordering::Release);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Clone)]
struct Shared {
    samples: watch::Receiver<Arc<Value>>,
    handle: Handle,
}

/// Serves the dashboard of the runtime behind `handle` on `addr`, a
/// sample every `interval`.
///
/// # Errors
/// `Io` if the address cannot be bound.
pub fn serve(handle: &Handle, addr: SocketAddr, interval: Duration) -> Result<Dashboard, Error> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| Error::Io(e.to_string().into()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Io(e.to_string().into()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Io(e.to_string().into()))?;
    let mut observer = Observer::new(handle);
    let first = Arc::new(sample_json(&observer.sample(TOP)));
    let (tx, rx) = watch::channel(first);
    let running = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep = running.clone();
    std::thread::Builder::new()
        .name("beamish-dashboard".into())
        .spawn(move || {
            while keep.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(interval);
                let sample = Arc::new(sample_json(&observer.sample(TOP)));
                if tx.send(sample).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::Io(e.to_string().into()))?;
    let state = Shared {
        samples: rx,
        handle: handle.clone(),
    };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/events", get(events))
        .route("/api/sample", get(latest))
        .route("/api/applications", get(applications))
        .route("/metrics", get(metrics))
        .with_state(state);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let io = &handle.shared().io;
    let _enter = io.enter();
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Io(e.to_string().into()))?;
    io.spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        });
        if let Err(e) = server.await {
            tracing::warn!(%e, "the dashboard stopped");
        }
    });
    Ok(Dashboard {
        addr,
        stop: Some(stop_tx),
        running,
    })
}

async fn latest(State(s): State<Shared>) -> Response {
    let v = s.samples.borrow().clone();
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn events(
    State(s): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = s.samples.clone();
    let stream = stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let v = rx.borrow_and_update().clone();
        Some((
            Ok(Event::default().event("sample").data(v.to_string())),
            (rx, false),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn applications(State(s): State<Shared>) -> Response {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = s.handle.spawn(async move {
        let trees = super::application_trees().await;
        let v: Vec<Value> = trees
            .iter()
            .map(|(name, t)| match t {
                Ok(t) => json!({"name": &**name, "tree": tree_json(t)}),
                Err(e) => json!({"name": &**name, "error": e.to_string()}),
            })
            .collect();
        let _ = tx.send(Value::Array(v));
    });
    if spawned.is_err() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the runtime is shutting down",
        )
            .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(v)) => ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        _ => (
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "no answer from the supervisors",
        )
            .into_response(),
    }
}

fn tree_json(t: &SupervisorNode) -> Value {
    json!({
        "pid": t.pid.to_string(),
        "name": t.name.as_deref(),
        "kind": t.kind.as_str(),
        "children": t.children.iter().map(|c| json!({
            "id": &*c.info.id,
            "pid": c.info.pid.map(|p| p.to_string()),
            "kind": c.info.kind.as_str(),
            "restarts": c.info.restarts,
            "tree": c.tree.as_ref().map(tree_json),
        })).collect::<Vec<_>>(),
    })
}

fn rows(v: &[ProcessSummary]) -> Value {
    Value::Array(
        v.iter()
            .map(|p| {
                json!({
                    "pid": p.pid.to_string(),
                    "name": p.name.as_deref(),
                    "reductions": p.reductions,
                    "recent": p.recent_reductions,
                    "queue": p.message_queue_len,
                    "memory": p.memory,
                    "status": p.status.as_str(),
                })
            })
            .collect(),
    )
}

fn sample_json(s: &Sample) -> Value {
    let sys = &s.system;
    let m = &s.memory;
    json!({
        "uptime_ms": sys.uptime.as_millis() as u64,
        "interval_ms": sys.interval.map(|d| d.as_millis() as u64),
        "processes": sys.processes,
        "spawn_rate": sys.spawn_rate(),
        "exit_rate": sys.exit_rate(),
        "total_spawned": sys.total_spawned,
        "total_exited": sys.total_exited,
        "reduction_rate": sys.reduction_rate(),
        "utilization": sys.utilization(),
        "schedulers": sys.schedulers.iter().map(|l| json!({
            "id": l.id + 1, "spare": l.spare, "utilization": l.utilization(), "run_queue": l.run_queue,
        })).collect::<Vec<_>>(),
        "global_run_queue": sys.global_run_queue,
        "timers": sys.timers,
        "registered": sys.registered,
        "atoms": sys.atoms,
        "long_schedules": sys.long_schedules,
        "memory": {
            "processes": m.processes, "mailboxes": m.mailboxes, "timers": m.timers,
            "dist_buffers": m.dist_buffers, "rss": m.os_rss,
        },
        "messages": m.mailbox_messages,
        "top": {
            "reductions": rows(&s.top_reductions),
            "message_queue": rows(&s.top_message_queue),
            "memory": rows(&s.top_memory),
        },
    })
}

/// One Prometheus sample line.
fn metric(out: &mut String, name: &str, help: &str, kind: &str, values: &[(String, f64)]) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in values {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

async fn metrics(State(s): State<Shared>) -> Response {
    let v = s.samples.borrow().clone();
    let num = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    let mut out = String::new();
    metric(
        &mut out,
        "beamish_processes",
        "Live processes.",
        "gauge",
        &[(String::new(), num("/processes"))],
    );
    metric(
        &mut out,
        "beamish_spawned_total",
        "Processes spawned.",
        "counter",
        &[(String::new(), num("/total_spawned"))],
    );
    metric(
        &mut out,
        "beamish_exited_total",
        "Processes ended.",
        "counter",
        &[(String::new(), num("/total_exited"))],
    );
    metric(
        &mut out,
        "beamish_long_schedules_total",
        "long_schedule reports.",
        "counter",
        &[(String::new(), num("/long_schedules"))],
    );
    metric(
        &mut out,
        "beamish_reductions_per_second",
        "Reductions per second over the last window.",
        "gauge",
        &[(String::new(), num("/reduction_rate"))],
    );
    metric(
        &mut out,
        "beamish_mailbox_messages",
        "Messages waiting in mailboxes.",
        "gauge",
        &[(String::new(), num("/messages"))],
    );
    let scheds = v
        .pointer("/schedulers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let per = |key: &str| -> Vec<(String, f64)> {
        scheds
            .iter()
            .map(|s| {
                let id = s.get("id").and_then(Value::as_u64).unwrap_or(0);
                (
                    format!("{{scheduler=\"{id}\"}}"),
                    s.get(key).and_then(Value::as_f64).unwrap_or(0.0),
                )
            })
            .collect()
    };
    metric(
        &mut out,
        "beamish_scheduler_utilization",
        "Busy share of each scheduler thread over the last interval.",
        "gauge",
        &per("utilization"),
    );
    metric(
        &mut out,
        "beamish_run_queue",
        "Processes in each scheduler's queue.",
        "gauge",
        &per("run_queue"),
    );
    let kinds = ["processes", "mailboxes", "timers", "dist_buffers", "rss"];
    let mem: Vec<(String, f64)> = kinds
        .iter()
        .map(|k| (format!("{{kind=\"{k}\"}}"), num(&format!("/memory/{k}"))))
        .collect();
    metric(
        &mut out,
        "beamish_memory_bytes",
        "Memory by kind (mailboxes: a lower bound; rss: the OS process).",
        "gauge",
        &mem,
    );
    #[cfg(feature = "dist")]
    {
        let conns = crate::dist::connection_stats();
        let by = |f: &dyn Fn(&crate::dist::ConnectionStats) -> u64| -> Vec<(String, f64)> {
            conns
                .iter()
                .map(|c| (format!("{{node=\"{}\"}}", c.node), f(c) as f64))
                .collect()
        };
        metric(
            &mut out,
            "beamish_dist_bytes_in_total",
            "Bytes read from each distribution connection.",
            "counter",
            &by(&|c| c.bytes_in),
        );
        metric(
            &mut out,
            "beamish_dist_bytes_out_total",
            "Bytes written to each distribution connection.",
            "counter",
            &by(&|c| c.bytes_out),
        );
        metric(
            &mut out,
            "beamish_dist_messages_in_total",
            "Messages received on each connection.",
            "counter",
            &by(&|c| c.messages_in),
        );
        metric(
            &mut out,
            "beamish_dist_messages_out_total",
            "Messages sent on each connection.",
            "counter",
            &by(&|c| c.messages_out),
        );
        metric(
            &mut out,
            "beamish_dist_out_queue_bytes",
            "Bytes encoded and not yet written, per connection.",
            "gauge",
            &by(&|c| c.out_queue_bytes),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
