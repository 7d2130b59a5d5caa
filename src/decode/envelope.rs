//! Envelopes: records that arrive wrapped by the transport instead of as the
//! gateway wrote them. Recognised by their keys, for every format:
//!
//! - a CloudWatch Logs subscription payload (`messageType`, `logGroup`,
//!   `logEvents[].message`): how API Gateway (or any CloudWatch-logged
//!   gateway) reaches Kafka through Kinesis, Firehose or a Lambda; each
//!   `message` string is one access-log line;
//! - tyk-pump's stdout pump, a logrus JSON entry with the record under
//!   `tyk-analytics-record` (its default `log_field_name`).
//!
//! Architecture Invariant: pure and total like the rest of decode: an
//! envelope that does not parse is not an envelope, and the record is read
//! as it is.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Top-level keys that mark an envelope (reserved in every field map's
/// slot index, so looking for them costs nothing extra).
pub const KEYS: [&str; 3] = ["logEvents", "messageType", "tyk-analytics-record"];

/// What an envelope holds.
pub enum Inner<'a> {
    /// Access-log lines (CloudWatch `logEvents[].message`); a control
    /// message holds none.
    Lines(Vec<Cow<'a, str>>),
    /// One record object (the stdout pump's `tyk-analytics-record`).
    Object(&'a str),
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
}

/// The envelope around a record, given the values of [`KEYS`] (in order)
/// found at its top level.
pub fn open<'a>(values: [Option<&'a RawValue>; 3]) -> Option<Inner<'a>> {
    let [events, kind, tyk] = values;
    if let (Some(events), Some(kind)) = (events, kind) {
        // "DATA_MESSAGE", or "CONTROL_MESSAGE" (sent once when the
        // subscription is created: no log events of the gateway).
        let kind: Cow<'_, str> = serde_json::from_str(kind.get()).ok()?;
        if kind == "CONTROL_MESSAGE" {
            return Some(Inner::Lines(Vec::new()));
        }
        let events: Vec<LogEvent<'a>> = serde_json::from_str(events.get()).ok()?;
        return Some(Inner::Lines(
            events.into_iter().map(|e| e.message).collect(),
        ));
    }
    let tyk = tyk?.get();
    tyk.starts_with('{').then_some(Inner::Object(tyk))
}
