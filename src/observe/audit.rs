//! The audit trail: one JSON line per model request (chat completions, Messages API, native
//! routes), written to standard output, apart from the diagnostic log on standard error.
//!
//! A line says who asked (caller, team, actor, principal, agent, run), for what (public model,
//! route and upstream model id, every attempt and why it failed), what came of it (status, usage,
//! its cost in USD and the budgets it brought near their end, time to first byte, duration). It never carries prompt or completion text, keys, tokens,
//! credentials or upstream URLs: [`AuditRecord`] has no field that could hold them.
//!
//! Lines are handed to a writer thread through a bounded queue so a slow stdout never stalls a
//! request; a line that does not fit is counted (`byollm_audit_lines_dropped_total`) and logged.
//! The writer gathers what arrives within [`GATHER`] into one write, so under load a request
//! neither wakes a thread nor costs a system call for its line; the queue is written out before
//! `serve` and `local` exit ([`AuditSink::flush`]).

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Lines queued for the writer before new ones are dropped.
pub const QUEUE_LINES: usize = 16_384;

/// Bytes reserved for one line before it is written.
const LINE_CAPACITY: usize = 1024;

pub use crate::models::prices::Usd;
pub use crate::wire::usage::Usage;

/// One route tried for the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub route: String,
    pub upstream_model: String,
    /// `served`, `skipped`, or the failure class (`throttled`, `access_denied`, ...).
    pub result: &'static str,
    pub status: Option<u16>,
    /// The error code the attempt produced (`bedrock_throttled`, ...).
    pub code: Option<&'static str>,
}

/// One request's audit line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Always `"request"`: tells these lines apart in a shared stream.
    pub audit: &'static str,
    /// Milliseconds since the Unix epoch when the request arrived.
    pub time_unix_ms: u64,
    /// `chat`, `messages` or `native`.
    pub surface: &'static str,
    /// What was asked of the surface: `chat_completions`, `messages`, `count_tokens`, or the
    /// Bedrock operation of a native call (`invoke`, `converse-stream`, ...).
    pub operation: &'static str,
    /// The answer's id (`chatcmpl-…`, `msg_…`) when one was made.
    pub id: Option<String>,
    /// The configured caller name (never its key).
    pub caller: Option<String>,
    pub team: Option<String>,
    pub actor: Option<String>,
    pub principal: Option<String>,
    pub agent: Option<String>,
    pub run: Option<String>,
    /// The public model asked for, when the request named a valid one.
    pub model: Option<String>,
    pub stream: bool,
    /// The route that served, and what it called the model.
    pub route: Option<String>,
    pub upstream_model: Option<String>,
    pub attempts: Vec<AttemptRecord>,
    pub status: u16,
    /// The error code of a failed request.
    pub error: Option<&'static str>,
    pub usage: Usage,
    /// What the answer cost, from the price table (`src/models/prices.toml`) or the config's
    /// override; `null`: unpriced (or no usage).
    pub cost_usd: Option<Usd>,
    /// Budgets of the request's scopes at or past `limits.alert_at_fraction` after it
    /// (`usd_per_day`, `tokens_per_month`, ...).
    pub budget_alerts: Vec<&'static str>,
    pub ttfb_ms: Option<u64>,
    pub duration_ms: u64,
}

impl AuditRecord {
    /// A record for a request that arrived now.
    pub fn start(surface: &'static str) -> AuditRecord {
        let time_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let operation = match surface {
            "chat" => "chat_completions",
            "messages" => "messages",
            _ => "",
        };
        AuditRecord { audit: "request", time_unix_ms, surface, operation, ..AuditRecord::default() }
    }

    /// The JSON line (no trailing newline).
    pub fn to_line(&self) -> String {
        // One buffer sized for a typical line (500–800 bytes), not grown from 128 bytes by
        // doubling. Serialising plain strings and numbers cannot fail, and serde_json writes
        // UTF-8; an empty object is the fallback all the same.
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        match serde_json::to_writer(&mut line, self) {
            Ok(()) => String::from_utf8(line).unwrap_or_else(|_| "{}".to_owned()),
            Err(_) => "{}".to_owned(),
        }
    }
}

/// Where audit lines go.
pub trait AuditSink: Send + Sync {
    /// Queue one line; false if it was dropped.
    fn write(&self, line: String) -> bool;
    /// Write out every queued line, waiting at most `wait` (at exit).
    fn flush(&self, _wait: Duration) {}
}

/// How long the audit writer gathers lines after a write before it writes again: the lines of
/// the requests answered meanwhile leave in one write, and their senders wake no thread (the
/// writer is asleep, not waiting on the queue). An idle writer waits on the queue.
pub const GATHER: Duration = Duration::from_millis(2);

/// Bytes gathered into one write at most.
const BATCH_BYTES: usize = 256 * 1024;

/// What the writer thread is handed.
enum Queued {
    Line(String),
    /// Write out what came before, then say so.
    Flush(SyncSender<()>),
}

/// Standard output, through a writer thread.
pub struct StdoutSink {
    sender: SyncSender<Queued>,
}

impl StdoutSink {
    /// Start the writer thread (start-up).
    pub fn start() -> StdoutSink {
        StdoutSink::start_to(std::io::stdout())
    }

    /// The same writer over any output (tests).
    fn start_to(out: impl Write + Send + 'static) -> StdoutSink {
        let (sender, receiver) = sync_channel::<Queued>(QUEUE_LINES);
        let spawned =
            std::thread::Builder::new().name("byollm-audit".into()).spawn(move || write_lines(&receiver, out));
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start the audit writer; audit lines will be dropped");
        }
        StdoutSink { sender }
    }
}

/// The writer thread: wait for a line, then write what is queued in one write, sleep [`GATHER`],
/// and go on while lines keep coming.
fn write_lines(receiver: &Receiver<Queued>, mut out: impl Write) {
    let mut batch = Vec::with_capacity(16 * 1024);
    let mut acks = Vec::new();
    let mut next = receiver.recv().ok();
    while let Some(first) = next.take() {
        let mut queued = Some(first);
        while let Some(item) = queued.take() {
            match item {
                Queued::Line(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    batch.push(b'\n');
                }
                Queued::Flush(ack) => acks.push(ack),
            }
            if batch.len() < BATCH_BYTES {
                queued = receiver.try_recv().ok();
            }
        }
        // One write (stdout is line-buffered: a buffer of whole lines goes out at once).
        let _ = out.write_all(&batch);
        let _ = out.flush();
        batch.clear();
        for ack in acks.drain(..) {
            let _ = ack.try_send(());
        }
        if batch.capacity() > 4 * BATCH_BYTES {
            batch.shrink_to(16 * 1024);
        }
        std::thread::sleep(GATHER);
        next = match receiver.try_recv() {
            Ok(item) => Some(item),
            Err(TryRecvError::Empty) => receiver.recv().ok(),
            Err(TryRecvError::Disconnected) => None,
        };
    }
}

impl AuditSink for StdoutSink {
    fn write(&self, line: String) -> bool {
        match self.sender.try_send(Queued::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn flush(&self, wait: Duration) {
        let (ack, done) = sync_channel(1);
        let deadline = std::time::Instant::now() + wait;
        // A full queue: wait for room (the writer is draining it) until the deadline.
        let mut item = Queued::Flush(ack);
        loop {
            match self.sender.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if std::time::Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
        let _ = done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }
}

/// Lines kept in memory (tests).
#[derive(Default)]
pub struct MemorySink {
    pub lines: Mutex<Vec<String>>,
}

impl AuditSink for MemorySink {
    fn write(&self, line: String) -> bool {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        true
    }
}

/// What a finished record feeds besides the line: the metrics ([`crate::observe::metrics`]) and,
/// when on, OpenTelemetry spans ([`crate::observe::telemetry`]). Called on the request's task: it
/// must not block.
pub trait RecordObserver: Send + Sync {
    fn observe(&self, record: &AuditRecord);

    /// The record's line could not be queued: the writer fell behind.
    fn line_dropped(&self, _record: &AuditRecord) {}
}

/// The audit trail: writes the line and feeds every observer from the same record.
#[derive(Clone)]
pub struct Audit {
    sink: Arc<dyn AuditSink>,
    observers: Vec<Arc<dyn RecordObserver>>,
}

impl Audit {
    /// Lines to `sink`; every record also goes to `observer` (the metrics).
    pub fn new(sink: Arc<dyn AuditSink>, observer: Arc<dyn RecordObserver>) -> Audit {
        Audit { sink, observers: vec![observer] }
    }

    /// Also hand every finished record to `observer`.
    pub fn add_observer(&mut self, observer: Arc<dyn RecordObserver>) {
        self.observers.push(observer);
    }

    /// Write out every queued line (at exit), waiting at most `wait`.
    pub fn flush(&self, wait: Duration) {
        self.sink.flush(wait);
    }

    /// Record one finished request.
    pub fn emit(&self, record: &AuditRecord) {
        for observer in &self.observers {
            observer.observe(record);
        }
        if !self.sink.write(record.to_line()) {
            for observer in &self.observers {
                observer.line_dropped(record);
            }
            tracing::warn!(
                surface = record.surface,
                status = record.status,
                "audit line dropped: the writer fell behind"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::metrics::Metrics;

    /// An output that keeps what it is given and counts the writes.
    #[derive(Clone, Default)]
    struct Counted(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Counted {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut kept = self.0.lock().unwrap();
            kept.0.extend_from_slice(bytes);
            kept.1 += 1;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_queued_together_leave_in_few_writes_in_order_and_a_flush_writes_them_all() {
        let out = Counted::default();
        let sink = StdoutSink::start_to(out.clone());
        for n in 0..2000 {
            assert!(sink.write(format!("line {n}")));
        }
        sink.flush(Duration::from_secs(10));
        let (bytes, writes) = out.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let expected: String = (0..2000).map(|n| format!("line {n}\n")).collect();
        assert_eq!(text, expected, "every line, in order, before flush returned");
        assert!(writes < 100, "{writes} writes for 2,000 lines");
        // A line after an idle spell still goes out promptly.
        std::thread::sleep(GATHER * 3);
        assert!(sink.write("late".into()));
        sink.flush(Duration::from_secs(10));
        assert!(String::from_utf8(out.0.lock().unwrap().0.clone()).unwrap().ends_with("line 1999\nlate\n"));
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let mut record = AuditRecord::start("chat");
        record.caller = Some("acme-worker".into());
        record.team = Some("acme".into());
        record.model = Some("claude-sonnet-4-5".into());
        record.route = Some("anthropic".into());
        record.upstream_model = Some("claude-sonnet-4-5-20250929".into());
        record.status = 200;
        record.usage.input_tokens = Some(10);
        record.attempts.push(AttemptRecord {
            route: "bedrock".into(),
            upstream_model: "global.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            result: "access_denied",
            status: Some(403),
            code: Some("bedrock_access_denied"),
        });
        let line = record.to_line();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["audit"], "request");
        assert_eq!(value["surface"], "chat");
        assert_eq!(value["attempts"][0]["result"], "access_denied");
        assert_eq!(value["usage"]["input_tokens"], 10);
        assert_eq!(value["usage"]["output_tokens"], serde_json::Value::Null);
        for field in [
            "time_unix_ms",
            "operation",
            "id",
            "caller",
            "team",
            "actor",
            "principal",
            "agent",
            "run",
            "model",
            "stream",
            "route",
            "upstream_model",
            "attempts",
            "status",
            "error",
            "usage",
            "cost_usd",
            "budget_alerts",
            "ttfb_ms",
            "duration_ms",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
        assert_eq!(value.as_object().unwrap().len(), 23, "no field beyond the documented ones");
        assert_eq!(value["operation"], "chat_completions");
    }

    #[test]
    fn emitting_writes_the_line_and_feeds_the_metrics() {
        let sink = Arc::new(MemorySink::default());
        let metrics = Arc::new(Metrics::default());
        metrics.admit(["claude-haiku-4-5"], ["bedrock"], []);
        let audit = Audit::new(sink.clone(), metrics.clone());
        let mut record = AuditRecord::start("chat");
        record.model = Some("claude-haiku-4-5".into());
        record.route = Some("bedrock".into());
        record.status = 200;
        record.usage.output_tokens = Some(5);
        audit.emit(&record);
        assert_eq!(sink.lines.lock().unwrap().len(), 1);
        assert!(
            metrics
                .render()
                .contains("byollm_tokens_total{model=\"claude-haiku-4-5\",route=\"bedrock\",kind=\"output\"} 5")
        );
    }

    struct FullSink;
    impl AuditSink for FullSink {
        fn write(&self, _line: String) -> bool {
            false
        }
    }

    #[test]
    fn a_dropped_line_is_counted() {
        let metrics = Arc::new(Metrics::default());
        Audit::new(Arc::new(FullSink), metrics.clone()).emit(&AuditRecord::start("chat"));
        assert_eq!(metrics.audit_dropped.get("backlog"), 1);
    }
}
