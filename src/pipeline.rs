//! The replay pipeline: sources → decode → enrich → detect, with findings
//! handed to a callback. Several files are merged by event time (each file
//! is assumed roughly ordered; disorder within the lateness is fine), so a
//! replay gives the findings live processing gave.
//!
//! This is wiring (it reads files and may sleep to pace `--speed`); the
//! stages it drives are pure.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::decode::{DecodeSettings, Decoder};
use crate::detect::{Engine, Finding, FindingKind};
use crate::enrich::Enricher;
use crate::event::{DropReason, Enriched};
use crate::source::LineSource;

/// How a replay runs.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Format name for every input (`auto` detects per file).
    pub format: String,
    /// Pace events at this multiple of real time (`None` = as fast as possible).
    pub speed: Option<f64>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// How many bad-record examples to keep for the summary.
    pub max_examples: usize,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub records: u64,
    pub events: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub drop_examples: Vec<String>,
    pub findings: BTreeMap<&'static str, u64>,
    pub tokens_tracked: u64,
    pub suppressed_cooldown: u64,
    pub suppressed_allowlist: u64,
    /// Events whose credential the gateway rejected (401, 407, ext_authz
    /// denials, tokens failing JWKS verification): counted, never learnt
    /// from or acted on.
    pub rejected: u64,
    /// Tokens and profiles evicted at `engine.max_tracked_tokens`.
    pub tokens_evicted_cap: u64,
    /// Events more than `engine.reorder_ms` behind newer ones (within the
    /// lateness): processed at once, at the newest time already processed.
    pub stragglers: u64,
    /// Events that carried X-Forwarded-For while `input.trusted_proxies` is
    /// empty: their client is the peer address, a load balancer's if there
    /// is one in front of the gateway.
    pub xff_without_trusted_proxy: u64,
    pub elapsed_secs: f64,
    pub events_per_sec: f64,
    pub formats: BTreeMap<String, String>,
    /// What the response policy decided (`[policy]`).
    pub response: ResponseSummary,
}

/// Counts of the policy's decisions over a replay: what tokenwatch would
/// have done to these logs.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ResponseSummary {
    pub incidents: u64,
    pub revocations: u64,
    pub revocations_observed: u64,
    pub awaiting_approval: u64,
    pub skipped: u64,
    pub alerts: u64,
    pub alerts_in_digest: u64,
    pub fuses_tripped: Vec<String>,
}

impl ResponseSummary {
    pub fn count(&mut self, d: &crate::decide::Decision) {
        use crate::config::ActionKind;
        use crate::decide::ActionState;
        if d.opened {
            self.incidents += 1;
        }
        for a in &d.actions {
            match (a.kind, &a.state) {
                (ActionKind::Revoke, ActionState::Execute) => self.revocations += 1,
                (ActionKind::Revoke, ActionState::Observe(_)) => self.revocations_observed += 1,
                (_, ActionState::AwaitingApproval(_)) => self.awaiting_approval += 1,
                (_, ActionState::Skipped(_)) => self.skipped += 1,
                (ActionKind::Alert, ActionState::Execute) => self.alerts += 1,
                (ActionKind::Alert, ActionState::Digest) => self.alerts_in_digest += 1,
                (ActionKind::Alert, _) => {}
                (ActionKind::Revoke, ActionState::Digest) => {}
            }
        }
    }
}

impl Summary {
    pub fn total_dropped(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// The human-readable summary printed at the end of a replay.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "records read   {:>12}\nevents         {:>12}\ndropped        {:>12}\n",
            self.records,
            self.events,
            self.total_dropped()
        ));
        for (k, v) in &self.dropped {
            s.push_str(&format!("  {k:<20}{v:>9}\n"));
        }
        s.push_str(&format!(
            "rejected       {:>12} (credential refused by the gateway: not learnt from)\n",
            self.rejected
        ));
        if self.xff_without_trusted_proxy > 0 {
            s.push_str(&format!(
                "WARNING: {} events carry X-Forwarded-For but input.trusted_proxies is empty: \
                 their client IP is the gateway's peer address. If a load balancer sits in \
                 front of the gateway, list its networks in input.trusted_proxies.\n",
                self.xff_without_trusted_proxy
            ));
        }
        if self.tokens_evicted_cap > 0 {
            s.push_str(&format!(
                "evicted at cap {:>12} (engine.max_tracked_tokens reached: least recently seen first)\n",
                self.tokens_evicted_cap
            ));
        }
        s.push_str(&format!(
            "tokens tracked {:>12}\nfindings       {:>12}\n",
            self.tokens_tracked,
            self.findings.values().sum::<u64>()
        ));
        for (k, v) in &self.findings {
            s.push_str(&format!("  {k:<20}{v:>9}\n"));
        }
        s.push_str(&format!(
            "suppressed     {:>12} (cooldown {}, allow-list {})\n",
            self.suppressed_cooldown + self.suppressed_allowlist,
            self.suppressed_cooldown,
            self.suppressed_allowlist
        ));
        let r = &self.response;
        s.push_str(&format!(
            "incidents      {:>12}\n  revoke              {:>9}\n  would revoke        {:>9} (observe mode, dry run or fuse)\n  awaiting approval   {:>9}\n  never acted on      {:>9}\n  alerts              {:>9} (+{} in digests)\n",
            r.incidents,
            r.revocations,
            r.revocations_observed,
            r.awaiting_approval,
            r.skipped,
            r.alerts,
            r.alerts_in_digest
        ));
        if !r.fuses_tripped.is_empty() {
            s.push_str(&format!(
                "SAFETY FUSES TRIPPED: {} (automatic revocation stopped)\n",
                r.fuses_tripped.join(", ")
            ));
        }
        s.push_str(&format!(
            "elapsed        {:>11.2}s\nthroughput     {:>12.0} events/s\n",
            self.elapsed_secs, self.events_per_sec
        ));
        if !self.drop_examples.is_empty() {
            s.push_str("first bad records:\n");
            for e in &self.drop_examples {
                s.push_str(&format!("  {e}\n"));
            }
        }
        s
    }
}

struct Stream {
    src: LineSource,
    decoder: Decoder,
    buf: VecDeque<Enriched>,
    done: bool,
}

/// Decode, enrich and detect over a set of sources.
pub struct Pipeline {
    settings: DecodeSettings,
    /// The record step (decode and enrich), shared with `run`.
    processor: crate::process::Processor,
    pub engine: Engine,
    pub decider: crate::decide::Decider,
    /// When `Some`, every action request the policy made is kept here.
    pub actions: Option<Vec<crate::decide::ActionRequest>>,
    /// Called with each finding and what the policy decided (the demo
    /// records both in a store for its dashboard).
    pub on_decision: Option<Box<DecisionHook>>,
    /// Where processed events are counted for the dashboard.
    pub live: Option<Arc<crate::health::Health>>,
    /// When it triggers, the replay stops reading and returns what it has
    /// (the demo's Ctrl-C).
    pub stop: Option<crate::shutdown::Shutdown>,
}

pub type DecisionHook = dyn FnMut(&Finding, &crate::decide::Decision);

impl Pipeline {
    pub fn new(config: &Config, settings: DecodeSettings, enricher: Arc<Enricher>) -> Pipeline {
        Pipeline {
            settings,
            processor: crate::process::Processor::new(enricher),
            engine: Engine::new(config),
            decider: crate::decide::Decider::new(&config.policy),
            actions: None,
            on_decision: None,
            live: None,
            stop: None,
        }
    }

    fn decide(&mut self, f: &Finding, summary: &mut Summary) {
        let d = self.decider.decide(f);
        summary.response.count(&d);
        if let Some(h) = self.on_decision.as_mut() {
            h(f, &d);
        }
        if let Some(a) = self.actions.as_mut() {
            a.extend(d.actions);
        }
    }

    /// Replay `sources` to the end, calling `on_finding` for each finding as
    /// it happens.
    pub fn run(
        &mut self,
        sources: Vec<LineSource>,
        opts: &ReplayOptions,
        on_finding: &mut dyn FnMut(&Finding),
    ) -> Result<Summary, String> {
        let started = Instant::now();
        let mut summary = Summary::default();
        let mut drops = [0u64; DropReason::ALL.len()];
        let total_size: Option<u64> = sources.iter().map(|s| s.size).sum();
        let mut streams = Vec::with_capacity(sources.len());
        for src in sources {
            streams.push(Stream {
                decoder: self.settings.decoder(&opts.format)?,
                src: src.with_max_line(self.settings.max_record_bytes()),
                buf: VecDeque::new(),
                done: false,
            });
        }
        let bar = if opts.progress {
            let bar = match total_size {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
                )
                .expect("valid template"),
            );
            Some(bar)
        } else {
            None
        };
        let mut line = Vec::with_capacity(4096);
        let mut findings = Vec::new();
        let mut pace: Option<(i64, Instant)> = None;
        let mut since_tick = 0u32;
        loop {
            // Fill every stream's head, then take the earliest event.
            for s in streams.iter_mut().filter(|s| s.buf.is_empty() && !s.done) {
                while s.buf.is_empty() && !s.done {
                    let coord = match s.src.next_line(&mut line) {
                        Ok(Some(c)) => c,
                        Ok(None) => {
                            s.done = true;
                            break;
                        }
                        Err(e) => {
                            drops[DropReason::Io.index()] += 1;
                            note(
                                &mut summary,
                                opts,
                                format!("{}: read error, stopping this input: {e}", s.src.name()),
                            );
                            s.done = true;
                            break;
                        }
                    };
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    summary.records += 1;
                    let (buf, decoder) = (&mut s.buf, &mut s.decoder);
                    self.processor
                        .prepare(decoder, &line, None, |_, r| match r {
                            Ok(en) => buf.push_back(en),
                            Err(d) => {
                                drops[d.reason.index()] += 1;
                                let what = format!("{coord}: {}: {}", d.reason.as_str(), d.detail);
                                note(
                                    &mut summary,
                                    opts,
                                    match d.hint {
                                        Some(h) => format!("{what}; {h}"),
                                        None => what,
                                    },
                                );
                            }
                        });
                }
            }
            let next = streams
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.buf.front().map(|e| (e.event.ts, i)))
                .min();
            let Some((ts, i)) = next else { break };
            let ev = streams[i].buf.pop_front().expect("non-empty");
            if let Some(speed) = opts.speed {
                let (t0, w0) = *pace.get_or_insert((ts, Instant::now()));
                let due = Duration::from_secs_f64(((ts - t0).max(0) as f64 / 1000.0) / speed);
                // In slices, so a stop is heard while paced.
                while let Some(wait) = due.checked_sub(w0.elapsed())
                    && !wait.is_zero()
                    && !self.stop.as_ref().is_some_and(|s| s.is_triggered())
                {
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                }
            }
            summary.events += 1;
            self.engine.push(ev, &mut findings);
            for f in findings.drain(..) {
                crate::telemetry::finding(f.kind);
                self.decide(&f, &mut summary);
                on_finding(&f);
            }
            since_tick += 1;
            if since_tick.is_multiple_of(1024) {
                if let Some(h) = &self.live {
                    h.live.add_events(1024);
                }
                if self.stop.as_ref().is_some_and(|s| s.is_triggered()) {
                    break;
                }
            }
            if since_tick >= 8192 {
                since_tick = 0;
                if let Some(b) = &bar {
                    b.set_position(
                        streams
                            .iter()
                            .map(|s| s.src.progress.load(Ordering::Relaxed))
                            .sum(),
                    );
                    b.set_message(format!("{} events", summary.events));
                }
            }
        }
        if let Some(h) = &self.live {
            h.live.add_events(u64::from(since_tick % 1024));
        }
        self.engine.flush(&mut findings);
        for f in findings.drain(..) {
            crate::telemetry::finding(f.kind);
            self.decide(&f, &mut summary);
            on_finding(&f);
        }
        summary.response.fuses_tripped = self.decider.tripped();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        for s in &streams {
            summary.xff_without_trusted_proxy += s.decoder.xff_without_trusted_proxy();
            summary.formats.insert(
                s.src.name().to_string(),
                s.decoder.format_name().unwrap_or("unknown").to_string(),
            );
        }
        drops[DropReason::Late.index()] += self.engine.stats.late;
        summary.events -= self.engine.stats.late;
        summary.stragglers = self.engine.stats.stragglers;
        crate::telemetry::records("file", summary.records);
        crate::telemetry::events(summary.events);
        for r in DropReason::ALL {
            if drops[r.index()] > 0 {
                summary.dropped.insert(r.as_str(), drops[r.index()]);
                crate::telemetry::dropped(r, drops[r.index()]);
            }
        }
        for k in FindingKind::ALL {
            let n = self.engine.stats.findings[k.index()];
            if n > 0 {
                summary.findings.insert(k.as_str(), n);
            }
        }
        summary.tokens_tracked = self.engine.stats.tokens_tracked;
        summary.suppressed_cooldown = self.engine.stats.suppressed_cooldown;
        summary.suppressed_allowlist = self.engine.stats.suppressed_allowlist;
        summary.rejected = self.engine.stats.rejected;
        if let Some(h) = &self.live {
            h.live.add_rejected(summary.rejected);
        }
        summary.tokens_evicted_cap = self.engine.stats.tokens_evicted_cap;
        crate::telemetry::tokens_evicted_cap(summary.tokens_evicted_cap);
        crate::telemetry::rejected(summary.rejected);
        summary.elapsed_secs = started.elapsed().as_secs_f64();
        summary.events_per_sec = summary.events as f64 / summary.elapsed_secs.max(1e-9);
        Ok(summary)
    }
}

fn note(summary: &mut Summary, opts: &ReplayOptions, msg: String) {
    tracing::debug!(target: "tokenwatch::drop", "{msg}");
    if summary.drop_examples.len() < opts.max_examples {
        tracing::warn!("{msg}");
        summary.drop_examples.push(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::netclass::NetClassifier;

    #[test]
    fn drops_and_records_are_exported_as_metrics() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let cfg = Config::default();
        let enricher = Arc::new(Enricher::new(
            None,
            None,
            NetClassifier::new(&cfg.network_classes),
            0,
        ));
        let mut p = Pipeline::new(&cfg, DecodeSettings::new(&cfg, b"k").unwrap(), enricher);
        let input = b"not json\n{\"start_time\":\"2026-01-01T00:00:00Z\",\"downstream_remote_address\":\"1.2.3.4:5\",\"authorization\":\"Bearer abc\"}\n[1]\n".to_vec();
        let opts = ReplayOptions {
            format: "envoy".into(),
            ..Default::default()
        };
        let summary = metrics::with_local_recorder(&recorder, || {
            p.run(vec![LineSource::from_bytes("t", input)], &opts, &mut |_| {})
                .unwrap()
        });
        assert_eq!(summary.records, 3);
        let mut got = std::collections::BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let k = key.key();
            let labels: Vec<String> = k
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            if let metrics_util::debugging::DebugValue::Counter(n) = value {
                got.insert(format!("{}{{{}}}", k.name(), labels.join(",")), n);
            }
        }
        assert_eq!(got.get("tokenwatch_records_total{source=file}"), Some(&3));
        assert_eq!(got.get("tokenwatch_events_total{}"), Some(&1));
        assert_eq!(
            got.get("tokenwatch_dropped_total{reason=not_json}"),
            Some(&1)
        );
        assert_eq!(
            got.get("tokenwatch_dropped_total{reason=not_object}"),
            Some(&1)
        );
    }

    /// Issue 14, point 13: one line over `max_record_bytes` is a counted
    /// drop; the records around it are read.
    #[test]
    fn a_huge_line_is_one_drop_between_good_records() {
        let mut cfg = Config::default();
        cfg.input.max_record_bytes = 4096;
        let enricher = Arc::new(Enricher::new(
            None,
            None,
            NetClassifier::new(&cfg.network_classes),
            0,
        ));
        let mut p = Pipeline::new(&cfg, DecodeSettings::new(&cfg, b"k").unwrap(), enricher);
        let good = |s: u32| {
            format!(
                "{{\"start_time\":\"2026-01-01T00:00:0{s}Z\",\"downstream_remote_address\":\"1.2.3.4:5\",\"authorization\":\"Bearer abc\"}}\n"
            )
        };
        let mut input = good(1).into_bytes();
        input.extend_from_slice(b"{\"path\":\"");
        input.extend(std::iter::repeat_n(b'a', 8 << 20));
        input.extend_from_slice(b"\"}\n");
        input.extend_from_slice(good(2).as_bytes());
        let opts = ReplayOptions {
            format: "envoy".into(),
            max_examples: 10,
            ..Default::default()
        };
        let summary = p
            .run(vec![LineSource::from_bytes("t", input)], &opts, &mut |_| {})
            .unwrap();
        assert_eq!((summary.records, summary.events), (3, 2));
        assert_eq!(summary.dropped.get("too_large"), Some(&1));
        assert!(
            summary
                .drop_examples
                .iter()
                .any(|e| e.starts_with("t:2: too_large")),
            "{:?}",
            summary.drop_examples
        );
    }
}
