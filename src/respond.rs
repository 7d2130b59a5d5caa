//! The response step, one for `tokenwatch run` and `tokenwatch demo`: a
//! batch of findings is stored together with what the response policy
//! decides for each new one (one transaction, so a crash never keeps a
//! finding and loses its actions), then shown on the live feed.
//!
//! It does not call anyone: the dispatcher (`act`) delivers what was
//! decided from the outbox. It does not produce to Kafka either: the
//! streaming service does that with the JSON this step serialised.

use crate::decide::Decision;
use crate::detect::Finding;
use crate::live::{Hub, publish};
use crate::store::{Store, StoreError, StoredFinding};

/// What the step did with a batch, in the batch's order.
#[derive(Debug, Default)]
pub struct Responded {
    /// Whether each finding was new to the store (a finding derived again
    /// after a restart is not: it was neither decided nor shown again).
    pub fresh: Vec<bool>,
    /// Each finding as stored (and as produced to the findings topic).
    pub json: Vec<Vec<u8>>,
}

/// Store `findings`, deciding each new one with `decide`, and publish the
/// new ones (with their incidents) to `hub`.
pub fn respond(
    store: &mut Store,
    hub: &Hub,
    findings: &[Finding],
    now_ms: i64,
    mut decide: impl FnMut(&Finding) -> Decision,
) -> Result<Responded, StoreError> {
    let json: Vec<Vec<u8>> = findings
        .iter()
        .map(|f| serde_json::to_vec(f).unwrap_or_default())
        .collect();
    let rows: Vec<StoredFinding<'_>> = findings
        .iter()
        .zip(&json)
        .map(|(f, j)| StoredFinding::of(f, j))
        .collect();
    let mut decided = Vec::new();
    let fresh = store.insert_findings_and_decide(&rows, now_ms, |i| {
        let d = decide(findings.get(i)?);
        decided.push(d.clone());
        Some(d)
    })?;
    publish(hub, findings, &fresh, &decided);
    Ok(Responded { fresh, json })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyConfig;
    use crate::decide::Decider;
    use crate::store::outbox_tests::finding;

    /// New findings are stored, decided once and shown once; the same
    /// findings derived again (a restart) are neither decided nor shown.
    #[test]
    fn new_findings_are_decided_and_shown_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let hub = Hub::default();
        let mut feed = hub.subscribe();
        let mut decider = Decider::new(&PolicyConfig::default());
        let fs: Vec<Finding> = (0..3).map(finding).collect();
        let mut decided = 0;
        let r = respond(&mut store, &hub, &fs, 5, |f| {
            decided += 1;
            decider.decide(f)
        })
        .unwrap();
        assert_eq!(r.fresh, vec![true; 3]);
        assert_eq!(decided, 3);
        assert_eq!(store.findings_count().unwrap(), 3);
        let stored: serde_json::Value = serde_json::from_slice(&r.json[1]).unwrap();
        assert_eq!(stored["id"], "f-1");
        assert_eq!(hub.findings(), 3);
        let first: serde_json::Value = serde_json::from_str(&feed.try_recv().unwrap()).unwrap();
        assert_eq!(first["type"], "finding");
        assert_eq!(first["id"], "f-0");
        assert!(
            first["incident_id"].as_str().is_some_and(|s| !s.is_empty()),
            "the live item names its incident: {first}"
        );

        let more: Vec<Finding> = (2..4).map(finding).collect();
        let r = respond(&mut store, &hub, &more, 6, |f| {
            decided += 1;
            decider.decide(f)
        })
        .unwrap();
        assert_eq!(r.fresh, vec![false, true]);
        assert_eq!(decided, 4, "only the new finding is decided");
        assert_eq!(store.findings_count().unwrap(), 4);
        assert_eq!(hub.findings(), 4);
    }
}
