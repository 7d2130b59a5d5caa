//! What a finding carries about its token beyond the triggering request:
//! the places it was used from, the devices (fingerprints) seen and its
//! recent per-minute activity. The dashboard draws the map, the device
//! list and the timeline of an incident from it; it is a snapshot of the
//! token's state at the finding, so a replay gives the same snapshot.

use serde::{Deserialize, Serialize};

use super::state::{PlaceSlot, TokenState, minute_tag};
use crate::event::{Enriched, EventTime, Fingerprint};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenContext {
    /// Places, oldest first; the last one is the triggering request's when
    /// it had a location.
    pub places: Vec<ContextPlace>,
    /// Devices seen on the token (the triggering one flagged `current`).
    pub devices: Vec<ContextDevice>,
    /// Per-minute activity before the finding, oldest first.
    pub minutes: Vec<ContextMinute>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextPlace {
    pub lat: f32,
    pub lon: f32,
    pub radius_km: u16,
    pub city: Option<String>,
    pub country: Option<String>,
    pub asn: u32,
    pub network: String,
    /// Event time (ms) of the first and last request from here.
    pub first: EventTime,
    pub last: EventTime,
    pub current: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextDevice {
    /// Short stable id of the fingerprint (agent, TLS, language).
    pub id: String,
    pub scripting: bool,
    pub tls_known: bool,
    pub first: EventTime,
    pub last: EventTime,
    pub requests: u32,
    pub current: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextMinute {
    /// Start of the minute (event time, ms).
    pub ts: EventTime,
    pub requests: u32,
    pub kib: u32,
    /// 403/404 answers.
    pub errors: u32,
    pub max_page: u32,
}

/// A short id for a fingerprint (the same device gives the same id).
pub fn device_id(fp: &Fingerprint) -> String {
    format!("{:08x}{:04x}", fp.agent ^ fp.tls.rotate_left(7), fp.lang)
}

fn place(p: &PlaceSlot, current: bool) -> ContextPlace {
    ContextPlace {
        lat: p.lat,
        lon: p.lon,
        radius_km: p.radius_km,
        city: p
            .net
            .place
            .as_ref()
            .and_then(|x| x.city.as_deref().map(str::to_string)),
        country: p
            .net
            .place
            .as_ref()
            .and_then(|x| x.country.as_deref().map(str::to_string)),
        asn: p.net.asn,
        network: p.net.class.as_str().to_string(),
        first: p.first(),
        last: p.last(),
        current,
    }
}

/// The snapshot of `tok` as the detectors saw it for `e`.
pub fn snapshot(e: &Enriched, tok: &TokenState, fp_slot: Option<usize>) -> TokenContext {
    let ts = e.event.ts;
    let mut places: Vec<ContextPlace> = Vec::with_capacity(3);
    if let Some(alt) = tok.alt_place() {
        places.push(place(alt, false));
    }
    if let Some(p) = &tok.place {
        places.push(place(p, false));
    }
    places.sort_by_key(|p| p.last);
    if let Some(here) = &e.net.place {
        places.push(ContextPlace {
            lat: here.lat,
            lon: here.lon,
            radius_km: here.radius_km,
            city: here.city.as_deref().map(str::to_string),
            country: here.country.as_deref().map(str::to_string),
            asn: e.net.asn,
            network: e.net.class.as_str().to_string(),
            first: ts,
            last: ts,
            current: true,
        });
    }
    let mut devices: Vec<ContextDevice> = tok
        .fps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.count > 0)
        .map(|(i, s)| ContextDevice {
            id: device_id(&s.fp),
            scripting: s.fp.scripting,
            tls_known: s.fp.tls != 0,
            first: s.first(),
            last: s.last(),
            requests: s.count,
            current: fp_slot == Some(i),
        })
        .collect();
    if fp_slot.is_none() {
        devices.push(ContextDevice {
            id: device_id(&e.fp),
            scripting: e.fp.scripting,
            tls_known: e.fp.tls != 0,
            first: ts,
            last: ts,
            requests: 1,
            current: true,
        });
    }
    devices.sort_by_key(|d| d.first);
    // Buckets keep the low 16 bits of the minute; ages are taken relative
    // to the triggering request's minute.
    let now_minute = (ts.max(0) / 60_000) as u32;
    let now_tag = minute_tag(now_minute);
    let mut minutes: Vec<ContextMinute> = tok
        .buckets
        .iter()
        .filter(|b| b.requests > 0)
        .filter_map(|b| {
            let age = u32::from(now_tag.wrapping_sub(b.minute));
            (age <= now_minute && age < 24 * 60).then(|| ContextMinute {
                ts: i64::from(now_minute - age) * 60_000,
                requests: u32::from(b.requests),
                kib: b.kib,
                errors: u32::from(b.errors),
                max_page: u32::from(b.max_page),
            })
        })
        .collect();
    minutes.sort_by_key(|m| m.ts);
    TokenContext {
        places,
        devices,
        minutes,
    }
}
