//! `tokenwatch explain`: what tokenwatch reads from each record of a log
//! source, as JSON lines, and which fields the source never fills (with
//! what to configure at the gateway). This is how a user checks a new log
//! source before trusting tokenwatch with it, and how the format tests
//! assert fields: through the decoder the replay and the service use.
//!
//! Architecture Invariant: the output never holds a raw token or a
//! credential's secret: identities are printed as tokenwatch keys them
//! (jti, keyed hash, credential id, consumer name).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::decode::{DecodeSettings, Decoder, Seen, presets};
use crate::event::{AccessEvent, Drop, fmt_time};
use crate::format::Field;

/// Fields whose absence the summary reports, in output order.
const REPORTED: &[Field] = &[
    Field::Method,
    Field::Path,
    Field::Route,
    Field::Status,
    Field::BytesSent,
    Field::UserAgent,
    Field::ForwardedFor,
    Field::Subject,
    Field::ClientId,
    Field::AcceptLanguage,
    Field::Ja3,
    Field::Ja4,
];

/// Reads records and renders what was read; keeps the counts for the summary.
pub struct Explainer {
    decoder: Decoder,
    records: u64,
    events: u64,
    drops: BTreeMap<&'static str, u64>,
    /// Field → events that did not have it.
    missing: BTreeMap<Field, u64>,
    /// The hint of the first drop of each reason.
    hints: BTreeMap<&'static str, &'static str>,
    buf: Vec<Result<AccessEvent, Drop>>,
}

impl Explainer {
    /// An explainer for records in `format` (`auto`, a preset or a
    /// `[formats.NAME]`).
    pub fn new(settings: &DecodeSettings, format: &str) -> Result<Explainer, String> {
        Ok(Explainer {
            decoder: settings.decoder(format)?.explain(),
            records: 0,
            events: 0,
            drops: BTreeMap::new(),
            missing: BTreeMap::new(),
            hints: BTreeMap::new(),
            buf: Vec::new(),
        })
    }

    /// One record (one line) from `source` (`file:line`): one JSON value
    /// per object it held (a batch or an envelope holds several).
    pub fn record(&mut self, source: &str, line: &[u8]) -> Vec<Value> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Vec::new();
        }
        self.records += 1;
        self.buf.clear();
        self.decoder.decode(line, &mut self.buf);
        let seen = self.decoder.take_seen();
        let format = self.decoder.format_name().map(str::to_string);
        let mut out = Vec::with_capacity(self.buf.len());
        for (r, seen) in self.buf.drain(..).zip(seen) {
            out.push(match r {
                Ok(e) => {
                    self.events += 1;
                    let seen = seen.unwrap_or_default();
                    for f in &seen.unfilled {
                        *self.missing.entry(*f).or_default() += 1;
                    }
                    json!({"source": source, "format": format, "event": event_json(&e, &seen)})
                }
                Err(d) => {
                    *self.drops.entry(d.reason.as_str()).or_default() += 1;
                    if let Some(h) = d.hint {
                        self.hints.entry(d.reason.as_str()).or_insert(h);
                    }
                    json!({"source": source, "format": format, "drop": {
                        "reason": d.reason.as_str(), "detail": d.detail, "hint": d.hint,
                    }})
                }
            });
        }
        out
    }

    /// Fields never or not always filled, with what to configure.
    fn missing(&self) -> Vec<(Field, f64, Option<&'static str>)> {
        let base = self.decoder.format_base();
        REPORTED
            .iter()
            .filter_map(|f| {
                let n = *self.missing.get(f)?;
                let pct = 100.0 * n as f64 / self.events.max(1) as f64;
                Some((*f, pct, base.and_then(|b| presets::missing_hint(b, *f))))
            })
            .collect()
    }

    /// The closing summary, as one JSON value.
    pub fn summary(&self) -> Value {
        let missing: serde_json::Map<String, Value> = self
            .missing()
            .into_iter()
            .map(|(f, pct, hint)| {
                (
                    f.to_string(),
                    json!({"percent": (pct * 10.0).round() / 10.0, "hint": hint}),
                )
            })
            .collect();
        json!({"summary": {
            "records": self.records,
            "events": self.events,
            "format": self.decoder.format_name(),
            "dropped": self.drops,
            "drop_hints": self.hints,
            "missing": missing,
        }})
    }

    /// The closing summary for a person.
    pub fn summary_text(&self) -> String {
        let mut s = format!(
            "{} records, {} events read as format {}",
            self.records,
            self.events,
            self.decoder.format_name().unwrap_or("(none recognised)")
        );
        for (reason, n) in &self.drops {
            s.push_str(&format!("\ndropped {n} as {reason}"));
            if let Some(h) = self.hints.get(reason) {
                s.push_str(&format!(": {h}"));
            }
        }
        for (f, pct, hint) in self.missing() {
            s.push_str(&format!("\n{f}: missing in {pct:.0} % of events"));
            match hint {
                Some(h) if pct >= 99.5 => s.push_str(&format!("; {h}")),
                _ => {}
            }
        }
        s
    }
}

fn event_json(e: &AccessEvent, seen: &Seen) -> Value {
    let mut v = json!({
        "time": fmt_time(e.ts),
        "client_ip": e.client_ip.to_string(),
        "identity": {"kind": e.identity.as_str(), "id": e.token.as_str()},
        "subject": e.subject.as_deref(),
        "client_id": e.client_id.as_deref(),
        "method": e.method,
        "path": &*e.path,
        "route": &*e.route,
        "object": seen.object,
        "page": e.page,
        "status": e.status,
        "bytes_sent": e.bytes_sent,
        "user_agent": e.user_agent.as_deref(),
        "ja3": seen.ja3,
        "ja4": seen.ja4,
        "accept_language": seen.accept_language,
    });
    if e.rejected {
        v["rejected"] = json!(true);
    }
    if let Some(exp) = e.token_exp {
        v["token_exp"] = json!(fmt_time(exp));
    }
    // Fields the record did not have and that were given a default (a
    // method of GET, a path of /, a route templated from the path).
    let defaulted: Vec<&str> = seen
        .unfilled
        .iter()
        .filter(|f| {
            matches!(
                f,
                Field::Method | Field::Path | Field::Route | Field::Status
            )
        })
        .map(|f| f.as_str())
        .collect();
    if !defaulted.is_empty() {
        v["defaulted"] = json!(defaulted);
    }
    v
}
