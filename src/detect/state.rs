//! Compact per-token state and per-subject / per-client profiles.
//!
//! Budget: ≤ 512 bytes per tracked token on average, including the map
//! entry (see BENCHMARKS.md). No per-token histograms: windows are minute
//! buckets and baselines are EWMAs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{EventTime, Fingerprint, NetClass, NetInfo};

/// One client fingerprint seen on a token, with the network it was last
/// seen on and its same-device links. Times are event-time seconds (u32
/// lasts until 2106) to keep the slot at 36 bytes.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct FpSlot {
    pub fp: Fingerprint,
    first_s: u32,
    last_s: u32,
    pub count: u32,
    /// Where this client last was: see [`NetKey`].
    asn: u32,
    prefix: u16,
    /// Slots (bit i = `fps[i]`) found to be this same device once (same
    /// TLS stack on the same network at the same time): they stay one
    /// device when the phone later hands off to another network.
    pub kin: u8,
}

/// The network a request came from, as far as "same device" needs it: the
/// ASN (0 = unknown) and a 16-bit hash of the address's /24 (IPv4) or /56
/// (IPv6) prefix, which one household, office or carrier gateway shares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetKey {
    pub asn: u32,
    pub prefix: u16,
}

impl NetKey {
    pub fn of(ip: std::net::IpAddr, asn: u32) -> NetKey {
        let prefix = match ip {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                crate::event::stable_hash(&[4, o[0], o[1], o[2]])
            }
            std::net::IpAddr::V6(v6) => {
                let o = v6.octets();
                crate::event::stable_hash(&[6, o[0], o[1], o[2], o[3], o[4], o[5], o[6]])
            }
        };
        NetKey {
            asn,
            prefix: (prefix ^ (prefix >> 16) ^ (prefix >> 32) ^ (prefix >> 48)) as u16 | 1,
        }
    }
    /// The same address prefix (one household, office, carrier gateway).
    pub fn same_prefix(&self, other: &NetKey) -> bool {
        self.prefix != 0 && self.prefix == other.prefix
    }
    /// The same prefix, or the same known autonomous system.
    pub fn same_network(&self, other: &NetKey) -> bool {
        self.same_prefix(other) || (self.asn != 0 && self.asn == other.asn)
    }
}

impl FpSlot {
    pub fn new(fp: Fingerprint, ts: EventTime, net: NetKey) -> FpSlot {
        let s = secs(ts);
        FpSlot {
            fp,
            first_s: s,
            last_s: s,
            count: 1,
            asn: net.asn,
            prefix: net.prefix,
            kin: 0,
        }
    }
    /// The network this client was last seen on.
    pub fn net(&self) -> NetKey {
        NetKey {
            asn: self.asn,
            prefix: self.prefix,
        }
    }
    pub fn first(&self) -> EventTime {
        i64::from(self.first_s) * 1000
    }
    pub fn last(&self) -> EventTime {
        i64::from(self.last_s) * 1000
    }
    pub fn seen(&mut self, ts: EventTime, net: NetKey) {
        if secs(ts) >= self.last_s {
            (self.asn, self.prefix) = (net.asn, net.prefix);
        }
        self.last_s = self.last_s.max(secs(ts));
        self.count = self.count.saturating_add(1);
    }
}

fn secs(ts: EventTime) -> u32 {
    (ts / 1000).clamp(0, i64::from(u32::MAX)) as u32
}

/// A place a token was used from. Times are event-time seconds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlaceSlot {
    pub lat: f32,
    pub lon: f32,
    pub radius_km: u16,
    first_s: u32,
    last_s: u32,
    pub net: Arc<NetInfo>,
}

impl PlaceSlot {
    pub fn new(lat: f32, lon: f32, radius_km: u16, ts: EventTime, net: Arc<NetInfo>) -> PlaceSlot {
        PlaceSlot {
            lat,
            lon,
            radius_km,
            first_s: secs(ts),
            last_s: secs(ts),
            net,
        }
    }
    pub fn first(&self) -> EventTime {
        i64::from(self.first_s) * 1000
    }
    pub fn last(&self) -> EventTime {
        i64::from(self.last_s) * 1000
    }
    pub fn seen(&mut self, ts: EventTime) {
        self.last_s = self.last_s.max(secs(ts));
    }
}

/// Per-minute activity of a token. `objects` is a 64-bit linear-counting
/// sketch of distinct object ids (accurate to a few percent up to ~150).
/// 20 bytes: `minute` keeps the low 16 bits of the absolute minute (a token
/// idle for 45 days is long evicted), `objects` is stored as two halves so the
/// struct needs only 4-byte alignment.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Bucket {
    pub minute: u16,
    pub requests: u16,
    pub errors: u16,
    pub max_page: u16,
    pub kib: u32,
    objects: [u32; 2],
}

/// The low 16 bits of an absolute minute, as stored in a bucket.
pub fn minute_tag(minute: u32) -> u16 {
    (minute & 0xffff) as u16
}

/// A window's totals over several buckets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub requests: u32,
    pub errors: u32,
    pub kib: u64,
    pub objects: u64,
    pub max_page: u16,
    /// Absolute minute of the oldest active bucket.
    pub first_minute: u32,
}

impl Bucket {
    pub fn new(minute: u32) -> Bucket {
        Bucket {
            minute: minute_tag(minute),
            ..Default::default()
        }
    }

    pub fn objects(&self) -> u64 {
        u64::from(self.objects[0]) | (u64::from(self.objects[1]) << 32)
    }

    pub fn add(&mut self, bytes: u64, status: u16, object: Option<u64>, page: Option<u32>) {
        self.requests = self.requests.saturating_add(1);
        if status == 403 || status == 404 {
            self.errors = self.errors.saturating_add(1);
        }
        self.kib = self
            .kib
            .saturating_add(bytes.div_ceil(1024).min(u64::from(u32::MAX)) as u32);
        if let Some(o) = object {
            sketch_insert(&mut self.objects, o);
        }
        if let Some(p) = page {
            self.max_page = self.max_page.max(p.min(u32::from(u16::MAX)) as u16);
        }
    }
}

/// Set an object's bit in a 64-bit sketch held as 32-bit words (the first
/// two words of `words`; a pair of sketches keeps the current one first).
fn sketch_insert(words: &mut [u32], object: u64) {
    let bit = mix(object) >> 58;
    if let Some(w) = words.get_mut((bit / 32) as usize) {
        *w |= 1u32 << (bit % 32);
    }
}

/// splitmix64's finaliser: sequential ids must land in random-looking
/// buckets, or linear counting overestimates (a Weyl sequence never collides).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Estimate distinct items from a 64-bit linear-counting sketch.
pub fn sketch_estimate(bits: u64) -> f64 {
    let zeros = u64::from(bits.count_zeros());
    if zeros == 0 {
        // Saturated: report the sketch's ceiling.
        return 64.0 * 64f64.ln();
    }
    -64.0 * (zeros as f64 / 64.0).ln()
}

/// The token's (and its subject's or client's) own normal, as
/// exponentially weighted means per minute:
/// * per *active* minute (a minute with a request): how busy a minute of
///   use is, for bursts;
/// * per *session* minute (active minutes and the idle minutes between
///   requests less than [`SESSION_GAP_MINUTES`] apart): the rate of use,
///   for sustained pulls, learnt slowly and not from minutes that are
///   already anomalous, so that it spans several token lifetimes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub requests: f32,
    pub kib: f32,
    pub objects: f32,
    pub pages: f32,
    pub active_minutes: u32,
    /// Requests per session minute.
    pub rate_requests: f32,
    /// KiB per session minute.
    pub rate_kib: f32,
    pub session_minutes: u32,
}

/// Idle minutes shorter than this belong to the session around them.
pub const SESSION_GAP_MINUTES: u32 = 5;

/// Learning rate of the per-session-minute rates (a time constant of
/// 4 hours of use: longer than an hourly token's life).
const RATE_ALPHA: f32 = 1.0 / 240.0;

impl Baseline {
    pub fn feed(&mut self, b: &Bucket, alpha: f32) {
        let objects = sketch_estimate(b.objects()) as f32;
        if self.active_minutes == 0 {
            *self = Baseline {
                requests: f32::from(b.requests),
                kib: b.kib as f32,
                objects,
                pages: f32::from(b.max_page),
                active_minutes: 1,
                ..*self
            };
            return;
        }
        // Learn faster while young, then settle to `alpha`.
        let a = alpha.max(1.0 / (self.active_minutes as f32 + 1.0));
        // Winsorise: one minute can move the mean by at most 3x its value, so a
        // burst barely shifts the baseline it is judged against, while a ramp
        // over hours (a few percent per minute) is followed.
        self.requests += a * (clip(f32::from(b.requests), self.requests, 5.0) - self.requests);
        self.kib += a * (clip(b.kib as f32, self.kib, 512.0) - self.kib);
        self.objects += a * (clip(objects, self.objects, 5.0) - self.objects);
        self.pages += a * (clip(f32::from(b.max_page), self.pages, 5.0) - self.pages);
        self.active_minutes = self.active_minutes.saturating_add(1);
    }

    /// One session minute (`requests` and `kib` in it, 0 for an idle one).
    pub fn feed_rate(&mut self, requests: f32, kib: f32) {
        if self.session_minutes == 0 {
            self.rate_requests = requests;
            self.rate_kib = kib;
            self.session_minutes = 1;
            return;
        }
        let a = RATE_ALPHA.max(1.0 / (self.session_minutes as f32 + 1.0));
        self.rate_requests += a * (clip(requests, self.rate_requests, 2.0) - self.rate_requests);
        self.rate_kib += a * (clip(kib, self.rate_kib, 256.0) - self.rate_kib);
        self.session_minutes = self.session_minutes.saturating_add(1);
    }
}

fn clip(x: f32, mean: f32, floor: f32) -> f32 {
    x.min((mean * 3.0).max(mean + floor))
}

/// Activity over longer time scales than the minute buckets, as decayed
/// sums (a sum with time constant τ over a steady rate r tends to r·τ, like
/// a sliding window of τ minutes) plus a distinct-object sketch per
/// 15-minute epoch (this one and the previous: 15 to 30 minutes of ids).
/// Allocated once a token has made [`SCALES_AFTER`] requests: most tokens
/// never need it.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Scales {
    /// Event time (s) the sums were last decayed to.
    at_s: u32,
    /// Decayed requests, KiB and 403/404 answers, τ = 15 min.
    pub requests15: f32,
    pub kib15: f32,
    pub errors15: f32,
    /// Decayed requests and KiB, τ = 5 min.
    pub requests5: f32,
    pub kib5: f32,
    /// Decayed requests and KiB, τ = 60 min.
    pub requests60: f32,
    pub kib60: f32,
    /// Distinct-object sketches of this epoch and the previous one.
    objects: [u32; 4],
    epoch: u32,
    /// Deepest page of this epoch and the previous one.
    pages: [u16; 2],
}

/// Requests after which a token tracks [`Scales`].
pub const SCALES_AFTER: u16 = 8;
/// Length of a distinct-object epoch.
pub const EPOCH_MINUTES: u32 = 15;

impl Scales {
    pub fn add(
        &mut self,
        ts: EventTime,
        kib: f32,
        error: bool,
        object: Option<u64>,
        page: Option<u32>,
    ) {
        let now = secs(ts);
        if self.at_s == 0 {
            self.at_s = now;
        } else {
            self.decay_to(now);
        }
        self.requests15 += 1.0;
        self.kib15 += kib;
        self.requests5 += 1.0;
        self.kib5 += kib;
        self.requests60 += 1.0;
        self.kib60 += kib;
        if error {
            self.errors15 += 1.0;
        }
        let epoch = now / (EPOCH_MINUTES * 60);
        if epoch != self.epoch {
            let [a, b, _, _] = self.objects;
            let [p, _] = self.pages;
            if epoch == self.epoch.wrapping_add(1) {
                self.objects = [0, 0, a, b];
                self.pages = [0, p];
            } else {
                self.objects = [0; 4];
                self.pages = [0; 2];
            }
            self.epoch = epoch;
        }
        if let Some(o) = object {
            sketch_insert(&mut self.objects, o);
        }
        if let Some(p) = page {
            let [cur, _] = &mut self.pages;
            *cur = (*cur).max(p.min(u32::from(u16::MAX)) as u16);
        }
    }

    /// Distinct objects of the last 15 to 30 minutes (estimate).
    pub fn objects(&self) -> f64 {
        let [a, b, c, d] = self.objects;
        sketch_estimate(u64::from(a | c) | (u64::from(b | d) << 32))
    }

    /// Deepest page of the last 15 to 30 minutes.
    pub fn max_page(&self) -> u16 {
        let [a, b] = self.pages;
        a.max(b)
    }

    /// The decayed sums as they are at `ts` (no event added).
    pub fn at(&self, ts: EventTime) -> Scales {
        let mut s = *self;
        s.decay_to(secs(ts));
        s
    }

    /// Decay the sums from their last update to `now` (event-time seconds).
    fn decay_to(&mut self, now: u32) {
        let dt = now.saturating_sub(self.at_s) as f32;
        if dt > 0.0 {
            let d15 = (-dt / 900.0).exp();
            let d5 = (-dt / 300.0).exp();
            let d60 = (-dt / 3600.0).exp();
            self.requests5 *= d5;
            self.kib5 *= d5;
            self.requests15 *= d15;
            self.kib15 *= d15;
            self.errors15 *= d15;
            self.requests60 *= d60;
            self.kib60 *= d60;
            self.at_s = now;
        }
    }
}

/// Everything we remember about one token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenState {
    // No token id: the engine's map is keyed by the token's 64-bit key, and
    // a finding takes the id from the event that raised it (an id string
    // here was 73 of the 518 bytes per token).
    pub first: EventTime,
    pub last: EventTime,
    pub fps: [FpSlot; 3],
    pub place: Option<PlaceSlot>,
    /// Events per network class (residential, mobile, hosting, vpn, unknown).
    pub class_events: [u16; 5],
    pub buckets: Box<[Bucket]>,
    /// The minute whose bucket has not been fed to the baseline yet.
    pub open_minute: u32,
    pub baseline: Baseline,
    /// Requests seen (saturating).
    pub requests: u16,
    /// What only busy, far-travelled or flagged tokens need (most never do).
    pub busy: Option<Box<Busy>>,
}

/// The part of a token's state allocated once it has made
/// [`SCALES_AFTER`] requests, moved far, or raised a finding.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Busy {
    pub scales: Scales,
    /// The previous far-away place, kept to recognise overlapping use.
    pub alt_place: Option<PlaceSlot>,
    /// Per detector kind: event time (s) of the last finding…
    pub last_finding_s: [u32; 5],
    /// …and its severity + 1 (0 = none yet).
    pub last_finding_sev: [u8; 5],
}

impl TokenState {
    pub fn new(ts: EventTime, buckets: usize) -> TokenState {
        TokenState {
            first: ts,
            last: ts,
            fps: [FpSlot::default(); 3],
            place: None,
            class_events: [0; 5],
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            open_minute: 0,
            baseline: Baseline::default(),
            requests: 0,
            busy: None,
        }
    }

    /// The busy part, allocated on first use.
    pub fn busy_mut(&mut self) -> &mut Busy {
        self.busy.get_or_insert_with(Box::default)
    }
    pub fn scales(&self) -> Option<&Scales> {
        self.busy.as_deref().map(|b| &b.scales)
    }
    pub fn alt_place(&self) -> Option<&PlaceSlot> {
        self.busy.as_deref().and_then(|b| b.alt_place.as_ref())
    }
    /// Event time (s) and severity + 1 of the last finding of kind `k`.
    pub fn last_finding(&self, k: usize) -> (u32, u8) {
        self.busy
            .as_deref()
            .map(|b| {
                (
                    b.last_finding_s.get(k).copied().unwrap_or(0),
                    b.last_finding_sev.get(k).copied().unwrap_or(0),
                )
            })
            .unwrap_or((0, 0))
    }

    pub fn class_count(&self, c: NetClass) -> u32 {
        self.class_events
            .get(class_index(c))
            .copied()
            .map(u32::from)
            .unwrap_or(0)
    }

    /// Sum the buckets of the last `minutes` minutes up to `now_minute`.
    pub fn window(&self, now_minute: u32, minutes: u32) -> Window {
        let mut w = Window::default();
        let mut oldest = 0u32;
        let now = minute_tag(now_minute);
        for b in self.buckets.iter() {
            let age = u32::from(now.wrapping_sub(b.minute));
            if b.requests > 0 && age < minutes {
                w.requests += u32::from(b.requests);
                w.errors += u32::from(b.errors);
                w.kib += u64::from(b.kib);
                w.objects |= b.objects();
                w.max_page = w.max_page.max(b.max_page);
                oldest = oldest.max(age);
            }
        }
        w.first_minute = now_minute.saturating_sub(oldest);
        w
    }
}

pub fn class_index(c: NetClass) -> usize {
    match c {
        NetClass::Residential => 0,
        NetClass::Mobile => 1,
        NetClass::Hosting => 2,
        NetClass::Vpn => 3,
        NetClass::Unknown => 4,
    }
}

/// Compact history of a subject (a user) or a client_id (an application),
/// carried across the successive tokens it is issued.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    pub last: EventTime,
    /// Known devices: (device key, last seen in event-time seconds).
    pub devices: [(u32, u32); 5],
    /// The last two hosting or VPN ASNs used (0 = none).
    pub exits: [u32; 2],
    /// Network classes used, as a bitmask of `NetClass::bit`.
    pub classes: u8,
    /// Events seen on residential or mobile networks.
    pub home_events: u32,
    pub baseline: Baseline,
}

impl Profile {
    pub fn knows_exit(&self, asn: u32) -> bool {
        asn != 0 && self.exits.contains(&asn)
    }

    pub fn remember_exit(&mut self, asn: u32) {
        if asn != 0 && !self.exits.contains(&asn) {
            let [last, _] = self.exits;
            self.exits = [asn, last];
        }
    }

    pub fn knows_device(&self, key: u32) -> bool {
        self.devices.iter().any(|(k, seen)| *k == key && *seen != 0)
    }

    pub fn remember_device(&mut self, key: u32, ts: EventTime) {
        let secs = (ts / 1000).max(1) as u32;
        if let Some(slot) = self.devices.iter_mut().find(|(k, s)| *k == key && *s != 0) {
            slot.1 = secs;
            return;
        }
        // Replace the least recently seen slot.
        if let Some(oldest) = self.devices.iter_mut().min_by_key(|d| d.1) {
            *oldest = (key, secs);
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use super::*;

    #[test]
    fn sketch_counts_distinct_objects_roughly() {
        let mut b = Bucket::default();
        for i in 0..40u64 {
            b.add(
                0,
                404,
                Some(crate::event::stable_hash(&i.to_le_bytes())),
                None,
            );
        }
        let est = sketch_estimate(b.objects());
        assert!((25.0..60.0).contains(&est), "estimate {est}");
        assert_eq!(b.errors, 40);
    }

    #[test]
    fn baseline_follows_a_slow_ramp() {
        let mut base = Baseline::default();
        for i in 0..600u16 {
            let b = Bucket {
                requests: 10 + i / 10,
                ..Default::default()
            };
            base.feed(&b, 0.05);
        }
        assert!(base.requests > 60.0, "{}", base.requests);
    }
}
