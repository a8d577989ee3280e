//! The web dashboard (`observe::web`): its JSON, `/metrics` and event
//! stream over plain HTTP; clients that never read their stream; and the
//! page itself in headless Chromium, driven over the DevTools protocol as
//! a person would look at it (the process count, a known registered
//! process, charts that move, a screenshot).
#![cfg(feature = "web")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use beamish::observe::web;
use beamish::otp::{Application, ChildSpec, Strategy, SupervisorFlags};
use beamish::{Runtime, receive};
use serde_json::Value;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A runtime with a registered process holding 50 messages, and an
/// application, and its dashboard.
fn setup() -> (Runtime, web::Dashboard) {
    let rt = Runtime::builder().worker_threads(2).build().unwrap();
    rt.block_on(async {
        let probe = beamish::spawn(async { receive::<()>().await });
        beamish::register("dashboard_probe", probe).unwrap();
        for i in 0..50u32 {
            probe.send(i);
        }
        let worker = ChildSpec::worker("clerk", || async {
            Ok(beamish::spawn_link(async { receive::<()>().await }))
        });
        let app = Application::start(
            "shop",
            SupervisorFlags::new(Strategy::OneForOne),
            vec![worker],
        )
        .await
        .unwrap();
        std::mem::forget(app);
    })
    .unwrap();
    let dash = web::serve(&rt.handle(), "127.0.0.1:0".parse().unwrap(), ms(200)).unwrap();
    (rt, dash)
}

/// GET `path`: (status, body). Reads the body by its `Content-Length`
/// when there is one (Chromium's DevTools server keeps the connection
/// open), else to the end.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if length.is_some_and(|len| body.len() >= len) {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

#[test]
fn json_metrics_and_applications() {
    let (_rt, dash) = setup();
    let addr = dash.local_addr();
    std::thread::sleep(ms(500));
    let (status, body) = get(addr, "/api/sample");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["processes"].as_u64().unwrap() >= 4, "{v}");
    let q = &v["top"]["message_queue"][0];
    assert_eq!(
        (q["name"].as_str(), q["queue"].as_u64()),
        (Some("dashboard_probe"), Some(50)),
        "{v}"
    );
    assert_eq!(v["schedulers"].as_array().unwrap().len(), 2);

    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    for needle in [
        "# TYPE beamish_processes gauge",
        "beamish_processes ",
        "beamish_memory_bytes{kind=\"processes\"} ",
        "beamish_scheduler_utilization{scheduler=\"1\"} ",
        "beamish_spawned_total ",
    ] {
        assert!(metrics.contains(needle), "{needle} in {metrics}");
    }
    let (status, apps) = get(addr, "/api/applications");
    assert_eq!(status, 200, "{apps}");
    let apps: Value = serde_json::from_str(&apps).unwrap();
    assert_eq!(apps[0]["name"], "shop", "{apps}");
    assert_eq!(apps[0]["tree"]["children"][0]["id"], "clerk", "{apps}");
    let (status, page) = get(addr, "/");
    assert_eq!(status, 200);
    assert!(page.contains("EventSource('/events')"));
    let (status, _) = get(addr, "/nothing_here");
    assert_eq!(status, 404);
}

#[test]
fn the_event_stream_and_clients_that_never_read() {
    let (_rt, dash) = setup();
    let addr = dash.local_addr();
    // A reader sees samples arrive.
    let mut reader = TcpStream::connect(addr).unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(reader, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    // Twenty that never read.
    let stuck: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            s
        })
        .collect();
    let rss0 = beamish::observe::os_rss().unwrap_or(0);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    while seen.matches("event: sample").count() < 5 && Instant::now() < deadline {
        let n = reader.read(&mut buf).unwrap_or(0);
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.matches("event: sample").count() >= 5, "{seen}");
    assert!(seen.contains("\"processes\""));
    // The others still get answers, at once.
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(addr, "/api/sample").0, 200);
        assert!(t.elapsed() < Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss1 = beamish::observe::os_rss().unwrap_or(0);
    // 20 stuck clients hold at most a sample each, no queue.
    assert!(rss1 < rss0 + 32_000_000, "{rss0} -> {rss1}");
    drop(stuck);
}

/// Headless Chromium with its DevTools endpoint, killed when dropped.
struct Chromium {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    _profile: std::path::PathBuf,
}

impl Chromium {
    fn open(url: &str) -> Chromium {
        let profile = std::env::temp_dir().join(format!("beamish-chromium-{}", std::process::id()));
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1200,900",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
                url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium is installed (scripts/install_tools.sh)");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let mut err = child.stderr.take().unwrap();
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let mut b = [0u8; 4096];
            let n = err.read(&mut b).unwrap_or(0);
            text.push_str(&String::from_utf8_lossy(&b[..n]));
            if let Some(rest) = text.split("ws://127.0.0.1:").nth(1)
                && let Some((port, _)) = rest.split_once('/')
            {
                break port.parse::<u16>().unwrap();
            }
            assert!(
                n > 0 && Instant::now() < deadline,
                "no DevTools endpoint:\n{text}"
            );
        };
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let devtools: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let page = loop {
            let (_, list) = get(devtools, "/json/list");
            let list: Value = serde_json::from_str(&list).unwrap_or(Value::Null);
            if let Some(p) = list
                .as_array()
                .and_then(|l| l.iter().find(|p| p["type"] == "page"))
            {
                break p["webSocketDebuggerUrl"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no page in {list}");
            std::thread::sleep(ms(100));
        };
        let (ws, _) = tungstenite::connect(page).expect("the page's DevTools socket");
        Chromium {
            child,
            ws,
            next: 1,
            _profile: profile,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().unwrap();
            if let tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    return v["result"].clone();
                }
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is true in the page.
    fn wait_for(&mut self, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(expr) != Value::Bool(true) {
            assert!(
                Instant::now() < deadline,
                "never true: {expr}; body: {}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(ms(100));
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._profile);
    }
}

#[test]
fn the_page_in_headless_chromium() {
    let (_rt, dash) = setup();
    let url = format!("http://{}/", dash.local_addr());
    let mut browser = Chromium::open(&url);
    browser.wait_for("document.getElementById('conn').textContent === 'live'");
    browser.wait_for("Number(document.getElementById('samples').textContent) >= 3");
    let shown = browser.eval("Number(document.getElementById('processes').textContent)");
    let (_, api) = get(dash.local_addr(), "/api/sample");
    let api: Value = serde_json::from_str(&api).unwrap();
    let count = api["processes"].as_u64().unwrap();
    assert!(
        shown.as_u64().is_some_and(|n| n.abs_diff(count) <= 2),
        "{shown} vs {count}"
    );
    // The charts move: more points after more samples.
    let points = browser.eval("Number(document.getElementById('load').dataset.points)");
    browser.wait_for(&format!(
        "Number(document.getElementById('load').dataset.points) > {points}"
    ));
    // The processes page, ranked by mailbox: the registered process first.
    browser.eval("document.querySelector('nav button[data-page=processes]').click(); document.getElementById('rank').value = 'message_queue'; render(); true");
    browser.wait_for(
        "document.querySelector('#rows tr td:nth-child(2)')?.textContent === 'dashboard_probe'",
    );
    assert_eq!(
        browser.eval("document.querySelector('#rows tr td:nth-child(5)').textContent"),
        "50"
    );
    // The applications page shows the tree.
    browser.eval("document.querySelector('nav button[data-page=applications]').click(); true");
    browser.wait_for("document.getElementById('apps').innerText.includes('clerk')");
    // A screenshot of the system page, in the test output.
    browser.eval("document.querySelector('nav button[data-page=system]').click(); true");
    let shot = browser.call(
        "Page.captureScreenshot",
        serde_json::json!({"format": "png"}),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("observer-web.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());
}
