//! The terminal UI of `beamish observer` (ratatui): a system page
//! (schedulers, load and memory charts), a process table that refreshes
//! live (sort, filter, kill), a process page (info, mailbox head, links,
//! its trace) and an applications page (supervision trees).
//!
//! Threads: the UI runs on the calling thread and never waits on the
//! network; a fetcher process on the observer's own beamish runtime does
//! every call (erpc, or in-process for [`Target::Local`]) and hands results
//! over a channel. A node that stops answering
//! leaves the last figures on screen with the error in the status line,
//! and the fetcher keeps trying.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

use crate::dist::Term;
use crate::dist::rpc::RpcError;
use crate::{Error, Handle};
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{
    Block, Borders, Cell, Gauge, Paragraph, Row as TableRow, Sparkline, Table, Tabs, Wrap,
};

use super::sample::{Kind, Row, Snapshot};
use super::{Target, atom, call, eval, fetch_text, unreachable};

/// Rows fetched per ranking (the table shows what fits).
const TOP: usize = 200;
/// Points kept in the charts.
const HISTORY: usize = 120;
/// The Erlang side of the applications page on an Erlang node.
const ERL_APPS: &str = include_str!("erl_apps.erl.txt");

/// Fetcher ← UI.
#[derive(Debug)]
enum Cmd {
    /// The process page shows this process (or none).
    Select(Option<Term>),
    Kill(Term),
    Trace(Term, bool),
    Applications,
}

/// Fetcher → UI.
enum Update {
    Sample(Box<Result<Snapshot, String>>),
    Info(Vec<String>),
    Trace(Vec<String>),
    Apps(Result<Vec<String>, String>),
    Status(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    System,
    Processes,
    Process,
    Applications,
}

const PAGES: [(Page, &str); 4] = [
    (Page::System, "1 System"),
    (Page::Processes, "2 Processes"),
    (Page::Process, "3 Process"),
    (Page::Applications, "4 Applications"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sort {
    Reductions,
    Queue,
    Memory,
}

/// Everything the UI shows.
struct App {
    node: String,
    page: Page,
    sort: Sort,
    filter: String,
    editing_filter: bool,
    selected: usize,
    prev: Option<Snapshot>,
    last: Option<Snapshot>,
    load: VecDeque<u64>,
    memory: VecDeque<u64>,
    status: String,
    process: Option<Row>,
    info: Vec<String>,
    trace: Vec<String>,
    tracing: bool,
    apps: Vec<String>,
    confirm_kill: bool,
}

impl App {
    fn new(node: String) -> App {
        App {
            node,
            page: Page::System,
            sort: Sort::Reductions,
            filter: String::new(),
            editing_filter: false,
            selected: 0,
            prev: None,
            last: None,
            load: VecDeque::new(),
            memory: VecDeque::new(),
            status: "connecting…".into(),
            process: None,
            info: Vec::new(),
            trace: Vec::new(),
            tracing: false,
            apps: Vec::new(),
            confirm_kill: false,
        }
    }

    fn apply(&mut self, u: Update) {
        match u {
            Update::Sample(sample) => match *sample {
                Ok(s) => {
                    if let Some(prev) = &self.last {
                        let util = prev.utilization(&s);
                        let avg = util.iter().map(|u| u.1).sum::<f64>() / util.len().max(1) as f64;
                        push(&mut self.load, (avg * 100.0) as u64);
                    }
                    let total = s
                        .memory
                        .iter()
                        .find(|(k, _)| k == "rss" || k == "total")
                        .map_or(0, |m| m.1);
                    push(&mut self.memory, (total / 1_000_000).max(0) as u64);
                    self.prev = self.last.replace(s);
                    self.status = format!(
                        "refreshed; {} processes",
                        self.last.as_ref().map_or(0, |s| s.processes)
                    );
                }
                Err(e) => self.status = format!("error: {e}"),
            },
            Update::Info(lines) => self.info = lines,
            Update::Trace(lines) => self.trace = lines,
            Update::Apps(Ok(lines)) => self.apps = lines,
            Update::Apps(Err(e)) => self.status = format!("applications: {e}"),
            Update::Status(s) => self.status = s,
        }
    }

    /// The table's rows: every process the three rankings name (each is
    /// the node's top N by its column), sorted by the chosen column and
    /// filtered.
    fn rows(&self) -> Vec<&Row> {
        let Some(s) = &self.last else {
            return Vec::new();
        };
        let mut seen = std::collections::HashSet::new();
        let f = self.filter.to_lowercase();
        let mut rows: Vec<&Row> = s
            .reductions
            .iter()
            .chain(&s.message_queue)
            .chain(&s.memory_top)
            .filter(|r| seen.insert(r.pid.as_str()))
            .filter(|r| {
                f.is_empty()
                    || r.pid.contains(&f)
                    || r.name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(&f))
            })
            .collect();
        let key = |r: &Row| match self.sort {
            Sort::Reductions => (r.recent, r.reductions),
            Sort::Queue => (r.queue, r.memory),
            Sort::Memory => (r.memory, r.queue),
        };
        rows.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.pid.cmp(&b.pid)));
        rows
    }
}

fn push(v: &mut VecDeque<u64>, x: u64) {
    if v.len() == HISTORY {
        v.pop_front();
    }
    v.push_back(x);
}

/// Runs the terminal UI on `target` until `q`, a sample every `interval`;
/// blocks the calling thread (which must not be a scheduler thread of the
/// runtime), whose terminal it takes over and gives back.
///
/// Keys: `1`–`4` or Tab switch pages; `r`, `u`, `m` sort the process
/// table by recent reductions, queue or memory; `/` filters it; arrows
/// (or `j`/`k`) and Enter open a process; `t` traces it, `K` kills it
/// (after `y`); `q` quits.
///
/// # Errors
/// [`Error::Shutdown`] when the runtime takes no new process;
/// [`Error::Io`] when the terminal cannot be set up or written.
pub fn run(handle: &Handle, target: Target, interval: Duration) -> Result<(), Error> {
    let (tx, rx) = mpsc::channel::<Update>();
    let fetcher = handle.spawn(fetcher(target, interval, tx))?;
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            fetcher.exit(crate::Reason::Kill);
            return Err(Error::Io(format!("cannot set up the terminal: {e}").into()));
        }
    };
    let mut app = App::new(target.to_string());
    let result = (|| -> std::io::Result<()> {
        loop {
            while let Ok(u) = rx.try_recv() {
                app.apply(u);
            }
            terminal.draw(|f| draw(f, &app))?;
            if !event::poll(Duration::from_millis(100))? {
                continue;
            }
            let TermEvent::Key(key) = event::read()? else {
                continue;
            };
            if key.kind != KeyEventKind::Press {
                continue;
            }
            if app.editing_filter {
                match key.code {
                    KeyCode::Enter | KeyCode::Esc => app.editing_filter = false,
                    KeyCode::Backspace => {
                        app.filter.pop();
                    }
                    KeyCode::Char(c) => app.filter.push(c),
                    _ => {}
                }
                app.selected = 0;
                continue;
            }
            if app.confirm_kill {
                app.confirm_kill = false;
                if key.code == KeyCode::Char('y')
                    && let Some(p) = &app.process
                {
                    fetcher.send(Cmd::Kill(p.term.clone()));
                    app.status = format!("killing {}", p.pid);
                } else {
                    app.status = "kill cancelled".into();
                }
                continue;
            }
            match key.code {
                KeyCode::Char('q') => return Ok(()),
                KeyCode::Char('1') => app.page = Page::System,
                KeyCode::Char('2') => app.page = Page::Processes,
                KeyCode::Char('3') => app.page = Page::Process,
                KeyCode::Char('4') => {
                    app.page = Page::Applications;
                    fetcher.send(Cmd::Applications);
                }
                KeyCode::Tab => {
                    let i = PAGES.iter().position(|p| p.0 == app.page).unwrap_or(0);
                    app.page = PAGES[(i + 1) % PAGES.len()].0;
                    if app.page == Page::Applications {
                        fetcher.send(Cmd::Applications);
                    }
                }
                KeyCode::Char('r') => app.sort = Sort::Reductions,
                KeyCode::Char('u') => app.sort = Sort::Queue,
                KeyCode::Char('m') => app.sort = Sort::Memory,
                KeyCode::Char('/') => {
                    app.page = Page::Processes;
                    app.editing_filter = true;
                    app.filter.clear();
                }
                KeyCode::Down | KeyCode::Char('j') => app.selected = app.selected.saturating_add(1),
                KeyCode::Up | KeyCode::Char('k') => app.selected = app.selected.saturating_sub(1),
                KeyCode::Enter if app.page == Page::Processes => {
                    let rows = app.rows();
                    if let Some(r) = rows.get(app.selected.min(rows.len().saturating_sub(1))) {
                        let r = (*r).clone();
                        fetcher.send(Cmd::Select(Some(r.term.clone())));
                        if app.tracing
                            && let Some(old) = &app.process
                        {
                            fetcher.send(Cmd::Trace(old.term.clone(), false));
                        }
                        app.tracing = false;
                        app.info.clear();
                        app.trace.clear();
                        app.process = Some(r);
                        app.page = Page::Process;
                    }
                }
                KeyCode::Char('K') if app.process.is_some() => {
                    app.confirm_kill = true;
                    app.status = "kill the selected process? y/n".into();
                }
                KeyCode::Char('t') => {
                    if let Some(p) = &app.process {
                        app.tracing = !app.tracing;
                        fetcher.send(Cmd::Trace(p.term.clone(), app.tracing));
                    }
                }
                _ => {}
            }
        }
    })();
    ratatui::restore();
    fetcher.exit(crate::Reason::Kill);
    result.map_err(|e| Error::Io(format!("terminal: {e}").into()))
}

/// The fetcher process: a sample every `interval`, the selected process's
/// info and trace with it, and the UI's commands in between.
async fn fetcher(node: Target, interval: Duration, tx: mpsc::Sender<Update>) {
    let mut kind: Option<Kind> = None;
    let mut selected: Option<Term> = None;
    let mut traced: Option<Term> = None;
    loop {
        let sample = fetch_text(node, TOP, kind).await;
        if let Ok(s) = &sample {
            kind = Some(s.kind);
        }
        if tx.send(Update::Sample(Box::new(sample))).is_err() {
            return;
        }
        if let (Some(pid), Some(k)) = (&selected, kind) {
            let _ = tx.send(Update::Info(process_info(node, k, pid).await));
        }
        if let (Some(pid), Some(Kind::Beamish)) = (&traced, kind) {
            let got = call(node, "beamish_observer", "trace_events", vec![pid.clone()]).await;
            if let Ok(t) = got {
                let lines = t
                    .as_list()
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|l| {
                        l.as_binary()
                            .map(|b| String::from_utf8_lossy(b).into_owned())
                    })
                    .collect();
                let _ = tx.send(Update::Trace(lines));
            }
        }
        let deadline = std::time::Instant::now() + interval;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Some(cmd) = crate::receive_if(|_: &Cmd| true).timeout(left).await else {
                break;
            };
            let status = match cmd {
                Cmd::Select(pid) => {
                    selected = pid;
                    None
                }
                Cmd::Kill(pid) => Some(kill(node, kind, pid).await),
                Cmd::Trace(pid, on) => Some(trace(node, kind, &pid, on, &mut traced).await),
                Cmd::Applications => {
                    let _ = tx.send(Update::Apps(applications(node, kind).await));
                    None
                }
            };
            if let Some(s) = status {
                let _ = tx.send(Update::Status(s));
            }
        }
    }
}

async fn kill(node: Target, kind: Option<Kind>, pid: Term) -> String {
    let shown = pid.to_string();
    let got = match kind {
        Some(Kind::Beamish) => call(node, "beamish_observer", "kill", vec![pid]).await,
        _ => call(node, "erlang", "exit", vec![pid, Term::Atom(atom("kill"))]).await,
    };
    match got {
        Ok(_) => format!("killed {shown}"),
        Err(e) => format!("kill refused: {}", refused(node, &e)),
    }
}

/// Why the endpoint refused (`read_only` said so), or why it could not be
/// asked.
fn refused(node: Target, e: &RpcError) -> String {
    match e {
        RpcError::Exception { reason, .. } if reason.is_atom(atom("read_only")) => {
            "the node's observer endpoint is read-only".into()
        }
        e => unreachable(node, e),
    }
}

async fn trace(
    node: Target,
    kind: Option<Kind>,
    pid: &Term,
    on: bool,
    traced: &mut Option<Term>,
) -> String {
    if kind != Some(Kind::Beamish) {
        return "tracing is available on beamish nodes in this version".into();
    }
    let f = if on { "trace" } else { "trace_stop" };
    match call(node, "beamish_observer", f, vec![pid.clone()]).await {
        Ok(_) => {
            *traced = on.then(|| pid.clone());
            if on {
                "tracing (100 events/s at most)".into()
            } else {
                "trace stopped".into()
            }
        }
        Err(e) => format!("trace refused: {}", refused(node, &e)),
    }
}

/// The process page's lines.
async fn process_info(node: Target, kind: Kind, pid: &Term) -> Vec<String> {
    let got = match kind {
        Kind::Beamish => call(node, "beamish_observer", "process_info", vec![pid.clone()]).await,
        Kind::Erl => {
            let items = [
                "status",
                "registered_name",
                "message_queue_len",
                "reductions",
                "memory",
                "links",
                "monitors",
                "monitored_by",
                "trap_exit",
                "current_function",
                "initial_call",
            ];
            let items = Term::list(items.iter().map(|i| Term::Atom(atom(i))).collect());
            call(node, "erlang", "process_info", vec![pid.clone(), items]).await
        }
    };
    match got {
        Ok(t) if t.is_atom(atom("undefined")) => vec!["the process has ended".into()],
        Ok(t) => t
            .as_list()
            .unwrap_or(&[])
            .iter()
            .map(|item| match item.as_tuple() {
                Some([k, v]) => format!("{k}: {}", shown(v)),
                _ => item.to_string(),
            })
            .collect(),
        Err(e) => vec![unreachable(node, &e)],
    }
}

/// A pid as the observed node's shell shows it.
fn pid_text(t: &Term) -> String {
    match t {
        Term::Pid(p) => super::sample::local_form(&p.to_string()),
        other => other.to_string(),
    }
}

/// A term as text, binaries as their UTF-8 text.
fn shown(t: &Term) -> String {
    match t.as_binary() {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => t.to_string(),
    }
}

async fn applications(node: Target, kind: Option<Kind>) -> Result<Vec<String>, String> {
    let t = match (kind, node) {
        (Some(Kind::Beamish), _) | (_, Target::Local) => {
            call(node, "beamish_observer", "applications", vec![])
                .await
                .map_err(|e| unreachable(node, &e))?
        }
        (_, Target::Node(n)) => eval(n, ERL_APPS).await?,
    };
    let mut lines = Vec::new();
    for app in t.as_list().unwrap_or(&[]) {
        let Some([name, tree]) = app.as_tuple() else {
            continue;
        };
        lines.push(shown(name));
        tree_lines(tree, 1, &mut lines);
    }
    if lines.is_empty() {
        lines.push("no applications".into());
    }
    Ok(lines)
}

/// `{Pid, Name, Kind, Children}` with children `{Id, Pid, Type, Restarts, Subtree}`.
fn tree_lines(t: &Term, depth: usize, out: &mut Vec<String>) {
    let indent = "  ".repeat(depth);
    let Some([pid, name, kind, children]) = t.as_tuple() else {
        match t.as_tuple() {
            Some([e, why]) if e.is_atom(atom("error")) => {
                out.push(format!("{indent}({})", shown(why)))
            }
            _ => out.push(format!("{indent}{}", shown(t))),
        }
        return;
    };
    let pid = pid_text(pid);
    let name = if name.is_atom(atom("undefined")) {
        String::new()
    } else {
        format!(" {}", shown(name))
    };
    out.push(format!("{indent}{pid}{name} ({kind})"));
    for c in children.as_list().unwrap_or(&[]) {
        let Some([id, cpid, ctype, restarts, sub]) = c.as_tuple() else {
            continue;
        };
        if sub.is_atom(atom("undefined")) {
            let cpid = pid_text(cpid);
            out.push(format!(
                "{indent}  {} {cpid} {ctype} restarts={restarts}",
                shown(id)
            ));
        } else {
            out.push(format!(
                "{indent}  {} {ctype} restarts={restarts}",
                shown(id)
            ));
            tree_lines(sub, depth + 2, out);
        }
    }
}

fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let titles: Vec<&str> = PAGES.iter().map(|p| p.1).collect();
    let index = PAGES.iter().position(|p| p.0 == app.page).unwrap_or(0);
    f.render_widget(
        Tabs::new(titles)
            .select(index)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        tabs,
    );
    match app.page {
        Page::System => draw_system(f, app, body),
        Page::Processes => draw_processes(f, app, body),
        Page::Process => draw_process(f, app, body),
        Page::Applications => {
            let text: Vec<Line> = app.apps.iter().map(|l| Line::from(l.as_str())).collect();
            f.render_widget(
                Paragraph::new(text)
                    .block(Block::default().borders(Borders::ALL).title("applications")),
                body,
            );
        }
    }
    let hint = "q quit · 1-4/Tab pages · r/u/m sort · / filter · Enter open · K kill · t trace";
    f.render_widget(Paragraph::new(format!("{} | {hint}", app.status)), status);
}

fn draw_system(f: &mut Frame, app: &App, area: Rect) {
    let Some(s) = &app.last else {
        f.render_widget(
            Paragraph::new(format!("{}: waiting for the first sample", app.node)),
            area,
        );
        return;
    };
    let util = app
        .prev
        .as_ref()
        .map(|p| p.utilization(s))
        .unwrap_or_default();
    let n = util.len().max(1) as u16;
    let [head, gauges, charts, memory] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(n + 2),
        Constraint::Length(7),
        Constraint::Min(0),
    ])
    .areas(area);
    let kind = match s.kind {
        Kind::Beamish => "beamish",
        Kind::Erl => "erl",
    };
    let rate = if s.window_ms > 0 {
        s.window_reductions * 1000 / s.window_ms
    } else {
        0
    };
    let summary = format!(
        "node {} ({kind}) · uptime {:.0} s · processes {} · reductions/s {rate} · registered {} · atoms {}",
        app.node,
        s.uptime_ms as f64 / 1000.0,
        s.processes,
        s.registered,
        s.atoms
    );
    f.render_widget(
        Paragraph::new(summary)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title("system")),
        head,
    );
    let block = Block::default().borders(Borders::ALL).title("schedulers");
    let inner = block.inner(gauges);
    f.render_widget(block, gauges);
    for (i, (id, u)) in util.iter().enumerate() {
        let row = Rect {
            y: inner.y + i as u16,
            height: 1,
            ..inner
        };
        if row.y >= inner.y + inner.height {
            break;
        }
        let rq = s
            .schedulers
            .iter()
            .find(|x| x.id == *id)
            .map_or(0, |x| x.run_queue);
        f.render_widget(
            Gauge::default()
                .ratio(u.clamp(0.0, 1.0))
                .label(format!("{id}: {:.1}% (run queue {rq})", u * 100.0)),
            row,
        );
    }
    let [load, mem] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let load_data: Vec<u64> = app.load.iter().copied().collect();
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title("load %"))
            .data(&load_data)
            .max(100),
        load,
    );
    let mem_data: Vec<u64> = app.memory.iter().copied().collect();
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title("memory MB"))
            .data(&mem_data),
        mem,
    );
    let rows: Vec<TableRow> = s
        .memory
        .iter()
        .map(|(k, v)| {
            TableRow::new(vec![
                Cell::from(k.clone()),
                Cell::from(format!("{:.1} MB", *v as f64 / 1e6)),
            ])
        })
        .collect();
    f.render_widget(
        Table::new(rows, [Constraint::Length(20), Constraint::Length(14)])
            .block(Block::default().borders(Borders::ALL).title("memory")),
        memory,
    );
}

fn draw_processes(f: &mut Frame, app: &App, area: Rect) {
    let rows = app.rows();
    let selected = app.selected.min(rows.len().saturating_sub(1));
    let sort = match app.sort {
        Sort::Reductions => "recent reductions",
        Sort::Queue => "message queue",
        Sort::Memory => "memory",
    };
    let filter = if app.editing_filter {
        format!(" · filter: {}_", app.filter)
    } else if app.filter.is_empty() {
        String::new()
    } else {
        format!(" · filter: {}", app.filter)
    };
    let body: Vec<TableRow> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let row = TableRow::new(vec![
                Cell::from(r.pid.clone()),
                Cell::from(r.name.clone().unwrap_or_else(|| "-".into())),
                Cell::from(r.recent.to_string()),
                Cell::from(r.reductions.to_string()),
                Cell::from(r.queue.to_string()),
                Cell::from(r.memory.to_string()),
                Cell::from(r.status.clone()),
            ]);
            if i == selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    let widths = [
        Constraint::Length(18),
        Constraint::Min(10),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(9),
    ];
    let table = Table::new(body, widths)
        .header(
            TableRow::new(vec![
                "PID",
                "NAME",
                "RECENT",
                "REDUCTIONS",
                "MSGQ",
                "MEMORY",
                "STATUS",
            ])
            .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("processes by {sort}{filter}")),
        );
    f.render_widget(table, area);
}

fn draw_process(f: &mut Frame, app: &App, area: Rect) {
    let Some(p) = &app.process else {
        f.render_widget(
            Paragraph::new("no process selected: pick one on the processes page (2, Enter)"),
            area,
        );
        return;
    };
    let [info, trace] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let mut lines: Vec<Line> = vec![Line::from(format!(
        "{} {}",
        p.pid,
        p.name.as_deref().unwrap_or("")
    ))];
    lines.extend(app.info.iter().map(|l| Line::from(l.as_str())));
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::default().borders(Borders::ALL).title("process")),
        info,
    );
    let title = if app.tracing {
        "trace (on: t stops)"
    } else {
        "trace (off: t starts)"
    };
    let tail = app
        .trace
        .len()
        .saturating_sub(trace.height.saturating_sub(2) as usize);
    let lines: Vec<Line> = app.trace[tail..]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        trace,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn snapshot() -> Snapshot {
        let row = |pid: &str, name: Option<&str>, q: i64| Row {
            term: Term::Nil,
            pid: pid.into(),
            name: name.map(String::from),
            reductions: 100,
            recent: 10,
            queue: q,
            memory: 2000,
            status: "waiting".into(),
        };
        Snapshot {
            kind: Kind::Beamish,
            uptime_ms: 5000,
            schedulers: vec![],
            global_run_queue: 0,
            processes: 42,
            total_spawned: Some(50),
            total_exited: Some(8),
            window_ms: 1000,
            window_reductions: 1234,
            registered: 3,
            atoms: 90,
            long_schedules: Some(0),
            messages: Some(0),
            memory: vec![("rss".into(), 12_000_000)],
            reductions: vec![row("<0.1.1>", Some("echo"), 0), row("<0.2.1>", None, 5)],
            message_queue: vec![row("<0.2.1>", None, 5)],
            memory_top: vec![],
        }
    }

    fn screen(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn pages_render_what_the_sample_says() {
        let mut app = App::new("a@127.0.0.1".into());
        app.apply(Update::Sample(Box::new(Ok(snapshot()))));
        let s = screen(&app, 120, 30);
        assert!(s.contains("processes 42"), "{s}");
        app.page = Page::Processes;
        let s = screen(&app, 120, 30);
        assert!(s.contains("echo") && s.contains("<0.2.1>"), "{s}");
        app.filter = "echo".into();
        let s = screen(&app, 120, 30);
        assert!(s.contains("echo") && !s.contains("<0.2.1>"), "{s}");
        app.sort = Sort::Queue;
        app.filter.clear();
        let s = screen(&app, 120, 30);
        let first = s.lines().find(|l| l.contains("<0.")).unwrap_or_default();
        assert!(
            s.contains("by message queue") && first.contains("<0.2.1>"),
            "{s}"
        );
    }

    #[test]
    fn a_tiny_terminal_does_not_break_it() {
        let mut app = App::new("a@127.0.0.1".into());
        app.apply(Update::Sample(Box::new(Ok(snapshot()))));
        for page in [
            Page::System,
            Page::Processes,
            Page::Process,
            Page::Applications,
        ] {
            app.page = page;
            let _ = screen(&app, 20, 10);
            let _ = screen(&app, 1, 1);
        }
    }

    #[test]
    fn errors_keep_the_last_figures() {
        let mut app = App::new("a@127.0.0.1".into());
        app.apply(Update::Sample(Box::new(Ok(snapshot()))));
        app.apply(Update::Sample(Box::new(Err(
            "cannot reach 'a@127.0.0.1'".into()
        ))));
        let s = screen(&app, 120, 30);
        assert!(
            s.contains("processes 42") && s.contains("error: cannot reach"),
            "{s}"
        );
    }
}
