//! Logging: tracing as text or JSON lines, to stderr (where Jupyter shows a
//! kernel's log) or, with `[log] dir`, to a `skillkernel.log` rotated by
//! time and size, whose rotated files — and the sandbox audit log's — are
//! lz4-compressed and pruned in the background.
//!
//! [`init`] installs the global subscriber once and returns the
//! [`LogHandle`], which must live as long as the process logs: it owns the
//! file writer's worker (dropping it flushes what is queued) and the
//! maintenance thread, and changes the level at runtime (SIGUSR1 reload).
//! Call it after any fork: threads do not survive one.

mod fields;
mod files;
mod filter;
mod rotated;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use thiserror::Error;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};

use crate::traces::TraceLayer;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

use files::{LogFile, RotationSettings, FILE_NAME};
use skillkernel_stdx::outlet::Outlet;

/// Why logging could not be set up or changed.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("cannot use the log directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the log file in {dir}: {message}")]
    Open { dir: PathBuf, message: String },
    #[error("invalid log level {level:?}: {message}")]
    Filter { level: String, message: String },
    #[error("cannot start the log maintenance thread: {0}")]
    Thread(std::io::Error),
    #[error("logging is already set up in this process")]
    AlreadyInitialised,
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

/// Each layer has its own filter: the level filter (reloadable) governs
/// only what is written, so a `warn` log level does not starve the trace
/// layer of the spans it exports.
type Subscriber = Layered<Vec<Box<dyn Layer<Registry> + Send + Sync>>, Registry>;

/// The running logging setup. Keep it for the life of the process.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    level: Mutex<String>,
    file: Option<PathBuf>,
    /// Rotation and retention, changed in place on reload.
    rotation: Arc<RotationSettings>,
    /// Lines written to and dropped from the log file.
    outlet: Option<Arc<Outlet>>,
    // Stops the maintenance thread on drop.
    _maintenance: Option<rotated::Maintenance>,
    // Last field, so it drops last: flushes queued lines to the file.
    _guard: Option<WorkerGuard>,
}

impl LogHandle {
    /// Replaces the filter (`info`, `debug,skillkernel_skills=trace`), also
    /// one that came from `RUST_LOG`. An invalid filter changes nothing.
    pub fn set_level(&self, level: &str) -> Result<(), LogError> {
        let filter = filter::parse(level)?;
        self.filter
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))?;
        *self.level.lock().unwrap_or_else(|p| p.into_inner()) = level.to_owned();
        Ok(())
    }

    /// The filter in effect, as given.
    // For the reload report and the state dump, wired in with the signal work.
    #[allow(dead_code)]
    pub fn level(&self) -> String {
        self.level.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes `config`'s rotation, size limit and retention (a reload);
    /// the next line written and the next maintenance pass use them.
    pub fn set_rotation(&self, config: &LogConfig) {
        self.rotation.set(config);
    }

    /// The log file's counters, when logging to a file.
    pub fn outlet(&self) -> Option<Arc<Outlet>> {
        self.outlet.clone()
    }

    /// `<dir>/skillkernel.log` when logging to files, `None` for stderr.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

/// Checks a filter as [`LogHandle::set_level`] would, without logging set up.
pub fn check_level(level: &str) -> Result<(), LogError> {
    filter::parse(level).map(|_| ())
}

/// Installs the global subscriber described by `config`, with `traces`
/// (the OTel span layer) beside the log output when trace export is on,
/// and starts the maintenance of rotated files: the log's and the sandbox
/// audit log's in `audit_dir`. `RUST_LOG`, when set, wins over
/// `config.level` until the first [`LogHandle::set_level`].
pub fn init(
    config: &LogConfig,
    traces: Option<TraceLayer>,
    audit_dir: Option<PathBuf>,
) -> Result<LogHandle, LogError> {
    let (filter, level, note) = filter::initial(&config.level)?;
    let rotation = Arc::new(RotationSettings::new(config));
    let (wake, woken) = mpsc::channel();
    let (writer, ansi, guard, dir, queue) = match &config.dir {
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
            None,
            None,
            None,
        ),
        Some(dir) => {
            // The symlink's target must not depend on the working directory.
            let dir = std::path::absolute(dir).map_err(|source| LogError::Dir {
                dir: dir.clone(),
                source,
            })?;
            let outlet = Arc::new(Outlet::new(
                "log",
                dir.join(FILE_NAME).display().to_string(),
            ));
            let json = config.format == LogFormat::Json;
            let wake_on_rotation = wake.clone();
            let rotated = Box::new(move || {
                let _ = wake_on_rotation.send(rotated::Wake::Rotated);
            });
            let file = LogFile::open(&dir, json, rotation.clone(), outlet.clone(), rotated)?;
            // Lines go through a queue to a writer thread, so logging never
            // waits on the disk; a full queue drops lines rather than block.
            let (writer, guard) = tracing_appender::non_blocking(file);
            let counter = writer.error_counter();
            (
                BoxMakeWriter::new(writer),
                false,
                Some(guard),
                Some(dir),
                Some((counter, outlet)),
            )
        }
    };
    let outlet = queue.as_ref().map(|(_, outlet)| outlet.clone());
    let (subscriber, handle) = subscriber(filter, config.format, writer, ansi, traces);
    subscriber
        .try_init()
        .map_err(|_| LogError::AlreadyInitialised)?;
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    let looked = rotated::Looked {
        log_dir: dir.clone(),
        audit_dir,
        settings: rotation.clone(),
        queue,
    };
    let maintenance = rotated::Maintenance::start(looked, wake, woken).map_err(LogError::Thread)?;
    Ok(LogHandle {
        filter: handle,
        level: Mutex::new(level),
        file: dir.map(|d| d.join(FILE_NAME)),
        rotation,
        outlet,
        _maintenance: Some(maintenance),
        _guard: guard,
    })
}

/// The subscriber: a text or JSON formatter behind a reloadable level
/// filter, and the trace layer (with its own filter) when given.
fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
    ansi: bool,
    traces: Option<TraceLayer>,
) -> (Subscriber, reload::Handle<EnvFilter, Registry>)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(filter);
    let output: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(ansi)
            .fmt_fields(fields::LogFields)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let layers: Vec<_> = std::iter::once(output).chain(traces).collect();
    (tracing_subscriber::registry().with(layers), handle)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
    use std::sync::{Arc, Mutex};

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn handle_for(reload: reload::Handle<EnvFilter, Registry>) -> LogHandle {
        LogHandle {
            filter: reload,
            level: Mutex::new("info".into()),
            file: None,
            rotation: Arc::new(RotationSettings::new(&LogConfig::default())),
            outlet: None,
            _maintenance: None,
            _guard: None,
        }
    }

    #[test]
    fn set_level_changes_what_is_logged() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let (subscriber, reload) = subscriber(
            filter::parse("info").unwrap(),
            LogFormat::Text,
            move || out.clone(),
            false,
            None,
        );
        let handle = handle_for(reload);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("hidden at info");
            handle.set_level("debug").unwrap();
            tracing::debug!("shown at debug");
            assert!(handle.set_level("verbose").is_err());
            tracing::debug!("still shown after a refused level");
            handle.set_level("warn").unwrap();
            tracing::info!("hidden at warn");
        });
        let text = buffer.text();
        assert!(!text.contains("hidden"), "{text}");
        assert!(text.contains("shown at debug"), "{text}");
        assert!(text.contains("still shown"), "{text}");
        assert_eq!(handle.level(), "warn");
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let (subscriber, _) = subscriber(
            filter::parse("info").unwrap(),
            LogFormat::Json,
            move || out.clone(),
            false,
            None,
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(port = 5, "serving");
            tracing::warn!("second");
            tracing::error_span!("request", msg_id = "m-7")
                .in_scope(|| tracing::warn!("inside a request"));
        });
        let lines: Vec<serde_json::Value> = buffer
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["fields"]["message"], "serving");
        assert_eq!(lines[0]["fields"]["port"], 5);
        assert_eq!(lines[1]["level"], "WARN");
        // A line written while handling a request names it.
        assert_eq!(lines[2]["span"]["msg_id"], "m-7", "{}", lines[2]);
    }

    #[test]
    fn text_lines_carry_span_fields_but_not_the_otel_ones() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let (subscriber, _) = subscriber(
            filter::parse("info").unwrap(),
            LogFormat::Text,
            move || out.clone(),
            false,
            None,
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::error_span!(
                "request",
                otel.name = "execute_request",
                msg_id = "m-1",
                kind = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            span.record("otel.status_code", "ERROR");
            span.record("kind", "prompt");
            span.in_scope(|| tracing::warn!(port = 5, "model {} is down", "m"));
        });
        let text = buffer.text();
        assert!(
            text.contains(r#"request{msg_id="m-1" kind="prompt"}: "#),
            "{text}"
        );
        assert!(text.contains("model m is down port=5"), "{text}");
        assert!(!text.contains("otel"), "{text}");
    }
}
