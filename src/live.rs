//! The live feed's hub: what the processing thread publishes for the
//! dashboard (findings and decided actions as they happen, event and lag
//! counters) without waiting on anyone. Items are serialised once, when at
//! least one browser listens; a slow browser skips what it missed (and is
//! told how many) instead of slowing processing down.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

/// Items kept for slow listeners before they start skipping.
const CAPACITY: usize = 4096;

pub struct Hub {
    tx: broadcast::Sender<Arc<str>>,
    events: AtomicU64,
    findings: AtomicU64,
    rejected: AtomicU64,
    lag: Mutex<HashMap<(String, i32), i64>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("events", &self.events())
            .field("listeners", &self.listeners())
            .finish()
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            tx: broadcast::channel(CAPACITY).0,
            events: AtomicU64::new(0),
            findings: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            lag: Mutex::new(HashMap::new()),
        }
    }
}

/// One item of the live feed (`type` is `finding` or `action`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveItem<'a> {
    Finding {
        id: &'a str,
        kind: &'a str,
        severity: &'a str,
        mode: &'a str,
        token_id: &'a str,
        subject: Option<&'a str>,
        client_id: Option<&'a str>,
        incident_id: &'a str,
        event_time: &'a str,
        summary: &'a str,
        country: Option<&'a str>,
        city: Option<&'a str>,
        network: &'a str,
        asn: u32,
    },
    Action {
        id: &'a str,
        kind: &'a str,
        rule: &'a str,
        state: &'a str,
        why: &'a str,
        token_id: &'a str,
        incident_id: &'a str,
        summary: &'a str,
    },
}

impl Hub {
    pub fn publish(&self, item: &LiveItem<'_>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        if let Ok(json) = serde_json::to_string(item) {
            let _ = self.tx.send(Arc::from(json));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    pub fn add_events(&self, n: u64) {
        self.events.fetch_add(n, Ordering::Relaxed);
    }

    /// Requests whose credential the gateway rejected (not learnt from).
    pub fn add_rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Ordering::Relaxed);
    }

    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub fn add_findings(&self, n: u64) {
        self.findings.fetch_add(n, Ordering::Relaxed);
    }

    /// Events processed since start.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    pub fn findings(&self) -> u64 {
        self.findings.load(Ordering::Relaxed)
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        if let Ok(mut m) = self.lag.lock() {
            m.insert((topic.to_string(), partition), lag.max(0));
        }
    }

    /// Consumer lag summed over this instance's partitions (records).
    pub fn lag(&self) -> i64 {
        self.lag.lock().map(|m| m.values().sum()).unwrap_or(0)
    }
}

/// Tell the dashboard's live feed about new findings and what was decided.
pub fn publish(
    hub: &Hub,
    findings: &[crate::detect::Finding],
    fresh: &[bool],
    decided: &[crate::decide::Decision],
) {
    let new = fresh.iter().filter(|n| **n).count() as u64;
    hub.add_findings(new);
    if hub.listeners() == 0 {
        return;
    }
    for (f, _) in findings.iter().zip(fresh).filter(|(_, n)| **n) {
        let incident = decided
            .iter()
            .find(|d| d.finding_id == f.id)
            .map(|d| d.incident.id.as_str())
            .unwrap_or("");
        hub.publish(&LiveItem::Finding {
            id: &f.id,
            kind: f.kind.as_str(),
            severity: f.severity.as_str(),
            mode: f.mode.as_str(),
            token_id: f.token_id.as_str(),
            subject: f.subject.as_deref(),
            client_id: f.client_id.as_deref(),
            incident_id: incident,
            event_time: &f.event_time,
            summary: &f.summary,
            country: f.country.as_deref(),
            city: f.city.as_deref(),
            network: f.network,
            asn: f.asn,
        });
    }
    for d in decided {
        for a in &d.actions {
            let (state, why) = a.state.describe();
            hub.publish(&LiveItem::Action {
                id: &a.id,
                kind: a.kind.as_str(),
                rule: &a.rule,
                state: state.as_str(),
                why,
                token_id: &a.token_id,
                incident_id: &a.incident_id,
                summary: &a.summary,
            });
        }
    }
}
