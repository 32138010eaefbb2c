//! The JSON log line, written without parsing anything back.
//!
//! `tracing_subscriber`'s own JSON format keeps each span's fields as a JSON object in a string,
//! and parses that string back into a map every time a field is recorded on the span (a request
//! records four or five: tenant, user, key, operation) and twice more per event (`span` and
//! `spans`). For the request line that was most of its cost (docs/BENCHMARKS.md, run G). Here the
//! stored object is only ever appended to, and an event copies it into the line as it is.
//!
//! The line's shape is the one `tracing_subscriber`'s JSON format writes with a flattened event,
//! the current span and the span list (docs/OPERATIONS.md, "Logs"):
//! `{"timestamp","level",<event fields>,"target","span":{…,"name"},"spans":[{…,"name"},…]}`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// A span's fields as one JSON object (`{"request.id":"…","http.method":"POST"}`), extended in
/// place when a field is recorded later.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut entries = Entries::default();
        fields.record(&mut entries);
        entries.result()?;
        writer.write_char('{')?;
        writer.write_str(&entries.out)?;
        writer.write_char('}')
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut entries = Entries::with_room(fields.len());
        fields.record(&mut entries);
        entries.result()?;
        if entries.out.is_empty() {
            return Ok(());
        }
        let object = &mut current.fields;
        if entries.names.iter().any(|name| has_key(object, name)) {
            // A field recorded a second time (rare): rebuild the object so each key appears once.
            return replace_keys(object, &entries.out);
        }
        match object.pop() {
            Some('}') if object.len() > 1 => object.push(','),
            Some('}') => {}
            // Nothing formatted yet.
            _ => {
                object.clear();
                object.push('{');
            }
        }
        object.push_str(&entries.out);
        object.push('}');
        Ok(())
    }
}

/// Whether the stored object already has `name` as a key: `"name":` occurs in it. Inside a
/// value every quote is escaped, so the quote before the colon would read `\":` there: the
/// sequence only occurs as a key.
fn has_key(object: &str, name: &str) -> bool {
    let mut needle = [0u8; 66];
    let Some(slot) = needle.get_mut(..name.len() + 3) else {
        return true;
    };
    slot[0] = b'"';
    slot[1..=name.len()].copy_from_slice(name.as_bytes());
    slot[name.len() + 1..].copy_from_slice(b"\":");
    // std's substring search sets up nothing for a short needle (memchr's `memmem` builds a
    // searcher per call, which cost more than the search on these short objects).
    std::str::from_utf8(slot).map_or(true, |needle| object.contains(needle))
}

/// `object` with the keys of `entries` (comma-separated `"k":v` pairs) set to their new values.
fn replace_keys(object: &mut String, entries: &str) -> fmt::Result {
    let parse = |text: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text);
    let mut merged = parse(object).map_err(|_| fmt::Error)?;
    merged.extend(parse(&format!("{{{entries}}}")).map_err(|_| fmt::Error)?);
    *object = serde_json::to_string(&merged).map_err(|_| fmt::Error)?;
    Ok(())
}

/// Writes a line per event; see the module comment.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLine;

impl<S> FormatEvent<S, SpanFields> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut entries = Entries::default();
        event.record(&mut entries);
        entries.result()?;

        let spans: Vec<_> = ctx.event_scope().map(|scope| scope.from_root().collect()).unwrap_or_default();
        // Room for a request's line (~700 bytes: its span is written twice) without growing.
        let mut line = String::with_capacity(1024 + entries.out.len());
        line.push_str("{\"timestamp\":\"");
        super::timestamp::push_rfc3339(&mut line, std::time::SystemTime::now());
        line.push_str("\",\"level\":\"");
        line.push_str(meta.level().as_str());
        line.push('"');
        if !entries.out.is_empty() {
            line.push(',');
            line.push_str(&entries.out);
        }
        line.push_str(",\"target\":");
        escape_into(&mut line, meta.target());
        if let Some(leaf) = spans.last() {
            line.push_str(",\"span\":");
            push_span(&mut line, leaf);
            line.push_str(",\"spans\":[");
            for (i, span) in spans.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                push_span(&mut line, span);
            }
            line.push(']');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// A span as `{<its fields>,"name":"<its name>"}`.
fn push_span<S>(line: &mut String, span: &tracing_subscriber::registry::SpanRef<'_, S>)
where
    S: for<'a> LookupSpan<'a>,
{
    let extensions = span.extensions();
    let fields = extensions.get::<FormattedFields<SpanFields>>().map_or("", |f| f.fields.as_str());
    match fields.strip_suffix('}') {
        Some(open) if open.len() > 1 => {
            line.push_str(open);
            line.push(',');
        }
        _ => line.push('{'),
    }
    line.push_str("\"name\":");
    escape_into(line, span.metadata().name());
    line.push('}');
}

/// A visitor writing `"name":value` pairs, comma-separated, without braces.
struct Entries {
    out: String,
    names: Vec<&'static str>,
    /// A value's `Debug` or `Display` failed.
    failed: bool,
}

impl Entries {
    /// Room for `fields` typical fields (a uuid and its key) without growing.
    fn with_room(fields: usize) -> Self {
        Self { out: String::with_capacity(56 * fields), names: Vec::with_capacity(fields), failed: false }
    }
}

impl Default for Entries {
    fn default() -> Self {
        // Room for the usual one or two fields without growing.
        Self { out: String::with_capacity(96), names: Vec::with_capacity(2), failed: false }
    }
}

impl Entries {
    fn result(&self) -> fmt::Result {
        if self.failed { Err(fmt::Error) } else { Ok(()) }
    }

    fn key(&mut self, field: &Field) -> bool {
        let name = field.name();
        // The `log` crate's metadata, already used by `normalized_metadata`.
        if name.starts_with("log.") {
            return false;
        }
        if !self.out.is_empty() {
            self.out.push(',');
        }
        escape_into(&mut self.out, name);
        self.out.push(':');
        self.names.push(name);
        true
    }

    fn raw(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.key(field) {
            self.failed |= self.out.write_fmt(value).is_err();
        }
    }
}

impl Visit for Entries {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, format_args!("{value}"));
        } else {
            self.raw(field, format_args!("null"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, format_args!("{value}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.key(field) {
            escape_into(&mut self.out, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field) {
            // Formatted straight into the line, escaped piece by piece: no copy in between.
            self.out.push('"');
            self.failed |= write!(Escaped(&mut self.out), "{value:?}").is_err();
            self.out.push('"');
        }
    }
}

/// A `fmt::Write` that appends what it is given as the inside of a JSON string.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape_inside(self.0, text);
        Ok(())
    }
}

/// `text` as a JSON string, quotes included.
fn escape_into(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    escape_inside(out, text);
    out.push('"');
}

/// `text` escaped for the inside of a JSON string.
fn escape_inside(out: &mut String, text: &str) {
    let needs = |b: u8| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f;
    // Ids, names and messages usually need nothing.
    if !text.bytes().any(needs) {
        out.push_str(text);
        return;
    }
    let mut plain = 0;
    for (i, byte) in text.bytes().enumerate() {
        if !needs(byte) {
            continue;
        }
        out.push_str(&text[plain..i]);
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        plain = i + 1;
    }
    out.push_str(&text[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("sink").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(run: impl FnOnce()) -> Vec<Value> {
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .fmt_fields(SpanFields)
            .event_format(JsonLine);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), run);
        let text = String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf-8");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    #[test]
    fn a_line_carries_the_event_and_its_spans_fields_recorded_later() {
        let got = lines(|| {
            let outer = tracing::info_span!("request", request.id = "r-1", tenant.id = tracing::field::Empty);
            let _outer = outer.enter();
            outer.record("tenant.id", "t-9");
            let inner = tracing::info_span!("job", attempt = 2_u64);
            inner
                .in_scope(|| tracing::warn!(http.status = 503_u64, ratio = 0.5, ok = false, "slow \"db\"\n"));
            tracing::info!(delta = -3_i64, "plain");
        });
        assert_eq!(got.len(), 2, "{got:?}");
        let first = &got[0];
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["message"], "slow \"db\"\n");
        assert_eq!(first["http.status"], 503);
        assert_eq!(first["ratio"], 0.5);
        assert_eq!(first["ok"], false);
        assert!(first["target"].as_str().is_some_and(|t| t.contains("json")));
        assert!(first["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
        assert_eq!(first["span"], json!({ "attempt": 2, "name": "job" }));
        assert_eq!(
            first["spans"],
            json!([{ "request.id": "r-1", "tenant.id": "t-9", "name": "request" }, { "attempt": 2, "name": "job" }])
        );
        assert_eq!(got[1]["span"], json!({ "request.id": "r-1", "tenant.id": "t-9", "name": "request" }));
        assert_eq!(got[1]["delta"], -3);
    }

    #[test]
    fn a_field_recorded_twice_appears_once_with_its_last_value() {
        let got = lines(|| {
            let span = tracing::info_span!("p", warm = tracing::field::Empty, other = 1_u64);
            span.record("warm", false);
            span.record("warm", true);
            span.in_scope(|| tracing::info!("done"));
        });
        assert_eq!(got[0]["span"], json!({ "other": 1, "warm": true, "name": "p" }));
    }

    #[test]
    fn events_outside_a_span_and_spans_without_fields() {
        let got = lines(|| {
            tracing::info!("alone");
            tracing::info_span!("empty").in_scope(|| tracing::info!(x = "\u{1}\\", "in"));
        });
        assert!(got[0].get("span").is_none() && got[0].get("spans").is_none(), "{}", got[0]);
        assert_eq!(got[1]["span"], json!({ "name": "empty" }));
        assert_eq!(got[1]["x"], "\u{1}\\");
    }

    #[test]
    fn keys_are_found_only_as_keys() {
        assert!(has_key(r#"{"a":1,"warm":true}"#, "warm"));
        assert!(!has_key(r#"{"a":"\"warm\":x"}"#, "warm"));
        assert!(!has_key(r#"{"swarm":1}"#, "warm"));
    }
}
