//! Logging across the process boundary: the child writes its `tracing` events to stderr
//! as `LEVEL target: message fields` lines; the application re-emits each line as a
//! `tracing` event of the same level (target `tsercom::child`) with the fields `runtime`
//! (the source or group the child runs) and `pid`. The child logs at `info` and above
//! unless `TSERCOM_CHILD_LOG` says otherwise (`error`, `warn`, `info`, `debug`, `trace`).

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::span;
use tracing::{Event, Level, Metadata, Subscriber};

/// The environment variable with the child's log level.
const LEVEL_ENV: &str = "TSERCOM_CHILD_LOG";

/// The child's subscriber: every event as one stderr line.
struct ChildLog {
    max: Level,
}

/// Installs the child's subscriber (in the child, before anything logs).
pub(super) fn install() {
    let max = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<Level>().ok())
        .unwrap_or(Level::INFO);
    let _ = tracing::subscriber::set_global_default(ChildLog { max });
}

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for ChildLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut line);
        // One write per line, so lines of concurrent threads do not interleave.
        line.0.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.0.as_bytes());
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// Re-emits one line of a child's stderr in the application, tagged.
pub(super) fn forward(runtime: &str, pid: u32, line: &str) {
    let (level, text) = match line.split_once(' ') {
        Some((level, rest)) => match level.parse::<Level>() {
            Ok(level) => (level, rest),
            Err(_) => (Level::WARN, line),
        },
        // Not from the child's subscriber (a panic message, foreign code): a warning.
        None => (Level::WARN, line),
    };
    match level {
        Level::ERROR => tracing::error!(target: "tsercom::child", runtime, pid, "{text}"),
        Level::WARN => tracing::warn!(target: "tsercom::child", runtime, pid, "{text}"),
        Level::INFO => tracing::info!(target: "tsercom::child", runtime, pid, "{text}"),
        Level::DEBUG => tracing::debug!(target: "tsercom::child", runtime, pid, "{text}"),
        Level::TRACE => tracing::trace!(target: "tsercom::child", runtime, pid, "{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_the_child_subscriber_keep_their_level() {
        // The level word is what `forward` parses back.
        for level in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(level.to_string().parse::<Level>().unwrap(), level);
        }
    }
}
