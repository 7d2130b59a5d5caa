//! Detect: the event-time engine. Events are put in event-time order
//! (within the configured lateness), per-token state is updated, detectors
//! raise signals, and signals become [`Finding`]s with deterministic ids,
//! per-token cooldowns and allow-lists applied.
//!
//! Architecture Invariant: the engine never reads the wall clock and never
//! does I/O. Its only notion of "now" is the watermark derived from event
//! timestamps, so replaying the same input (at any speed, in any batch
//! size, shuffled within the lateness bound) gives the same findings.

// The pure core is total: no indexing or string slicing that can panic.
#![deny(clippy::indexing_slicing, clippy::string_slice)]

pub mod context;
pub mod detectors;
pub mod registry;
pub mod state;

use std::collections::VecDeque;
use std::sync::Arc;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, Mode, RouteClass, Severity};
use crate::event::{Enriched, EventTime, IdentityKind, TokenId, fmt_time, stable_hash};
use detectors::Context;
use state::{PlaceSlot, Profile, TokenState, class_index};

pub use crate::event::FindingKind;

/// What a detector reports before the engine makes it a finding.
#[derive(Debug, Clone)]
pub struct Signal {
    /// Overrides the detector's configured severity (escalation).
    pub severity: Option<Severity>,
    pub score: u8,
    pub summary: String,
    pub evidence_first: EventTime,
    pub evidence: serde_json::Value,
}

/// A finding: one detector fired on one token.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Deterministic: the same input gives the same id.
    pub id: String,
    pub kind: FindingKind,
    pub severity: Severity,
    pub score: u8,
    pub mode: Mode,
    pub token_id: TokenId,
    pub subject: Option<Arc<str>>,
    pub client_id: Option<Arc<str>>,
    /// Event time of the triggering request (RFC 3339).
    pub event_time: String,
    pub event_ts: EventTime,
    pub evidence_first: String,
    pub evidence_last: String,
    pub summary: String,
    pub client_ip: String,
    pub asn: u32,
    pub network: &'static str,
    pub country: Option<Arc<str>>,
    pub city: Option<Arc<str>>,
    pub route: String,
    pub user_agent: String,
    pub evidence: serde_json::Value,
    /// The token's places, devices and recent activity at the finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Box<context::TokenContext>>,
    /// Expiry of the token (ms), when it said so (JWT `exp`).
    #[serde(skip)]
    pub token_exp: Option<EventTime>,
    /// Broker timestamp of the triggering record (ms; none for files). Not output.
    #[serde(skip)]
    pub source_ts: Option<i64>,
}

/// Counters the engine keeps (exported in the replay summary).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct EngineStats {
    pub events: u64,
    pub late: u64,
    pub tokens_tracked: u64,
    pub tokens_evicted: u64,
    pub findings: [u64; 5],
    pub suppressed_cooldown: u64,
    pub suppressed_allowlist: u64,
    /// Events whose credential the gateway rejected: counted, never learnt from.
    pub rejected: u64,
    /// Tokens (and profiles) evicted because `max_tracked_tokens` was reached.
    pub tokens_evicted_cap: u64,
    /// Events that arrived after the reorder buffer had released later
    /// ones (within the lateness): processed at once, at the latest event
    /// time already processed.
    #[serde(default)]
    pub stragglers: u64,
}

struct Allow {
    cidrs: Vec<IpNet>,
    asns: Vec<u32>,
    subjects: Vec<String>,
    client_ids: Vec<String>,
    user_agents: Vec<String>,
    routes: Vec<String>,
}

impl Allow {
    fn matches(&self, e: &Enriched) -> bool {
        let ev = &e.event;
        self.cidrs.iter().any(|n| n.contains(&ev.client_ip))
            || self.asns.contains(&e.net.asn)
            || ev
                .subject
                .as_deref()
                .is_some_and(|s| self.subjects.iter().any(|a| a == s))
            || ev
                .client_id
                .as_deref()
                .is_some_and(|s| self.client_ids.iter().any(|a| a == s))
            || ev
                .user_agent
                .as_deref()
                .is_some_and(|u| self.user_agents.iter().any(|a| u.contains(a.as_str())))
            || self
                .routes
                .iter()
                .any(|r| ev.path.starts_with(r.as_str()) || ev.route.as_ref() == r)
    }
}

/// Version of the [`Engine::snapshot`] format.
pub const SNAPSHOT_VERSION: u32 = 5;

/// A snapshot that cannot be decoded (corrupt, or from another version).
#[derive(Debug, thiserror::Error)]
#[error("detector state snapshot: {0}")]
pub struct SnapshotError(String);

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    max_ts: EventTime,
    frontier: EventTime,
    next_gc: EventTime,
    stats: &'a EngineStats,
    tokens: &'a FxHashMap<u64, Box<TokenState>>,
    subjects: &'a FxHashMap<u64, Box<Profile>>,
    clients: &'a FxHashMap<u64, Box<Profile>>,
    pending: Vec<(i64, u32)>,
}

#[derive(serde::Deserialize)]
struct SnapshotOwned {
    version: u32,
    max_ts: EventTime,
    frontier: EventTime,
    next_gc: EventTime,
    stats: EngineStats,
    tokens: FxHashMap<u64, Box<TokenState>>,
    subjects: FxHashMap<u64, Box<Profile>>,
    clients: FxHashMap<u64, Box<Profile>>,
    pending: Vec<(i64, u32)>,
}

/// Processing order: event time, then content, never arrival order.
fn order(e: &Enriched) -> (EventTime, u64, u64) {
    (e.event.ts, e.event.token_key, e.order_key)
}

/// The detection engine for one shard of tokens.
pub struct Engine {
    detectors: Vec<registry::Entry>,
    allow: Allow,
    routes: Vec<(String, usize)>,
    route_classes: Vec<RouteClass>,
    lateness_ms: i64,
    reorder_ms: i64,
    token_ttl_ms: i64,
    profile_ttl_ms: i64,
    max_tracked: usize,
    gc_every_ms: i64,
    buckets: usize,
    ewma_alpha: f32,
    min_move_km: f64,
    /// Boxed: the map's table then holds 16-byte entries, and its doubling
    /// growth does not double the states themselves.
    tokens: FxHashMap<u64, Box<TokenState>>,
    subjects: FxHashMap<u64, Box<Profile>>,
    clients: FxHashMap<u64, Box<Profile>>,
    /// Events waiting for the watermark, sorted by [`order`]. Input is
    /// nearly sorted, so inserting near the back is the common case.
    pending: VecDeque<Enriched>,
    max_ts: EventTime,
    /// Event time of the last event processed: detectors never see time
    /// go backwards.
    frontier: EventTime,
    next_gc: EventTime,
    pub stats: EngineStats,
}

impl Engine {
    pub fn new(cfg: &Config) -> Engine {
        let d = &cfg.detectors;
        let detectors = registry::entries(d);
        let a = &cfg.allow;
        let mut route_classes = vec![RouteClass::default()];
        let mut class_idx = FxHashMap::default();
        for (name, rc) in &cfg.route_classes {
            class_idx.insert(name.clone(), route_classes.len());
            route_classes.push(rc.clone());
        }
        let routes = cfg
            .routes
            .iter()
            .map(|r| {
                (
                    r.prefix.clone(),
                    class_idx.get(&r.class).copied().unwrap_or(0),
                )
            })
            .collect();
        let buckets = usize::from(d.bulk_siphon.window_minutes)
            .max(d.enumeration.window_secs.div_ceil(60) as usize);
        let token_ttl_ms = (cfg.engine.token_idle_ttl_secs * 1000) as i64;
        Engine {
            detectors,
            allow: Allow {
                cidrs: a.cidrs.clone(),
                asns: a.asns.clone(),
                subjects: a.subjects.clone(),
                client_ids: a.client_ids.clone(),
                user_agents: a.user_agents.clone(),
                routes: a.routes.clone(),
            },
            routes,
            route_classes,
            lateness_ms: (cfg.engine.lateness_secs * 1000) as i64,
            reorder_ms: cfg.engine.reorder_ms.min(cfg.engine.lateness_secs * 1000) as i64,
            token_ttl_ms,
            profile_ttl_ms: (cfg.engine.profile_ttl_secs * 1000) as i64,
            max_tracked: cfg.engine.max_tracked_tokens.max(1),
            gc_every_ms: (token_ttl_ms / 8).clamp(60_000, 3_600_000),
            buckets: buckets.max(1),
            ewma_alpha: d.bulk_siphon.ewma_alpha as f32,
            min_move_km: d.impossible_travel.min_distance_km,
            tokens: FxHashMap::default(),
            subjects: FxHashMap::default(),
            clients: FxHashMap::default(),
            pending: VecDeque::new(),
            max_ts: i64::MIN,
            frontier: i64::MIN,
            next_gc: i64::MIN,
            stats: EngineStats::default(),
        }
    }

    /// Events older than this are late (they would be processed out of order).
    pub fn watermark(&self) -> EventTime {
        self.max_ts.saturating_sub(self.lateness_ms)
    }

    /// The smallest source offset among events not yet processed: an input
    /// offset may be committed only below it.
    pub fn oldest_pending_offset(&self) -> Option<i64> {
        self.pending
            .iter()
            .filter_map(|e| e.source.map(|s| s.offset))
            .min()
    }

    pub fn tracked_tokens(&self) -> usize {
        self.tokens.len()
    }

    /// Accept one event; findings of every event released from the reorder
    /// buffer are appended to `out`. Returns `false` if the event was late
    /// (more than the lateness behind the newest event: dropped).
    ///
    /// An event waits in the buffer only until one `reorder_ms` newer
    /// arrives, so on live traffic a finding waits `reorder_ms`, not the
    /// lateness. One that comes after its place was released (a straggler)
    /// is processed at once, at the latest time already processed. What is
    /// released, and when, depends only on the sequence of events, never on
    /// the wall clock: a replay of the same records gives the same findings.
    pub fn push(&mut self, mut ev: Enriched, out: &mut Vec<Finding>) -> bool {
        if self.max_ts != i64::MIN && ev.event.ts < self.watermark() {
            self.stats.late += 1;
            return false;
        }
        self.max_ts = self.max_ts.max(ev.event.ts);
        if ev.event.ts < self.frontier {
            self.stats.stragglers += 1;
            ev.event.ts = self.frontier;
            self.process(&ev, out);
            return true;
        }
        let key = order(&ev);
        if self.pending.back().is_none_or(|b| order(b) <= key) {
            self.pending.push_back(ev);
        } else {
            let at = self.pending.partition_point(|p| order(p) <= key);
            self.pending.insert(at, ev);
        }
        let release = self.max_ts.saturating_sub(self.reorder_ms);
        while self.pending.front().is_some_and(|p| p.event.ts <= release) {
            if let Some(e) = self.pending.pop_front() {
                self.process(&e, out);
            }
        }
        true
    }

    /// End of input, or a live source gone quiet: process everything still
    /// waiting. An older event arriving after this is a straggler (see
    /// [`Engine::push`]).
    pub fn flush(&mut self, out: &mut Vec<Finding>) {
        while let Some(e) = self.pending.pop_front() {
            self.process(&e, out);
        }
    }

    /// Events held in the reorder buffer.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Serialise the engine's state: per-token state, profiles, counters,
    /// the watermark, and the identity `(source offset, index)` of each event
    /// still in the reorder buffer (the events themselves are read again from
    /// the source on restore). Pure: no I/O.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let snap = SnapshotRef {
            version: SNAPSHOT_VERSION,
            max_ts: self.max_ts,
            frontier: self.frontier,
            next_gc: self.next_gc,
            stats: &self.stats,
            tokens: &self.tokens,
            subjects: &self.subjects,
            clients: &self.clients,
            pending: self
                .pending
                .iter()
                .filter_map(|e| e.source.map(|s| (s.offset, s.index)))
                .collect(),
        };
        postcard::to_allocvec(&snap).map_err(|e| SnapshotError(e.to_string()))
    }

    /// Replace this engine's state with a [`snapshot`](Engine::snapshot).
    /// Returns the identities of the events that were waiting in the reorder
    /// buffer: the caller feeds exactly those again (and skips the other
    /// events it had already processed below the snapshot's next offset).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<Vec<(i64, u32)>, SnapshotError> {
        let snap: SnapshotOwned =
            postcard::from_bytes(bytes).map_err(|e| SnapshotError(e.to_string()))?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(SnapshotError(format!(
                "snapshot format {} (this build reads {SNAPSHOT_VERSION})",
                snap.version
            )));
        }
        let mut tokens = snap.tokens;
        // The window length may have changed in the configuration since.
        for t in tokens.values_mut() {
            if t.buckets.len() != self.buckets {
                t.buckets = vec![state::Bucket::default(); self.buckets].into_boxed_slice();
            }
        }
        self.tokens = tokens;
        self.subjects = snap.subjects;
        self.clients = snap.clients;
        self.max_ts = snap.max_ts;
        self.frontier = snap.frontier;
        self.next_gc = snap.next_gc;
        self.stats = snap.stats;
        self.pending.clear();
        Ok(snap.pending)
    }

    fn route_class(&self, e: &Enriched) -> usize {
        self.routes
            .iter()
            .find(|(p, _)| e.event.path.starts_with(p.as_str()) || e.event.route.as_ref() == p)
            .map(|(_, c)| *c)
            .unwrap_or(0)
    }

    fn gc(&mut self, now: EventTime) {
        let before = self.tokens.len();
        let ttl = self.token_ttl_ms;
        self.tokens.retain(|_, t| now - t.last <= ttl);
        self.stats.tokens_evicted += (before - self.tokens.len()) as u64;
        let pttl = self.profile_ttl_ms;
        self.subjects.retain(|_, p| now - p.last <= pttl);
        self.clients.retain(|_, p| now - p.last <= pttl);
        self.tokens.shrink_to(self.tokens.len() * 2);
    }

    /// Tokens and profiles evicted at the cap so far.
    pub fn evicted_at_cap(&self) -> u64 {
        self.stats.tokens_evicted_cap
    }

    fn process(&mut self, e: &Enriched, out: &mut Vec<Finding>) {
        let ts = e.event.ts;
        self.frontier = self.frontier.max(ts);
        self.stats.events += 1;
        if ts >= self.next_gc {
            if self.next_gc != i64::MIN {
                self.gc(ts);
            }
            self.next_gc = ts + self.gc_every_ms;
        }
        // A request the gateway refused proves nothing about who sent it:
        // it teaches no token, subject or client state and raises nothing
        // that could open an incident, spend a budget or reach a revoker.
        if e.event.rejected {
            self.stats.rejected += 1;
            return;
        }
        // Bounded state: at the cap, make room before a new token (or
        // profile) is tracked.
        let cap = self.max_tracked;
        if self.tokens.len() >= cap && !self.tokens.contains_key(&e.event.token_key) {
            self.stats.tokens_evicted_cap += evict_least_recent(&mut self.tokens, cap, |t| t.last);
        }
        if self.subjects.len() >= cap {
            self.stats.tokens_evicted_cap +=
                evict_least_recent(&mut self.subjects, cap, |p| p.last);
        }
        if self.clients.len() >= cap {
            self.stats.tokens_evicted_cap += evict_least_recent(&mut self.clients, cap, |p| p.last);
        }
        let subject_key = e
            .event
            .subject
            .as_deref()
            .map(|s| stable_hash(s.as_bytes()));
        // Per-client history is for tokens without a user (client credentials:
        // service tokens). A user's token is judged by its subject's history;
        // one web app's thousands of users must not share one profile.
        let client_key = match e.event.subject {
            Some(_) => None,
            None => e
                .event
                .client_id
                .as_deref()
                .map(|s| stable_hash(s.as_bytes())),
        };
        let minute = (ts / 60_000) as u32;

        let rc = self.route_class(e);
        let allowed = self.allow.matches(e);
        let Engine {
            tokens,
            subjects,
            clients,
            detectors,
            stats,
            route_classes,
            buckets,
            ewma_alpha,
            min_move_km,
            ..
        } = self;
        let tok = tokens.entry(e.event.token_key).or_insert_with(|| {
            stats.tokens_tracked += 1;
            let mut t = Box::new(TokenState::new(ts, *buckets));
            // Baselines carry over across a subject's (or client's) successive tokens.
            let inherited = subject_key
                .and_then(|k| subjects.get(&k))
                .map(|p| p.baseline)
                .filter(|b| b.active_minutes > 0)
                .or_else(|| client_key.and_then(|k| clients.get(&k)).map(|p| p.baseline));
            if let Some(b) = inherited {
                t.baseline = b;
            }
            t.open_minute = minute;
            t
        });
        // 1. Windows: close finished minutes into the baseline, add this event.
        if minute > tok.open_minute {
            let open = tok.open_minute;
            let n = tok.buckets.len().max(1);
            if let Some(b) = tok.buckets.get(open as usize % n).copied()
                && b.minute == state::minute_tag(open)
                && b.requests > 0
            {
                tok.baseline.feed(&b, *ewma_alpha);
                // The session rate learns from ordinary minutes only: not
                // from a pull already far above it (which it would absorb).
                let calm = tok.scales().is_none_or(|s| {
                    let s = s.at(ts);
                    let expect = tok.baseline.rate_requests * 15.0;
                    s.requests15 < 2.0 * expect.max(4.0)
                });
                if calm {
                    tok.baseline.feed_rate(f32::from(b.requests), b.kib as f32);
                    // The idle minutes that follow, when within the session.
                    let gap = minute - open - 1;
                    if gap < state::SESSION_GAP_MINUTES {
                        for _ in 0..gap {
                            tok.baseline.feed_rate(0.0, 0.0);
                        }
                    }
                }
                let base = tok.baseline;
                if let Some(p) = subject_key.and_then(|k| subjects.get_mut(&k)) {
                    p.baseline = base;
                }
                if let Some(p) = client_key.and_then(|k| clients.get_mut(&k)) {
                    p.baseline = base;
                }
            }
            tok.open_minute = minute;
        }
        let n = tok.buckets.len().max(1);
        if let Some(slot) = tok.buckets.get_mut(minute as usize % n) {
            if slot.minute != state::minute_tag(minute) || slot.requests == 0 {
                *slot = state::Bucket::new(minute);
            }
            slot.add(
                e.event.bytes_sent.unwrap_or(0),
                e.event.status,
                e.event.object,
                e.event.page,
            );
        }
        tok.requests = tok.requests.saturating_add(1);
        if tok.busy.is_none() && tok.requests >= state::SCALES_AFTER {
            tok.busy = Some(Box::default());
        }
        if let Some(sc) = tok.busy.as_deref_mut().map(|b| &mut b.scales) {
            let bytes = e.event.bytes_sent.unwrap_or(0);
            sc.add(
                ts,
                bytes.div_ceil(1024) as f32,
                matches!(e.event.status, 403 | 404),
                e.event.object,
                e.event.page,
            );
        }

        // 2. Detectors see the token as it was, plus the current window.
        let net = state::NetKey::of(e.event.client_ip, e.net.asn);
        let fp_slot = tok
            .fps
            .iter()
            .position(|s| s.count > 0 && s.fp.distance(&e.fp) == 0)
            .or_else(|| {
                tok.fps
                    .iter()
                    .position(|s| s.count > 0 && s.fp.distance(&e.fp) < 2)
            });
        // Class 0 (the default) always exists; `rc` indexes the classes.
        let Some(route_class) = route_classes.get(rc).or_else(|| route_classes.first()) else {
            return;
        };
        let signals: Vec<(usize, Signal)> = {
            let cx = Context {
                ev: e,
                tok,
                subject: subject_key.and_then(|k| subjects.get(&k)).map(|p| &**p),
                client: client_key.and_then(|k| clients.get(&k)).map(|p| &**p),
                route_class,
                fp_slot,
                net,
            };
            detectors
                .iter()
                .enumerate()
                .filter(|(_, d)| d.enabled)
                .filter(|(_, d)| {
                    e.event.identity == IdentityKind::Token || !d.detector.kind().token_scoped()
                })
                .filter_map(|(i, d)| d.detector.inspect(&cx).map(|s| (i, s)))
                .collect()
        };
        for (i, sig) in signals {
            let Some(d) = detectors.get(i) else { continue };
            let kind = d.detector.kind();
            let k = kind.index();
            let severity = sig.severity.unwrap_or(d.severity);
            let (last_s, last_sev) = tok.last_finding(k);
            let in_cooldown = last_s != 0 && ts / 1000 - i64::from(last_s) < d.cooldown_secs as i64;
            // Within the cooldown only an escalation (higher severity) gets through.
            if in_cooldown && (severity as u8) < last_sev {
                stats.suppressed_cooldown += 1;
                continue;
            }
            if allowed {
                stats.suppressed_allowlist += 1;
                continue;
            }
            let busy = tok.busy_mut();
            if let Some(x) = busy.last_finding_s.get_mut(k) {
                *x = (ts / 1000).max(1) as u32;
            }
            if let Some(x) = busy.last_finding_sev.get_mut(k) {
                *x = severity as u8 + 1;
            }
            if let Some(x) = stats.findings.get_mut(k) {
                *x += 1;
            }
            out.push(make_finding(e, tok, kind, severity, d.mode, sig, fp_slot));
        }

        // 3. Learn from the event.
        tok.last = tok.last.max(ts);
        // Slots that are this same device (same TLS stack, same network).
        let kin: u8 = tok
            .fps
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.count > 0 && Some(*i) != fp_slot && detectors::same_device(s, &e.fp, &net)
            })
            .fold(0, |m, (i, _)| m | (1u8 << i.min(7)));
        let slot = match fp_slot {
            Some(i) => {
                if let Some(s) = tok.fps.get_mut(i) {
                    s.seen(ts, net);
                    s.fp.major = s.fp.major.max(e.fp.major);
                }
                i
            }
            None => {
                let i = tok
                    .fps
                    .iter()
                    .position(|s| s.count == 0)
                    .unwrap_or_else(|| {
                        tok.fps
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, s)| s.last())
                            .map(|(i, _)| i)
                            .unwrap_or(0)
                    });
                if let Some(s) = tok.fps.get_mut(i) {
                    *s = state::FpSlot::new(e.fp, ts, net);
                }
                // A replaced slot is no one's kin any more.
                for s in tok.fps.iter_mut() {
                    s.kin &= !(1u8 << i.min(7));
                }
                i
            }
        };
        let me = 1u8 << slot.min(7);
        for (i, s) in tok.fps.iter_mut().enumerate() {
            if kin & (1u8 << i.min(7)) != 0 {
                s.kin |= me;
            }
        }
        if let Some(s) = tok.fps.get_mut(slot) {
            s.kin |= kin & !me;
        }
        let ci = class_index(e.net.class);
        if let Some(c) = tok.class_events.get_mut(ci) {
            *c = c.saturating_add(1);
        }
        if let Some(place) = &e.net.place {
            update_place(tok, place, e, *min_move_km);
        }
        let home = matches!(
            e.net.class,
            crate::event::NetClass::Residential | crate::event::NetClass::Mobile
        );
        for (key, map) in [(subject_key, subjects), (client_key, clients)] {
            if let Some(k) = key {
                let p = map.entry(k).or_default();
                p.last = p.last.max(ts);
                p.remember_device(e.fp.device_key(), ts);
                p.classes |= e.net.class.bit();
                if e.net.class.is_datacenter_like() {
                    p.remember_exit(e.net.asn);
                }
                if home {
                    p.home_events = p.home_events.saturating_add(1);
                }
                if p.baseline.active_minutes == 0 {
                    p.baseline = tok.baseline;
                }
            }
        }
    }
}

fn update_place(tok: &mut TokenState, place: &crate::event::Place, e: &Enriched, min_move_km: f64) {
    let ts = e.event.ts;
    let new_slot = || PlaceSlot::new(place.lat, place.lon, place.radius_km, ts, e.net.clone());
    match tok.place.as_mut() {
        None => tok.place = Some(new_slot()),
        Some(cur) => {
            let d = detectors::haversine_km(cur.lat, cur.lon, place.lat, place.lon)
                - f64::from(cur.radius_km)
                - f64::from(place.radius_km);
            // A country-level record in the token's country is "here", not
            // a point elsewhere in it: it never displaces a city.
            let cur_place = cur.net.place.as_ref();
            let coarse = place.country_level() || cur_place.is_none_or(|p| p.country_level());
            let same_country = detectors::same_country(
                place.country.as_deref(),
                cur_place.and_then(|p| p.country.as_deref()),
            );
            if d < min_move_km || (coarse && same_country) {
                cur.seen(ts);
                // Prefer the more precise location.
                if place.radius_km < cur.radius_km {
                    cur.lat = place.lat;
                    cur.lon = place.lon;
                    cur.radius_km = place.radius_km;
                    cur.net = e.net.clone();
                }
            } else {
                let old = tok.place.replace(new_slot());
                tok.busy_mut().alt_place = old;
            }
        }
    }
}

fn make_finding(
    e: &Enriched,
    tok: &TokenState,
    kind: FindingKind,
    severity: Severity,
    mode: Mode,
    sig: Signal,
    fp_slot: Option<usize>,
) -> Finding {
    let ev = &e.event;
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update(b"\0");
    h.update(ev.token.as_str().as_bytes());
    h.update(ev.ts.to_le_bytes());
    h.update(e.order_key.to_le_bytes());
    let digest = h.finalize();
    let id: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    let place = e.net.place.as_ref();
    Finding {
        id: format!("f-{id}"),
        kind,
        severity,
        score: sig.score,
        mode,
        token_id: ev.token.clone(),
        subject: ev.subject.clone(),
        client_id: ev.client_id.clone(),
        event_time: fmt_time(ev.ts),
        event_ts: ev.ts,
        evidence_first: fmt_time(sig.evidence_first.min(ev.ts)),
        evidence_last: fmt_time(ev.ts),
        summary: sig.summary,
        client_ip: ev.client_ip.to_string(),
        asn: e.net.asn,
        network: e.net.class.as_str(),
        country: place.and_then(|p| p.country.clone()),
        city: place.and_then(|p| p.city.clone()),
        route: ev.route.to_string(),
        user_agent: ev.user_agent.as_deref().unwrap_or("").to_string(),
        evidence: sig.evidence,
        context: Some(Box::new(context::snapshot(e, tok, fp_slot))),
        source_ts: e.source.and_then(|s| s.broker_ts),
        token_exp: ev.token_exp,
    }
}

/// Evict the least recently seen 1/32 of `cap` entries (at least one), so
/// the scan is paid once per `cap / 32` insertions, not on each. Returns
/// how many were evicted.
fn evict_least_recent<V>(
    map: &mut FxHashMap<u64, Box<V>>,
    cap: usize,
    last: impl Fn(&V) -> EventTime,
) -> u64 {
    let n = (cap / 32).max(1).min(map.len());
    if n == 0 {
        return 0;
    }
    let mut ages: Vec<EventTime> = map.values().map(|v| last(v)).collect();
    let (_, cut, _) = ages.select_nth_unstable(n - 1);
    let cut = *cut;
    let mut left = n;
    map.retain(|_, v| {
        if left > 0 && last(v) <= cut {
            left -= 1;
            false
        } else {
            true
        }
    });
    (n - left) as u64
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::enrich::ua;
    use crate::event::{AccessEvent, NetClass, NetInfo};

    fn ev(token: &str, ts: EventTime) -> Enriched {
        let ua = Arc::new(ua::parse("curl/8.5.0"));
        let event = AccessEvent {
            ts,
            token: TokenId(Arc::from(token)),
            token_key: stable_hash(token.as_bytes()),
            identity: IdentityKind::Token,
            rejected: false,
            subject: None,
            client_id: None,
            token_exp: None,
            client_ip: IpAddr::from([20, 0, 0, 1]),
            method: "GET",
            route: Arc::from("r"),
            path: "/r".into(),
            object: None,
            page: None,
            status: 200,
            bytes_sent: Some(10),
            user_agent: None,
            accept_language: None,
            ja3: None,
            ja4: None,
        };
        Enriched {
            fp: ua::fingerprint(&ua, None, None, None),
            ua,
            net: Arc::new(NetInfo {
                place: None,
                asn: 0,
                as_org: None,
                class: NetClass::Unknown,
            }),
            order_key: ts as u64,
            source: None,
            event,
        }
    }

    fn ev_as(token: &str, ts: EventTime, agent: &str, identity: IdentityKind) -> Enriched {
        let mut e = ev(token, ts);
        e.ua = Arc::new(ua::parse(agent));
        e.fp = ua::fingerprint(&e.ua, None, None, None);
        e.event.user_agent = Some(agent.into());
        e.event.identity = identity;
        e
    }

    /// A browser and python-requests on one identity at once, 5 minutes in.
    fn two_clients(identity: IdentityKind) -> Vec<Finding> {
        let mut e = Engine::new(&Config::default());
        let mut out = Vec::new();
        let t0 = 1_767_600_000_000;
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let mut evs: Vec<Enriched> = (0..30)
            .map(|i| ev_as("k", t0 + i * 20_000, chrome, identity))
            .chain((0..10).map(|i| {
                ev_as(
                    "k",
                    t0 + 300_000 + i * 15_000 + 1,
                    "python-requests/2.32.3",
                    identity,
                )
            }))
            .collect();
        evs.sort_by_key(|x| x.event.ts);
        for x in evs {
            e.push(x, &mut out);
        }
        e.flush(&mut out);
        out
    }

    #[test]
    fn a_shared_credential_is_never_a_replayed_token() {
        let token = two_clients(IdentityKind::Token);
        assert!(
            token.iter().any(|f| f.kind == FindingKind::TokenReplay),
            "a token is: {token:?}"
        );
        let cred = two_clients(IdentityKind::Credential);
        assert!(
            cred.iter().all(|f| !f.kind.token_scoped()),
            "an OAuth app's credential used by two people is not a replay: {cred:?}"
        );
    }

    #[test]
    fn tracked_tokens_stay_within_the_cap_least_recent_first() {
        let mut cfg = Config::default();
        cfg.engine.max_tracked_tokens = 64;
        let mut e = Engine::new(&cfg);
        let mut out = Vec::new();
        let t0 = 1_767_600_000_000;
        for i in 0..1000 {
            e.push(ev(&format!("forged-{i}"), t0 + i * 10), &mut out);
        }
        e.flush(&mut out);
        assert!(e.tracked_tokens() <= 64, "{}", e.tracked_tokens());
        assert!(e.evicted_at_cap() >= 1000 - 64);
        let newest = stable_hash(b"forged-999");
        assert!(e.tokens.contains_key(&newest), "the most recent stays");
        assert!(!e.tokens.contains_key(&stable_hash(b"forged-0")));
    }

    #[test]
    fn rejected_requests_teach_nothing() {
        let mut e = Engine::new(&Config::default());
        let mut out = Vec::new();
        let t0 = 1_767_600_000_000;
        for i in 0..20 {
            let mut x = ev_as(
                "forged",
                t0 + i * 1000,
                "python-requests/2.32.3",
                IdentityKind::Token,
            );
            x.event.rejected = true;
            x.event.status = 401;
            x.event.subject = Some(Arc::from("admin@corp.example"));
            e.push(x, &mut out);
        }
        e.flush(&mut out);
        assert!(out.is_empty());
        assert_eq!(e.tracked_tokens(), 0, "no token state");
        assert!(e.subjects.is_empty(), "no subject profile");
        assert_eq!(e.stats.rejected, 20, "but counted");
    }

    #[test]
    fn idle_tokens_are_evicted_by_event_time() {
        let mut cfg = Config::default();
        cfg.engine.token_idle_ttl_secs = 3600;
        let mut e = Engine::new(&cfg);
        let mut out = Vec::new();
        let t0 = 1_767_600_000_000;
        e.push(ev("a", t0), &mut out);
        for i in 0..200 {
            e.push(ev("b", t0 + i * 60_000), &mut out);
        }
        e.flush(&mut out);
        assert_eq!(
            e.tracked_tokens(),
            1,
            "token a idle for over an hour of event time"
        );
        assert_eq!(e.stats.tokens_evicted, 1);
    }

    #[test]
    fn events_beyond_the_lateness_are_counted_late() {
        let mut e = Engine::new(&Config::default());
        let mut out = Vec::new();
        let t0 = 1_767_600_000_000;
        assert!(e.push(ev("a", t0 + 60_000), &mut out));
        assert!(
            e.push(ev("a", t0 + 55_000), &mut out),
            "within 10 s lateness"
        );
        assert!(!e.push(ev("a", t0), &mut out), "a minute late");
        e.flush(&mut out);
        assert_eq!(e.stats.late, 1);
        assert_eq!(e.stats.events, 2);
    }

    #[test]
    fn an_event_waits_only_for_one_reorder_ms_newer() {
        let mut e = Engine::new(&Config::default());
        let mut out = Vec::new();
        let t0 = 1_767_600_000_000;
        e.push(ev("a", t0), &mut out);
        e.push(ev("b", t0 + 99), &mut out);
        assert_eq!(e.stats.events, 0, "nothing 100 ms newer yet");
        e.push(ev("c", t0 + 100), &mut out);
        assert_eq!(e.stats.events, 1, "a released, not b");
        assert_eq!(e.pending_len(), 2);
        // Within the hold, disorder is undone: b (older) goes before c.
        e.push(ev("d", t0 + 250), &mut out);
        assert_eq!(e.stats.events, 3);
        assert_eq!(e.frontier, t0 + 100);
    }

    #[test]
    fn stragglers_within_the_lateness_are_processed_at_the_frontier() {
        let mut e = Engine::new(&Config::default());
        let mut out = Vec::new();
        let t0 = 1_767_600_000_000;
        e.push(ev("a", t0 + 5_000), &mut out);
        e.push(ev("a", t0 + 6_000), &mut out);
        assert_eq!(e.frontier, t0 + 5_000);
        // 4 s behind what was processed, within the 10 s lateness.
        assert!(e.push(ev("a", t0 + 1_000), &mut out));
        assert_eq!(e.stats.stragglers, 1);
        assert_eq!(e.stats.late, 0);
        assert_eq!(e.stats.events, 2);
        assert_eq!(e.frontier, t0 + 5_000, "time never goes backwards");
        e.flush(&mut out);
        assert_eq!(e.stats.events, 3);
        let st = &e.tokens[&stable_hash(b"a")];
        assert_eq!(st.first, t0 + 5_000);
        assert_eq!(st.requests, 3);
    }

    /// A checkpoint taken mid-stream (stragglers and the reorder buffer in
    /// flight) and restored gives the findings of an uninterrupted run.
    #[test]
    fn a_restore_mid_stream_gives_the_same_findings() {
        let t0 = 1_767_600_000_000;
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let mut evs = Vec::new();
        for i in 0..200i64 {
            // Jitter of up to 3 s: some within the hold, some stragglers.
            let jitter = (i * 7919) % 3_000;
            evs.push(ev_as(
                "k",
                t0 + i * 2_000 + jitter,
                chrome,
                IdentityKind::Token,
            ));
            if i > 100 {
                evs.push(ev("k", t0 + i * 2_000 + (i * 31) % 700));
            }
        }
        for (off, x) in evs.iter_mut().enumerate() {
            x.source = Some(crate::event::SourcePos {
                offset: off as i64,
                index: 0,
                broker_ts: None,
            });
        }
        let ids = |out: &[Finding]| out.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
        let mut whole = Engine::new(&Config::default());
        let mut want = Vec::new();
        for x in &evs {
            whole.push(x.clone(), &mut want);
        }
        whole.flush(&mut want);
        assert!(!want.is_empty(), "the second client raises findings");
        assert!(whole.stats.stragglers > 0);

        let cut = 250;
        let mut first = Engine::new(&Config::default());
        let mut got = Vec::new();
        for x in &evs[..cut] {
            first.push(x.clone(), &mut got);
        }
        assert!(first.pending_len() > 0);
        let snap = first.snapshot().unwrap();
        let mut second = Engine::new(&Config::default());
        let waiting = second.restore(&snap).unwrap();
        for x in &evs[..cut] {
            let pos = x.source.unwrap();
            if waiting.contains(&(pos.offset, pos.index)) {
                second.push(x.clone(), &mut got);
            }
        }
        for x in &evs[cut..] {
            second.push(x.clone(), &mut got);
        }
        second.flush(&mut got);
        assert_eq!(ids(&got), ids(&want));
        assert_eq!(second.stats.stragglers, whole.stats.stragglers);
    }
}
