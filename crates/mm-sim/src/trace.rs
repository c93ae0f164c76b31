//! Logging and tracing: `RUST_LOG` selects human log lines on stderr (tracing-subscriber's
//! `EnvFilter`), and `--trace FILE` writes the machine's tracepoint events (target
//! `mm_trace`) as JSON lines, one event per line, named after the Linux tracepoint.
//!
//! One global subscriber serves the process: it is installed the first time a run asks for
//! logs or a trace, and a run's trace file is attached to it for the length of the run. The
//! command line calls [`install`] and [`TraceFile::create`]; the machine's crates emit the
//! events with `tracing::event!(name: "<tracepoint>", target: "mm_trace", …)`.

use mm_sync::sync::Mutex;
use mm_sync::untracked::OnceLock;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{filter, EnvFilter, Layer};

/// The events written to a trace file.
pub const TRACE_TARGET: &str = "mm_trace";

struct Sink {
    out: BufWriter<File>,
    /// Event names to keep (a trailing `*` matches a prefix); empty keeps all.
    keep: Vec<String>,
    start: Instant,
    events: u64,
    error: Option<std::io::Error>,
}

static SINK: OnceLock<Mutex<Option<Sink>>> = OnceLock::new();

fn sink() -> &'static Mutex<Option<Sink>> {
    SINK.get_or_init(|| Mutex::new(None))
}
static INSTALLED: OnceLock<()> = OnceLock::new();

/// Installs the global subscriber if `RUST_LOG` is set or a trace is wanted (once).
pub fn install(want_trace: bool) {
    let log_filter = EnvFilter::try_from_default_env().ok();
    if log_filter.is_none() && !want_trace {
        return;
    }
    INSTALLED.get_or_init(|| {
        let log = log_filter.map(|f| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(true)
                .with_filter(f)
        });
        let trace = JsonLines.with_filter(filter::filter_fn(|m| m.target() == TRACE_TARGET));
        let subscriber = tracing_subscriber::registry().with(log).with(trace);
        // Another subscriber installed by the embedding program wins; traces then stay empty.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// A trace file attached for one run; dropping it detaches and flushes it.
#[derive(Debug)]
pub struct TraceFile {
    path: String,
}

impl TraceFile {
    /// Creates `path` and attaches it, keeping the events named in `events` (a trailing `*`
    /// matches a prefix, as `mm_vmscan_*`); an empty list keeps every event.
    pub fn create(path: &str, events: &[String]) -> std::io::Result<TraceFile> {
        let file = File::create(path)?;
        install(true);
        *sink().lock() = Some(Sink {
            out: BufWriter::new(file),
            keep: events.to_vec(),
            start: Instant::now(),
            events: 0,
            error: None,
        });
        Ok(TraceFile {
            path: path.to_owned(),
        })
    }

    /// Detaches the file and flushes it; returns the number of events written.
    pub fn finish(self) -> std::io::Result<u64> {
        let sink = sink().lock().take();
        let Some(mut sink) = sink else {
            return Ok(0);
        };
        if let Some(e) = sink.error.take() {
            return Err(e);
        }
        sink.out.flush()?;
        Ok(sink.events)
    }

    /// The file's path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Writes each event as one JSON object: `t_us` since the trace started, `event` (the
/// tracepoint), `thread`, then the event's fields.
struct JsonLines;

struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn fmt::Debug) {
        self.0.insert(f.name().to_owned(), format!("{v:?}").into());
    }
}

impl<S: Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut guard = sink().lock();
        let Some(sink) = guard.as_mut() else {
            return;
        };
        let name = event.metadata().name();
        if !sink.keep.is_empty()
            && !sink.keep.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == e,
            })
        {
            return;
        }
        let mut fields = Fields(serde_json::Map::new());
        fields.0.insert(
            "t_us".into(),
            (sink.start.elapsed().as_micros() as u64).into(),
        );
        fields
            .0
            .insert("event".into(), event.metadata().name().into());
        let thread = mm_sync::thread::current();
        fields
            .0
            .insert("thread".into(), thread.name().unwrap_or("?").into());
        event.record(&mut fields);
        let line = serde_json::Value::Object(fields.0).to_string();
        if let Err(e) = writeln!(sink.out, "{line}") {
            sink.error.get_or_insert(e);
        }
        sink.events += 1;
    }
}
