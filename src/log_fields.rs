//! How airlock's own log lines write their fields: each value with its
//! control, bidi and invisible characters escaped
//! ([`crate::audit::format::printable`]), so that one event is one line.
//!
//! Fields carry what clients sent: statement previews, user and database
//! names, application names, error texts. Written as they came, a newline
//! in one of them started a new line that a reader or a log parser took
//! for another event (operator finding: a multi-line statement spilled
//! onto the following lines, and SQL text could forge a log line).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

use crate::audit::format::printable;

/// [`FormatFields`] that writes `message`, then `name=value` pairs, every
/// value escaped.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = Escaping {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Escaping<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Escaping<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.first { "" } else { " " };
        self.first = false;
        let value = printable(value);
        self.result = match field.name() {
            "message" => write!(self.writer, "{sep}{value}"),
            name => write!(self.writer, "{sep}{name}={value}"),
        };
    }
}

impl Visit for Escaping<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.write(field, &s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What one event logs through [`EscapedFields`].
    fn logged(f: impl FnOnce()) -> String {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&out);
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .without_time()
            .with_writer(move || Sink(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = out.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_event_is_one_line() {
        let text = "SELECT 1\n2026-12-07T00:00:00Z INFO forged line";
        let out = logged(|| {
            tracing::warn!(sql = %text, user = "a\r\nb\u{202e}", n = 3, "refused:\n{}", "x");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("sql=SELECT 1\\u{a}2026"), "{out}");
        assert!(out.contains("user=a\\u{d}\\u{a}b\\u{202e}"), "{out}");
        assert!(out.contains("n=3"), "{out}");
        assert!(out.contains("refused:\\u{a}x"), "{out}");
    }
}
