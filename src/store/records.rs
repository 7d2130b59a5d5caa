//! The stored JSON of findings and actions, read back typed: what the
//! dashboard, the API, the notifications and `tokenwatch act status` read,
//! so none of them indexes `serde_json::Value` by name. Every field has a
//! default, so a row written by an older version still reads.

use serde::{Deserialize, Serialize};

use crate::detect::context::TokenContext;

/// A finding as stored (the JSON of [`crate::detect::Finding`]), with the
/// same field names, so serializing a record gives the stored JSON back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FindingRecord {
    pub id: String,
    /// `token_replay`, `bulk_siphon`, …
    pub kind: String,
    /// `low` … `critical`.
    pub severity: String,
    pub score: u8,
    /// `observe` or `enforce`.
    pub mode: String,
    pub token_id: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// Event time of the triggering request (RFC 3339).
    pub event_time: String,
    /// The same, in milliseconds.
    pub event_ts: i64,
    pub evidence_first: String,
    pub evidence_last: String,
    pub summary: String,
    pub client_ip: String,
    pub asn: u32,
    /// The network class (`residential`, `hosting`, …).
    pub network: String,
    pub country: Option<String>,
    pub city: Option<String>,
    pub route: String,
    pub user_agent: String,
    /// The detector's own measurements (free-form by design: each detector
    /// documents its keys).
    pub evidence: serde_json::Value,
    /// The token's places, devices and recent activity at the finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<TokenContext>,
}

impl FindingRecord {
    /// From a stored row; `None` if it is not a finding's JSON.
    pub fn parse(json: &str) -> Option<FindingRecord> {
        serde_json::from_str(json).ok()
    }

    /// Where it was seen, for people: `city, country`, `country`, or
    /// "unknown place".
    pub fn place(&self) -> String {
        match (&self.city, &self.country) {
            (Some(c), Some(k)) => format!("{c}, {k}"),
            (None, Some(k)) => k.clone(),
            _ => "unknown place".into(),
        }
    }
}

/// An action request as stored (the JSON of
/// [`crate::decide::ActionRequest`], or of the resolve and system alerts
/// the store writes itself): the fields its readers use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActionRecord {
    pub id: String,
    /// `revoke`, `alert` or `resolve`.
    pub kind: String,
    /// The rule that asked for it (`policy` and `delivery` for the
    /// response's own alerts, `manual` for people's).
    pub rule: String,
    pub incident_id: String,
    pub finding_id: String,
    pub token_id: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// One line for people: what and why.
    pub summary: String,
    /// For the response's own alerts: a channel not to send it to (the one
    /// that is failing).
    pub exclude: Option<String>,
}

impl ActionRecord {
    /// From a stored row; a row that does not read is an empty record (its
    /// columns still say what it is).
    pub fn parse(json: &str) -> ActionRecord {
        serde_json::from_str(json).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record is the stored JSON, typed: reading a finding and writing
    /// it again gives the same JSON.
    #[test]
    fn a_finding_reads_back_as_it_was_written() {
        let mut f = super::super::outbox_tests::finding(3);
        f.city = Some("Lyon".into());
        f.evidence = serde_json::json!({"distance_km": 812.5});
        let stored = serde_json::to_value(&f).unwrap();
        let record = FindingRecord::parse(&stored.to_string()).unwrap();
        assert_eq!(serde_json::to_value(&record).unwrap(), stored);
        assert_eq!(record.kind, "token_replay");
        assert_eq!(record.place(), "unknown place");
        assert!(FindingRecord::parse("[1]").is_none());
        assert_eq!(ActionRecord::parse("not json"), ActionRecord::default());
    }
}
