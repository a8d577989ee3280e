//! The `tracing` crate sees processes: spawn and exit events with the pid,
//! a `process` span around every poll (so what a process logs carries its
//! pid), and a `call` span around GenServer calls. One test: it installs
//! the process-wide subscriber.

use std::fmt::Write;
use std::sync::{Arc, Mutex};

use beamish::otp::{GenServer, Reply, ReplyTo};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

/// Span fields, kept in the span's extensions.
struct SpanFields(String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Seen {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields(String::new());
        attrs.record(&mut f);
        let line = format!(
            "span {} {}{}",
            attrs.metadata().target(),
            attrs.metadata().name(),
            f.0
        );
        self.0.lock().unwrap().push(line);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        let scope: Vec<String> = ctx
            .event_scope(event)
            .map(|s| {
                s.from_root()
                    .map(|span| {
                        let ext = span.extensions();
                        let fields = ext.get::<SpanFields>().map_or("", |x| x.0.as_str());
                        format!("{}{}", span.name(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let line = format!(
            "event {}{} in [{}]",
            event.metadata().target(),
            f.0,
            scope.join(", ")
        );
        self.0.lock().unwrap().push(line);
    }
}

struct Echo;

impl GenServer for Echo {
    type Call = u32;
    type Reply = u32;
    type Cast = ();

    async fn handle_call(&mut self, n: u32, _from: ReplyTo<u32>) -> Reply<u32> {
        Reply::reply(n)
    }
}

#[test]
fn spawns_exits_polls_and_calls_are_seen_by_a_subscriber() {
    let seen = Seen::default();
    tracing_subscriber::registry()
        .with(
            seen.clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
        )
        .init();
    let rt = beamish::Runtime::builder()
        .worker_threads(2)
        .build()
        .unwrap();
    let (child, server) = rt
        .block_on(async {
            let child = beamish::spawn(async {
                tracing::info!(target: "app", "hello from a process");
            });
            let server = beamish::otp::gen_server::start(Echo).await.unwrap();
            assert_eq!(server.call(7).await.unwrap(), 7);
            beamish::sleep(std::time::Duration::from_millis(20)).await;
            (child, server.pid())
        })
        .unwrap();
    drop(rt);
    let lines = seen.0.lock().unwrap().clone();
    let has = |pred: &dyn Fn(&str) -> bool| lines.iter().any(|l| pred(l));
    let pid = child.to_string();
    assert!(
        has(&|l| l.starts_with("event beamish::process")
            && l.contains("spawned")
            && l.contains(&format!("pid={pid}"))),
        "{lines:#?}"
    );
    assert!(
        has(&|l| l.contains("exited") && l.contains(&format!("pid={pid}"))),
        "{lines:#?}"
    );
    // What the process logged runs inside its `process` span.
    assert!(
        has(&|l| l.starts_with("event app") && l.contains(&format!("process pid={pid}"))),
        "{lines:#?}"
    );
    let server = server.to_string();
    assert!(
        has(&|l| l.starts_with("span beamish::gen_server call")
            && l.contains(&format!("server={server}"))),
        "{lines:#?}"
    );
}
