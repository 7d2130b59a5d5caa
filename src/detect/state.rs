//! Compact per-token state and per-subject / per-client profiles.
//!
//! Budget: ≤ 512 bytes per tracked token on average, including the map
//! entry (see BENCHMARKS.md). No per-token histograms: windows are minute
//! buckets and baselines are EWMAs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{EventTime, Fingerprint, NetClass, NetInfo, TokenId};

/// One client fingerprint seen on a token. Times are event-time seconds
/// (u32 lasts until 2106) to keep the slot at 28 bytes.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct FpSlot {
    pub fp: Fingerprint,
    first_s: u32,
    last_s: u32,
    pub count: u32,
}

impl FpSlot {
    pub fn new(fp: Fingerprint, ts: EventTime) -> FpSlot {
        let s = secs(ts);
        FpSlot {
            fp,
            first_s: s,
            last_s: s,
            count: 1,
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
        self.count = self.count.saturating_add(1);
    }
}

fn secs(ts: EventTime) -> u32 {
    (ts / 1000).clamp(0, i64::from(u32::MAX)) as u32
}

/// A place a token was used from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlaceSlot {
    pub lat: f32,
    pub lon: f32,
    pub radius_km: u16,
    pub first: EventTime,
    pub last: EventTime,
    pub net: Arc<NetInfo>,
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
            let bit = mix(o) >> 58;
            if let Some(w) = self.objects.get_mut((bit / 32) as usize) {
                *w |= 1u32 << (bit % 32);
            }
        }
        if let Some(p) = page {
            self.max_page = self.max_page.max(p.min(u32::from(u16::MAX)) as u16);
        }
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

/// Exponentially weighted per-active-minute means: the token's own normal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub requests: f32,
    pub kib: f32,
    pub objects: f32,
    pub pages: f32,
    pub active_minutes: u32,
}

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
            };
            return;
        }
        // Learn faster while young, then settle to `alpha`.
        let a = alpha.max(1.0 / (self.active_minutes as f32 + 1.0));
        // Winsorise: one minute can move the mean by at most 3x its value, so a
        // burst barely shifts the baseline it is judged against, while a ramp
        // over hours (a few percent per minute) is followed.
        let clip = |x: f32, mean: f32, floor: f32| x.min((mean * 3.0).max(mean + floor));
        self.requests += a * (clip(f32::from(b.requests), self.requests, 5.0) - self.requests);
        self.kib += a * (clip(b.kib as f32, self.kib, 512.0) - self.kib);
        self.objects += a * (clip(objects, self.objects, 5.0) - self.objects);
        self.pages += a * (clip(f32::from(b.max_page), self.pages, 5.0) - self.pages);
        self.active_minutes = self.active_minutes.saturating_add(1);
    }
}

/// Everything we remember about one token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenState {
    pub id: TokenId,
    pub first: EventTime,
    pub last: EventTime,
    pub fps: [FpSlot; 3],
    pub place: Option<PlaceSlot>,
    /// The previous far-away place, kept to recognise overlapping use.
    pub alt_place: Option<Box<PlaceSlot>>,
    /// Events per network class (residential, mobile, hosting, vpn, unknown).
    pub class_events: [u16; 5],
    pub buckets: Box<[Bucket]>,
    /// The minute whose bucket has not been fed to the baseline yet.
    pub open_minute: u32,
    pub baseline: Baseline,
    /// Per detector kind: event time (s) of the last finding…
    pub last_finding_s: [u32; 5],
    /// …and its severity + 1 (0 = none yet).
    pub last_finding_sev: [u8; 5],
}

impl TokenState {
    pub fn new(id: TokenId, ts: EventTime, buckets: usize) -> TokenState {
        TokenState {
            id,
            first: ts,
            last: ts,
            fps: [FpSlot::default(); 3],
            place: None,
            alt_place: None,
            class_events: [0; 5],
            buckets: vec![Bucket::default(); buckets].into_boxed_slice(),
            open_minute: 0,
            baseline: Baseline::default(),
            last_finding_s: [0; 5],
            last_finding_sev: [0; 5],
        }
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
        w.first_minute = now_minute - oldest;
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
    pub devices: [(u32, u32); 6],
    /// Network classes used, as a bitmask of `NetClass::bit`.
    pub classes: u8,
    /// Events seen on residential or mobile networks.
    pub home_events: u32,
    pub baseline: Baseline,
}

impl Profile {
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
