//! Metrics through the `metrics` facade (Prometheus names; the dashboard
//! issue serves them at /metrics). Every observable thing has one function
//! here, so names and labels live in one place. Labels are bounded sets
//! (drop reasons, finding kinds, topic/partition): never token ids or IPs.

use metrics::{counter, gauge, histogram};

use crate::detect::FindingKind;
use crate::event::DropReason;

/// Records read from a source (`file` or `kafka`).
pub fn records(source: &'static str, n: u64) {
    counter!("tokenwatch_records_total", "source" => source).increment(n);
}

/// Records turned into events.
pub fn events(n: u64) {
    counter!("tokenwatch_events_total").increment(n);
}

/// Requests whose credential the gateway rejected (counted, never learnt from).
pub fn rejected(n: u64) {
    counter!("tokenwatch_rejected_requests_total").increment(n);
}

/// Events processed as stragglers: later than `engine.reorder_ms` behind
/// newer ones, within the lateness. Many of them say the hold is shorter
/// than the input's disorder.
pub fn stragglers(n: u64) {
    counter!("tokenwatch_stragglers_total").increment(n);
}

/// Tokens and profiles evicted at `engine.max_tracked_tokens`.
pub fn tokens_evicted_cap(n: u64) {
    counter!("tokenwatch_tokens_evicted_cap_total").increment(n);
}

/// Raw tokens custody refused to keep (full): their revocations cannot
/// present the token (RFC 7009). Absolute: custody counts them itself.
pub fn custody_refused(total: u64) {
    counter!("tokenwatch_custody_refused_total").absolute(total);
}

pub fn dropped(reason: DropReason, n: u64) {
    counter!("tokenwatch_dropped_total", "reason" => reason.as_str()).increment(n);
}

pub fn finding(kind: FindingKind) {
    counter!("tokenwatch_findings_total", "kind" => kind.as_str()).increment(1);
}

/// Seconds from the triggering event's gateway timestamp to the finding
/// leaving tokenwatch (live processing only; wall clock at the edge).
pub fn finding_latency(seconds: f64) {
    histogram!("tokenwatch_finding_latency_seconds").record(seconds.max(0.0));
}

pub fn dead_letter() {
    counter!("tokenwatch_dead_letters_total").increment(1);
}

pub fn commit(ok: bool) {
    counter!("tokenwatch_offset_commits_total", "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

pub fn tracked_tokens(topic: &str, partition: i32, n: usize) {
    gauge!("tokenwatch_tracked_tokens", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(n as f64);
}

pub fn finding_deduplicated() {
    counter!("tokenwatch_findings_deduplicated_total").increment(1);
}

/// Seconds from the broker timestamp of the triggering record to the
/// finding being produced.
pub fn processing_latency(seconds: f64) {
    histogram!("tokenwatch_processing_latency_seconds").record(seconds.max(0.0));
}

pub fn consumer_lag(topic: &str, partition: i32, lag: i64) {
    gauge!("tokenwatch_consumer_lag", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

pub fn checkpoint_age(topic: &str, partition: i32, seconds: f64) {
    gauge!("tokenwatch_checkpoint_age_seconds", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(seconds);
}

pub fn checkpoint(seconds: f64, bytes: usize) {
    histogram!("tokenwatch_checkpoint_duration_seconds").record(seconds);
    counter!("tokenwatch_checkpoint_bytes_total").increment(bytes as u64);
}

/// A partition's detector state restored at assignment, `from` the local
/// `store` or the `changelog` topic, with how many tokens it tracks.
pub fn restored(tokens: usize, from: &'static str) {
    counter!("tokenwatch_restored_partitions_total", "from" => from).increment(1);
    counter!("tokenwatch_restored_tokens_total", "from" => from).increment(tokens as u64);
}

/// Partitions this instance holds now (after each assignment or revocation).
pub fn assigned_partitions(n: usize) {
    gauge!("tokenwatch_assigned_partitions").set(n as f64);
}

pub fn repartition_duplicate() {
    counter!("tokenwatch_repartition_duplicates_total").increment(1);
}

/// Actions decided, by type (revoke, alert) and state (pending = to be
/// executed, observed, awaiting_approval, skipped, digest).
pub fn action(kind: &'static str, state: &'static str) {
    counter!("tokenwatch_actions_total", "kind" => kind, "state" => state).increment(1);
}

/// Deliveries by action kind, endpoint (configured names: bounded) and result.
pub fn delivery(kind: &str, endpoint: &str, result: &'static str) {
    counter!("tokenwatch_deliveries_total", "kind" => kind.to_string(), "endpoint" => endpoint.to_string(), "result" => result)
        .increment(1);
}

/// Actions and deliveries not finished yet.
pub fn outbox_backlog(n: i64) {
    gauge!("tokenwatch_outbox_backlog").set(n as f64);
}

/// 1 while an endpoint's circuit breaker is open.
pub fn breaker_open(endpoint: &str, open: bool) {
    gauge!("tokenwatch_breaker_open", "endpoint" => endpoint.to_string()).set(if open {
        1.0
    } else {
        0.0
    });
}

/// Raw tokens in custody (sealed).
pub fn custody_tokens(n: usize) {
    gauge!("tokenwatch_custody_tokens").set(n as f64);
}

/// Deny-list checks by result (`allow`, `deny`).
pub fn deny_check(result: &'static str) {
    counter!("tokenwatch_denylist_checks_total", "result" => result).increment(1);
}
