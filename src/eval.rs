//! Scoring findings against ground-truth labels: recall per attack kind,
//! false-positive tokens per 1,000 benign tokens, detection delay.
//!
//! An attack counts as detected when a finding on its token, at or after
//! the attack started, comes from the attack's own detector ("exact") or
//! from any detector of the same family ("any"): replay, travel and
//! suspicious network are all signals of a replayed token, siphoning and
//! enumeration of bulk abuse. Pure.

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::Severity;
use crate::detect::{Finding, FindingKind};
use crate::synth::Labels;

fn family(k: FindingKind) -> u8 {
    match k {
        FindingKind::TokenReplay
        | FindingKind::ImpossibleTravel
        | FindingKind::SuspiciousNetwork => 0,
        FindingKind::BulkSiphon | FindingKind::Enumeration => 1,
    }
}

/// A finding, reduced to what scoring needs (so findings files can be read back).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ScoredFinding {
    pub kind: FindingKind,
    pub token_id: String,
    pub event_ts: i64,
    /// Absent in finding files written before severities were scored.
    #[serde(default)]
    pub severity: Option<Severity>,
}

impl From<&Finding> for ScoredFinding {
    fn from(f: &Finding) -> Self {
        ScoredFinding {
            kind: f.kind,
            token_id: f.token_id.to_string(),
            event_ts: f.event_ts,
            severity: Some(f.severity),
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct KindScore {
    pub attacks: u32,
    pub detected_exact: u32,
    pub detected_any: u32,
    pub recall_exact: f64,
    pub recall_any: f64,
    pub delay_p50_secs: f64,
    pub delay_max_secs: f64,
    pub missed: Vec<String>,
}

impl KindScore {
    /// Recall from the counts, delays from the histogram of detected ones.
    fn finish(&mut self, delays: Option<&Histogram<u64>>) {
        self.recall_exact = f64::from(self.detected_exact) / f64::from(self.attacks.max(1));
        self.recall_any = f64::from(self.detected_any) / f64::from(self.attacks.max(1));
        if let Some(h) = delays {
            self.delay_p50_secs = h.value_at_quantile(0.5) as f64;
            self.delay_max_secs = h.max() as f64;
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub per_kind: BTreeMap<FindingKind, KindScore>,
    /// Per `kind/variant` (burst and slow siphoning, fast and slow
    /// enumeration, a second device on the same network…).
    pub per_variant: BTreeMap<String, KindScore>,
    /// Benign but ambiguous tokens (VPN toggles, home-routed roaming)…
    pub ambiguous_tokens: usize,
    /// …those with any finding (expected: low ones)…
    pub ambiguous_flagged: usize,
    /// …and those with a finding above low (expected: none).
    pub ambiguous_above_low: usize,
    pub benign_tokens: usize,
    pub false_positive_tokens: usize,
    pub false_positives_per_1000: f64,
    pub false_positive_findings_by_kind: BTreeMap<FindingKind, u32>,
    pub false_positive_examples: Vec<String>,
    pub findings: usize,
}

pub fn score(labels: &Labels, findings: &[ScoredFinding]) -> Report {
    let mut by_token: BTreeMap<&str, Vec<&ScoredFinding>> = BTreeMap::new();
    for f in findings {
        by_token.entry(f.token_id.as_str()).or_default().push(f);
    }
    let mut report = Report {
        findings: findings.len(),
        benign_tokens: labels.benign_tokens.len(),
        ..Default::default()
    };
    let mut delays: BTreeMap<FindingKind, Histogram<u64>> = BTreeMap::new();
    let mut variant_delays: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for a in &labels.attacks {
        let variant = format!(
            "{}/{}",
            a.kind.as_str(),
            if a.variant.is_empty() {
                "-"
            } else {
                &a.variant
            }
        );
        report
            .per_variant
            .entry(variant.clone())
            .or_default()
            .attacks += 1;
        let s = report.per_kind.entry(a.kind).or_default();
        s.attacks += 1;
        let hits: Vec<&&ScoredFinding> = by_token
            .get(a.token_id.as_str())
            .map(|v| v.iter().filter(|f| f.event_ts >= a.start_ts).collect())
            .unwrap_or_default();
        let exact = hits
            .iter()
            .filter(|f| f.kind == a.kind)
            .map(|f| f.event_ts)
            .min();
        let any = hits
            .iter()
            .filter(|f| family(f.kind) == family(a.kind))
            .map(|f| f.event_ts)
            .min();
        if exact.is_some() {
            s.detected_exact += 1;
        }
        match any {
            Some(ts) => {
                s.detected_any += 1;
                let delay = ((ts - a.start_ts).max(0) / 1000) as u64;
                let h = delays
                    .entry(a.kind)
                    .or_insert_with(|| Histogram::new(3).expect("valid sigfig"));
                let _ = h.record(delay);
                let h = variant_delays
                    .entry(variant.clone())
                    .or_insert_with(|| Histogram::new(3).expect("valid sigfig"));
                let _ = h.record(delay);
            }
            None => s.missed.push(format!("{} ({})", a.attack_id, a.token_id)),
        }
        if let Some(v) = report.per_variant.get_mut(&variant) {
            v.detected_exact += u32::from(exact.is_some());
            v.detected_any += u32::from(any.is_some());
            if any.is_none() {
                v.missed.push(format!("{} ({})", a.attack_id, a.token_id));
            }
        }
    }
    for (k, s) in report.per_variant.iter_mut() {
        s.finish(variant_delays.get(k));
    }
    let ambiguous: BTreeSet<&str> = labels.ambiguous_tokens.iter().map(String::as_str).collect();
    report.ambiguous_tokens = ambiguous.len();
    let mut flagged = BTreeSet::new();
    let mut above = BTreeSet::new();
    for f in findings {
        if ambiguous.contains(f.token_id.as_str()) {
            flagged.insert(f.token_id.as_str());
            if f.severity.is_some_and(|s| s > Severity::Low) {
                above.insert(f.token_id.as_str());
            }
        }
    }
    report.ambiguous_flagged = flagged.len();
    report.ambiguous_above_low = above.len();
    for (k, s) in report.per_kind.iter_mut() {
        s.finish(delays.get(k));
    }
    let benign: BTreeSet<&str> = labels.benign_tokens.iter().map(String::as_str).collect();
    let mut fp_tokens = BTreeSet::new();
    for f in findings {
        if benign.contains(f.token_id.as_str()) {
            fp_tokens.insert(f.token_id.as_str());
            *report
                .false_positive_findings_by_kind
                .entry(f.kind)
                .or_default() += 1;
            if report.false_positive_examples.len() < 10 {
                report.false_positive_examples.push(format!(
                    "{} on {}",
                    f.kind.as_str(),
                    f.token_id
                ));
            }
        }
    }
    report.false_positive_tokens = fp_tokens.len();
    report.false_positives_per_1000 = fp_tokens.len() as f64 * 1000.0 / benign.len().max(1) as f64;
    report
}

impl Report {
    /// A Markdown table (the README shows one).
    pub fn render(&self) -> String {
        let mut s = String::from(
            "| attack kind | attacks | recall (own detector) | recall (any replay/bulk detector) | delay p50 | delay max |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for (k, v) in &self.per_kind {
            s.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} | {:.0} s | {:.0} s |\n",
                k.as_str(),
                v.attacks,
                v.recall_exact,
                v.recall_any,
                v.delay_p50_secs,
                v.delay_max_secs
            ));
        }
        if self.per_variant.keys().any(|k| !k.ends_with("/-")) {
            s.push_str("\n| attack variant | attacks | recall (own detector) | recall (any) | delay p50 | delay max |\n|---|---:|---:|---:|---:|---:|\n");
            for (k, v) in &self.per_variant {
                s.push_str(&format!(
                    "| {k} | {} | {:.2} | {:.2} | {:.0} s | {:.0} s |\n",
                    v.attacks, v.recall_exact, v.recall_any, v.delay_p50_secs, v.delay_max_secs
                ));
            }
        }
        if self.ambiguous_tokens > 0 {
            s.push_str(&format!(
                "\nambiguous (VPN toggles, home-routed roaming): {} tokens, {} flagged, {} above low\n",
                self.ambiguous_tokens, self.ambiguous_flagged, self.ambiguous_above_low
            ));
        }
        s.push_str(&format!(
            "\nfalse positives: {} of {} benign tokens = {:.2} per 1,000 ({} findings in all)\n",
            self.false_positive_tokens,
            self.benign_tokens,
            self.false_positives_per_1000,
            self.findings
        ));
        for (k, n) in &self.false_positive_findings_by_kind {
            s.push_str(&format!(
                "  {}: {n} findings on benign tokens\n",
                k.as_str()
            ));
        }
        for (k, v) in &self.per_kind {
            if !v.missed.is_empty() {
                s.push_str(&format!(
                    "  missed {}: {}\n",
                    k.as_str(),
                    v.missed.join(", ")
                ));
            }
        }
        s
    }
}
