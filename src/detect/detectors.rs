//! The detectors. Each looks at one event in the context of its token's
//! state (windows already include the event; fingerprints and places do
//! not yet) and may raise a [`Signal`]. The engine turns signals into
//! findings (ids, cooldowns, allow-lists, modes).

use serde_json::json;

use super::state::{FpSlot, NetKey, Profile, TokenState, sketch_estimate};
use super::{FindingKind, Signal};
use crate::config::{
    BulkSiphonConfig, EnumerationConfig, ImpossibleTravelConfig, RouteClass, Severity,
    SuspiciousNetworkConfig, TokenReplayConfig,
};
use crate::event::{
    COUNTRY_LEVEL_RADIUS_KM, DeviceClass, Enriched, Fingerprint, NetClass, NetInfo, Place, fmt_time,
};

/// What a detector may look at.
pub struct Context<'a> {
    pub ev: &'a Enriched,
    pub tok: &'a TokenState,
    pub subject: Option<&'a Profile>,
    pub client: Option<&'a Profile>,
    pub route_class: &'a RouteClass,
    /// Index in `tok.fps` of the slot matching this event's fingerprint, if any.
    pub fp_slot: Option<usize>,
    /// The network of this request (ASN and address prefix).
    pub net: NetKey,
}

/// Whether a client seen earlier on the token and this request are one
/// device, though their user agents differ. A device is a TLS stack on a
/// network, not a User-Agent string: an iOS app sends its own agent and,
/// through plain URLSession, CFNetwork's default; an Android app its own
/// and okhttp's or Dalvik's. So:
/// * both JA4 known: the same JA4 on the same address prefix or ASN, with a
///   compatible OS (equal, or one agent names none), is one device; a
///   different JA4 is another device, even from the same household;
/// * no JA4 logged: the agent is all there is and it is weak, so two agents
///   on the same address prefix with a compatible OS are one device when at
///   least one of them is an app's or a platform's HTTP stack (two browser
///   families on one token are two browsers); when both are app or
///   platform stacks, the same ASN will do (a phone on a carrier hops
///   CGNAT pools between an app's request and its platform's next one);
/// * a scripting client is never the same device as an interactive one.
pub fn same_device(slot: &FpSlot, fp: &Fingerprint, net: &NetKey) -> bool {
    let a = &slot.fp;
    if a.scripting != fp.scripting {
        return false;
    }
    if a.os != fp.os && a.os_known() && fp.os_known() {
        return false;
    }
    if a.tls != 0 && fp.tls != 0 {
        return a.tls == fp.tls && slot.net().same_network(net);
    }
    let app = |d: u8| d == DeviceClass::App as u8 || d == DeviceClass::Other as u8;
    let n = slot.net();
    (n.same_prefix(net) && (app(a.device) || app(fp.device)))
        || (n.same_network(net) && app(a.device) && app(fp.device))
}

/// A detector: a documented rule over per-token state. Pure.
pub trait Detector: Send + Sync {
    fn kind(&self) -> FindingKind;
    fn inspect(&self, cx: &Context<'_>) -> Option<Signal>;
}

pub struct TokenReplay(pub TokenReplayConfig);
pub struct ImpossibleTravel(pub ImpossibleTravelConfig);
pub struct SuspiciousNetwork(pub SuspiciousNetworkConfig);
pub struct BulkSiphon(pub BulkSiphonConfig);
pub struct Enumeration(pub EnumerationConfig);

fn describe_client(ev: &Enriched) -> String {
    let ua = &ev.ua;
    let version = if ua.major > 0 {
        format!(" {}", ua.major)
    } else {
        String::new()
    };
    if ua.os.as_ref() == "unknown" || ua.os.as_ref() == "UNKNOWN" {
        format!("{}{}", ua.family, version)
    } else {
        format!("{}{} on {}", ua.family, version, ua.os)
    }
}

pub fn describe_place(net: &NetInfo) -> String {
    let asn = if net.asn > 0 {
        format!("AS{} {}", net.asn, net.class.as_str())
    } else {
        net.class.as_str().to_string()
    };
    match &net.place {
        Some(Place { city, country, .. }) => {
            let c = country.as_deref().unwrap_or("??");
            match city {
                Some(city) => format!("{city}, {c} ({asn})"),
                None => format!("{c} ({asn})"),
            }
        }
        None => format!("unknown place ({asn})"),
    }
}

fn minutes(ms: i64) -> String {
    let m = ms as f64 / 60_000.0;
    if m < 1.0 {
        format!("{} s", (ms / 1000).max(0))
    } else if m < 120.0 {
        format!("{m:.0} min")
    } else {
        format!("{:.1} h", m / 60.0)
    }
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

impl Detector for TokenReplay {
    fn kind(&self) -> FindingKind {
        FindingKind::TokenReplay
    }

    fn inspect(&self, cx: &Context<'_>) -> Option<Signal> {
        let c = &self.0;
        let ev = cx.ev;
        let fp = ev.fp;
        let window = (c.concurrency_window_secs * 1000) as i64;
        // The most recent other client that is materially different.
        let other = cx
            .tok
            .fps
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.count > 0
                    && Some(*i) != cx.fp_slot
                    && s.fp.distance(&fp) >= c.min_distance
                    && !same_device(s, &fp, &cx.net)
                    && cx
                        .fp_slot
                        .and_then(|me| cx.tok.fps.get(me))
                        .is_none_or(|me| me.kin & (1u8 << (*i).min(7)) == 0)
            })
            .max_by_key(|(_, s)| s.last())
            .map(|(_, s)| *s)?;
        let gap = ev.event.ts - other.last();
        let is_new = cx.fp_slot.is_none();
        let known_to_subject = cx.subject.is_some_and(|p| p.knows_device(fp.device_key()));
        let this_count = cx
            .fp_slot
            .and_then(|i| cx.tok.fps.get(i))
            .map(|s| s.count)
            .unwrap_or(0)
            + 1;
        if gap <= window {
            let mut score: u32 = 70 + u32::from(fp.distance(&other.fp)).min(6) * 3;
            if fp.scripting && !other.fp.scripting {
                score += 10;
            }
            if ev.net.class.is_datacenter_like() {
                score += 5;
            }
            if known_to_subject {
                score = score.saturating_sub(25);
            }
            let summary = format!(
                "token used by {} from {} while a different client used it {} earlier \
                 ({} requests from the first client since {}); fingerprint distance {}",
                describe_client(ev),
                describe_place(&ev.net),
                minutes(gap),
                other.count,
                fmt_time(other.first()),
                fp.distance(&other.fp),
            );
            return Some(Signal {
                severity: None,
                score: score.min(100) as u8,
                summary,
                evidence_first: other.first().min(ev.event.ts),
                evidence: json!({
                    "pattern": "concurrent",
                    "new_client": describe_client(ev),
                    "new_client_scripting": fp.scripting,
                    "new_client_requests": this_count,
                    "first_client_requests": other.count,
                    "first_client_last_seen": fmt_time(other.last()),
                    "gap_secs": gap / 1000,
                    "fingerprint_distance": fp.distance(&other.fp),
                    "device_known_to_subject": known_to_subject,
                }),
            });
        }
        // Not concurrent: only an implausible switch to a never-seen device.
        // An access token lives in one client: it does not move to another
        // device class, to another operating system, or to another browser
        // on another TLS stack (another browser on the owner's own network
        // is still another device). `same_device` has already let through
        // what one phone or one browser sends under several agents.
        let browser = |f: &Fingerprint| {
            f.device == DeviceClass::Desktop as u8 || f.device == DeviceClass::Mobile as u8
        };
        let other_os = fp.os != other.fp.os && fp.os_known() && other.fp.os_known();
        let other_browser = browser(&fp)
            && browser(&other.fp)
            && fp.family != other.fp.family
            && fp.tls != 0
            && other.fp.tls != 0
            && fp.tls != other.fp.tls;
        let implausible = (fp.scripting && !other.fp.scripting)
            || fp.device != other.fp.device
            || other_os
            || other_browser;
        if c.report_switches && is_new && implausible && !known_to_subject {
            let summary = format!(
                "token switched to {} from {} {} after its previous client went quiet; \
                 the subject never used this device",
                describe_client(ev),
                describe_place(&ev.net),
                minutes(gap),
            );
            return Some(Signal {
                severity: Some(Severity::Medium.min(c.severity)),
                score: 55,
                summary,
                evidence_first: other.last(),
                evidence: json!({
                    "pattern": "switch",
                    "new_client": describe_client(ev),
                    "new_client_scripting": fp.scripting,
                    "gap_secs": gap / 1000,
                    "fingerprint_distance": fp.distance(&other.fp),
                }),
            });
        }
        None
    }
}

/// Two countries are the same when they are equal or one is unknown.
pub fn same_country(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Great-circle distance in km.
pub fn haversine_km(lat1: f32, lon1: f32, lat2: f32, lon2: f32) -> f64 {
    let (p1, p2) = (f64::from(lat1).to_radians(), f64::from(lat2).to_radians());
    let dp = p2 - p1;
    let dl = (f64::from(lon2) - f64::from(lon1)).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

impl Detector for ImpossibleTravel {
    fn kind(&self) -> FindingKind {
        FindingKind::ImpossibleTravel
    }

    fn inspect(&self, cx: &Context<'_>) -> Option<Signal> {
        let c = &self.0;
        let ev = cx.ev;
        let here = ev.net.place.as_ref()?;
        let prev = cx.tok.place.as_ref()?;
        let prev_place = prev.net.place.as_ref();
        // Geolocation has error bars: a country-level record (carrier pools,
        // VPN exits, hosting ranges at the country's centroid) is never a
        // point, at most "in this country".
        let here_coarse = here.country_level();
        let prev_coarse = prev_place.is_none_or(|p| p.country_level())
            || prev.radius_km >= COUNTRY_LEVEL_RADIUS_KM;
        if (here_coarse || prev_coarse)
            && same_country(
                here.country.as_deref(),
                prev_place.and_then(|p| p.country.as_deref()),
            )
        {
            return None;
        }
        let radius = |r: u16, coarse: bool| {
            f64::from(if coarse {
                r.max(COUNTRY_LEVEL_RADIUS_KM)
            } else {
                r
            })
        };
        let dist = haversine_km(prev.lat, prev.lon, here.lat, here.lon);
        let radii = radius(prev.radius_km, prev_coarse) + radius(here.radius_km, here_coarse);
        let eff = dist - radii;
        if eff < c.min_distance_km {
            return None;
        }
        let elapsed = (ev.event.ts - prev.last()).max(0);
        // One second minimum: simultaneous use is "infinitely" fast.
        let hours = (elapsed.max(1000) as f64) / 3_600_000.0;
        let speed = eff / hours;
        if speed <= c.max_speed_kmh {
            return None;
        }
        // Back at the place before the jump, soon after: overlapping use.
        let overlap = cx.tok.alt_place().filter(|alt| {
            let d = haversine_km(alt.lat, alt.lon, here.lat, here.lon)
                - f64::from(alt.radius_km)
                - f64::from(here.radius_km);
            d < c.min_distance_km
                && ev.event.ts - prev.first() <= (c.overlap_window_secs * 1000) as i64
        });
        // Ambiguous, not stolen: the very same client (agent, TLS stack and
        // language) on one side of the jump and a network that misplaces
        // people on the other (a VPN toggled on and off, a phone's
        // home-routed roaming beside the hotel's Wi-Fi), or a VPN or hosting
        // exit the subject has used before. Reported low, never revoked.
        let same_client = cx
            .fp_slot
            .and_then(|i| cx.tok.fps.get(i))
            .is_some_and(|s| s.fp.distance(&ev.fp) == 0 && !ev.fp.scripting);
        let misplacing =
            |n: NetClass| matches!(n, NetClass::Mobile | NetClass::Vpn | NetClass::Hosting);
        let dc_here = ev.net.class.is_datacenter_like();
        let dc_prev = prev.net.class.is_datacenter_like();
        let exit_known = cx.subject.is_some_and(|p| {
            (dc_here && p.knows_exit(ev.net.asn)) || (dc_prev && p.knows_exit(prev.net.asn))
        });
        let ambiguous =
            (same_client && (misplacing(ev.net.class) || misplacing(prev.net.class))) || exit_known;
        let (severity, score, pattern) = if ambiguous {
            let p = if dc_here || dc_prev {
                "vpn_toggle"
            } else {
                "roaming"
            };
            (Some(Severity::Low), 35u8, p)
        } else if overlap.is_some() {
            (Some(Severity::Critical), 95u8, "overlapping")
        } else {
            let s = (60.0 + (speed / c.max_speed_kmh).log10() * 15.0).clamp(60.0, 90.0) as u8;
            (None, s, "jump")
        };
        let summary = format!(
            "used from {} {} after {}: {} km at {} km/h; radii {} km and {} km{}",
            describe_place(&ev.net),
            minutes(elapsed),
            describe_place(&prev.net),
            thousands(eff.max(0.0)),
            thousands(speed.min(1e9)),
            prev.radius_km,
            here.radius_km,
            match pattern {
                "overlapping" => "; the token is in use at both places",
                "vpn_toggle" => "; the same client on a VPN or hosting exit: ambiguous, low",
                "roaming" =>
                    "; the same client, one side on a mobile network (roaming?): ambiguous, low",
                _ => "",
            },
        );
        let p = |n: &NetInfo| {
            let pl = n.place.as_ref();
            json!({
                "city": pl.and_then(|p| p.city.as_deref()),
                "country": pl.and_then(|p| p.country.as_deref()),
                "lat": pl.map(|p| p.lat), "lon": pl.map(|p| p.lon),
                "radius_km": pl.map(|p| p.radius_km),
                "asn": n.asn, "network": n.class.as_str(),
            })
        };
        Some(Signal {
            severity,
            score,
            summary,
            evidence_first: prev.first(),
            evidence: json!({
                "pattern": pattern,
                "from": p(&prev.net),
                "to": p(&ev.net),
                "distance_km": (dist * 10.0).round() / 10.0,
                "distance_after_radii_km": (eff * 10.0).round() / 10.0,
                "elapsed_secs": elapsed / 1000,
                "speed_kmh": speed.min(1e9).round(),
                "max_speed_kmh": c.max_speed_kmh,
            }),
        })
    }
}

impl Detector for SuspiciousNetwork {
    fn kind(&self) -> FindingKind {
        FindingKind::SuspiciousNetwork
    }

    fn inspect(&self, cx: &Context<'_>) -> Option<Signal> {
        let c = &self.0;
        let ev = cx.ev;
        let class = ev.net.class;
        if !class.is_datacenter_like() || (c.require_scripting_client && !ev.fp.scripting) {
            return None;
        }
        let tok = cx.tok;
        // The token or its subject already uses this exit (the same ASN: a
        // user's own VPN), or its application lives on this kind of network
        // (service tokens in data centres). A user behind relay egress (a
        // CDN's VPN-class exits) does not make another VPN or a hosting
        // provider normal.
        let asn = ev.net.asn;
        let token_knows = tok.fps.iter().any(|s| s.count > 0 && s.net().asn == asn)
            || tok.place.as_ref().is_some_and(|p| p.net.asn == asn);
        if (asn == 0 && tok.class_count(class) > 0)
            || (asn != 0 && token_knows)
            || cx.subject.is_some_and(|p| p.knows_exit(asn))
            || cx.client.is_some_and(|p| p.classes & class.bit() != 0)
        {
            return None;
        }
        let home = tok.class_count(NetClass::Residential) + tok.class_count(NetClass::Mobile);
        let subject_home = cx.subject.map(|p| p.home_events).unwrap_or(0);
        // History elsewhere: on home networks, or (for a user behind relay
        // egress or a VPN of their own) on exits other than this one.
        let elsewhere: u32 = tok.class_events.iter().map(|n| u32::from(*n)).sum();
        let history = if cx.client.is_some() {
            home.max(subject_home)
        } else {
            home.max(subject_home).max(elsewhere)
        };
        if history < c.min_history_events {
            return None;
        }
        let prev = tok
            .place
            .as_ref()
            .map(|p| describe_place(&p.net))
            .unwrap_or_else(|| "its usual networks".into());
        let summary = format!(
            "token moved from {} to {} with scripting client {} ({} earlier requests on other networks)",
            prev,
            describe_place(&ev.net),
            describe_client(ev),
            history,
        );
        Some(Signal {
            severity: None,
            score: if class == NetClass::Vpn { 60 } else { 70 },
            summary,
            evidence_first: tok.first,
            evidence: json!({
                "network": class.as_str(),
                "asn": ev.net.asn,
                "as_org": ev.net.as_org.as_deref(),
                "client": describe_client(ev),
                "scripting_client": ev.fp.scripting,
                "home_events": home,
                "subject_home_events": subject_home,
                "class_events": {
                    "residential": tok.class_count(NetClass::Residential),
                    "mobile": tok.class_count(NetClass::Mobile),
                },
            }),
        })
    }
}

/// What a short or sustained pull looked like.
struct PullSample {
    requests: f64,
    kib: f64,
    /// Requests of the span the distinct-object sketch covers (at most).
    recent_requests: f64,
    depth: f64,
    objects: f64,
}

/// The shape of a pull beside its volume: bigger answers per request than
/// the owner's usual (`heavy`), paging deeper than usual (`deep`), or mostly
/// distinct objects (`wide`). More of the owner's usual mix is a busy day
/// (people's sessions vary 2-3x, apps open with a burst of calls), so the
/// rules ask volume alone to be twice their factor. `None`: the usual mix.
fn pull_shape(
    s: PullSample,
    usual_kib_per_request: f64,
    usual_depth: f64,
    min_depth: f64,
) -> Option<&'static str> {
    // The mean answer of a few requests varies with the mix of routes in
    // them (a list page is 50x a profile): beyond 1.5x, a margin that
    // shrinks with the sample, about three standard deviations of a mean
    // of `requests` answers whose spread is their mean (2.2x for 12
    // requests, 1.5x from 64).
    let margin = (1.0 + 4.0 / s.requests.max(1.0).sqrt()).max(1.5);
    if s.kib > 0.0 && s.kib >= margin * usual_kib_per_request * s.requests {
        Some("heavy")
    } else if s.depth >= (min_depth / 2.0).max(2.0 * usual_depth) {
        Some("deep")
    } else if s.objects >= 20.0 && s.objects >= 0.8 * s.recent_requests {
        Some("wide")
    } else {
        None
    }
}

impl Detector for BulkSiphon {
    fn kind(&self) -> FindingKind {
        FindingKind::BulkSiphon
    }

    fn inspect(&self, cx: &Context<'_>) -> Option<Signal> {
        let c = &self.0;
        let ev = cx.ev;
        let minute = (ev.event.ts / 60_000) as u32;
        let n = u32::from(c.window_minutes);
        let w = cx.tok.window(minute, n);
        let sens = cx.route_class.sensitivity;
        let base = &cx.tok.baseline;
        let objects = sketch_estimate(w.objects);
        let req = f64::from(w.requests);
        let kib = w.kib as f64;
        let mut reasons: Vec<String> = Vec::new();
        let mut ratio_max = 0.0f64;

        if base.active_minutes >= c.warmup_minutes {
            let factor = c.factor * sens;
            // Expected window if every minute were as busy as a usual active minute.
            let exp_req = (f64::from(base.requests) * f64::from(n)).max(1.0);
            let exp_kib = (f64::from(base.kib) * f64::from(n)).max(1.0);
            let exp_obj = (f64::from(base.objects) * f64::from(n)).max(1.0);
            if req >= f64::from(c.min_requests) * sens && req >= factor * exp_req {
                ratio_max = ratio_max.max(req / exp_req);
                reasons.push(format!(
                    "{} requests in {} min ({:.1}/min), {:.1}x its usual {:.1}/active min",
                    thousands(req),
                    n,
                    req / f64::from(n),
                    req / exp_req,
                    base.requests
                ));
            }
            if kib * 1024.0 >= c.min_bytes as f64 * sens && kib >= factor * exp_kib {
                ratio_max = ratio_max.max(kib / exp_kib);
                reasons.push(format!(
                    "{:.1} MiB in {} min, {:.1}x its usual {:.2} MiB/min",
                    kib / 1024.0,
                    n,
                    kib / exp_kib,
                    base.kib / 1024.0
                ));
            }
            if objects >= f64::from(c.min_distinct_objects) * sens && objects >= factor * exp_obj {
                ratio_max = ratio_max.max(objects / exp_obj);
                reasons.push(format!(
                    "~{objects:.0} distinct objects in {n} min (usual {:.1}/min)",
                    base.objects
                ));
            }
        }
        let mut scale = "window";
        let mut shape: Option<&str> = None;
        let min_depth = f64::from(c.min_page_depth);
        // The burst scale: the last 60 s against a busy minute of the
        // baseline. The previous minute counts for the part of it still
        // inside the last 60 s (a sliding window from two buckets), so a
        // burst that starts late in a minute is not seen a minute late.
        if base.active_minutes >= c.warmup_minutes && reasons.is_empty() {
            let cur = cx.tok.window(minute, 1).requests;
            let two = cx.tok.window(minute, 2);
            let prev = two.requests.saturating_sub(cur);
            let left = 1.0 - ev.event.ts.rem_euclid(60_000) as f64 / 60_000.0;
            let busy = f64::from(base.requests).max(1.0);
            let req1 = (f64::from(cur) + f64::from(prev) * left).floor();
            let factor = c.burst_factor * sens;
            let got = pull_shape(
                PullSample {
                    requests: f64::from(two.requests),
                    kib: two.kib as f64,
                    recent_requests: f64::from(two.requests),
                    depth: f64::from(two.max_page),
                    objects: sketch_estimate(two.objects),
                },
                f64::from(base.kib) / f64::from(base.requests).max(0.05),
                f64::from(base.pages),
                min_depth,
            );
            if req1 >= f64::from(c.burst_min_requests) * sens
                && req1 >= factor * busy
                && (got.is_some() || req1 >= 2.0 * factor * busy)
            {
                ratio_max = ratio_max.max(req1 / busy);
                scale = "burst";
                shape = Some(got.unwrap_or("volume"));
                reasons.push(format!(
                    "~{req1:.0} requests in the last 60 s, {:.1}x its busiest usual {:.1}/active min",
                    req1 / busy,
                    base.requests
                ));
            }
        }
        // The sustained scales: the last 5, 15 and 60 minutes against the
        // rate of use (per session minute) learnt across the subject's tokens.
        let sc = cx.tok.scales();
        if let Some(sc) = sc
            && reasons.is_empty()
            && base.session_minutes >= c.sustained_warmup_minutes
        {
            let rate = f64::from(base.rate_requests).max(0.05);
            let rate_kib = f64::from(base.rate_kib).max(1.0);
            let f = c.sustained_factor * sens;
            let floor = f64::from(c.sustained_min_requests) * sens;
            // 5 minutes at 1.6x the 15-minute factor (4x by default): a
            // quiet app pulling 4-8x its rate is seen within minutes, not
            // only once a quarter of an hour has filled. At 5 minutes an
            // app's launch burst weighs too much for volume alone to count.
            for (tau, count, kib, factor, floor, volume_alone) in [
                (5.0, sc.requests5, sc.kib5, f * 1.6, floor, false),
                (15.0, sc.requests15, sc.kib15, f, floor, true),
                (60.0, sc.requests60, sc.kib60, f * 0.8, floor * 2.0, true),
            ] {
                let (req, kib) = (f64::from(count), f64::from(kib));
                let (exp_req, exp_kib) = (rate * tau, rate_kib * tau);
                // Low counts vary: beyond the factor, a margin of four
                // standard deviations of a Poisson count at the usual rate.
                let min = floor.max(exp_req + 4.0 * exp_req.sqrt());
                let got = pull_shape(
                    PullSample {
                        requests: req,
                        kib,
                        recent_requests: req.min(f64::from(sc.requests15)),
                        depth: f64::from(sc.max_page()),
                        objects: sc.objects(),
                    },
                    f64::from(base.rate_kib) / rate,
                    f64::from(base.pages),
                    min_depth,
                );
                let by_req = req >= min
                    && req >= factor * exp_req
                    && (got.is_some() || (volume_alone && req >= 2.0 * factor * exp_req));
                let by_kib = req >= min / 2.0
                    && kib * 1024.0 >= c.sustained_min_bytes as f64 * sens * tau / 15.0
                    && kib >= factor * exp_kib;
                if by_req || by_kib {
                    let r = (req / exp_req).max(kib / exp_kib);
                    ratio_max = ratio_max.max(r);
                    scale = match tau as u32 {
                        5 => "sustained_5m",
                        15 => "sustained_15m",
                        _ => "sustained_60m",
                    };
                    shape = Some(got.unwrap_or(if by_kib { "heavy" } else { "volume" }));
                    reasons.push(format!(
                        "~{req:.0} requests and {:.1} MiB over the last {tau:.0} min, \
                         {r:.1}x its usual rate of {:.2} requests and {:.2} MiB a minute in use",
                        kib / 1024.0,
                        base.rate_requests,
                        base.rate_kib / 1024.0
                    ));
                    break;
                }
            }
        }
        // Pagination depth: paging far deeper than the owner ever does, at
        // a higher pace than usual (an export through a list endpoint).
        if let Some(sc) = sc
            && reasons.is_empty()
            && base.session_minutes >= c.sustained_warmup_minutes
        {
            let depth = f64::from(sc.max_page());
            let usual = f64::from(base.pages).max(1.0);
            let req = f64::from(sc.requests15);
            let exp_req = f64::from(base.rate_requests).max(0.05) * 15.0;
            if depth >= f64::from(c.min_page_depth) * sens
                && depth >= c.factor * 0.5 * sens * usual
                && req >= 1.5 * exp_req
                && req >= f64::from(c.sustained_min_requests) * sens
            {
                ratio_max = ratio_max.max(depth / usual);
                scale = "pagination";
                reasons.push(format!(
                    "paged to page {depth:.0} within 30 min, {:.1}x its usual depth of {usual:.1}, \
                     ~{req:.0} requests over 15 min ({:.1}x its usual rate)",
                    depth / usual,
                    req / exp_req
                ));
            }
        }
        let rc = cx.route_class;
        if rc.max_requests_per_window > 0 && w.requests > rc.max_requests_per_window {
            reasons.push(format!(
                "{} requests in {} min, over this route class's ceiling of {}",
                thousands(req),
                n,
                rc.max_requests_per_window
            ));
        }
        if rc.max_bytes_per_window > 0 && w.kib * 1024 > rc.max_bytes_per_window {
            reasons.push(format!(
                "{:.1} MiB in {} min, over this route class's ceiling of {:.1} MiB",
                kib / 1024.0,
                n,
                rc.max_bytes_per_window as f64 / 1_048_576.0
            ));
        }
        if reasons.is_empty() {
            return None;
        }
        let score = (60.0 + ratio_max.max(1.0).log2() * 6.0).clamp(60.0, 95.0) as u8;
        Some(Signal {
            severity: None,
            score,
            summary: format!(
                "bulk pull: {}{}; pagination depth {}",
                reasons.join("; "),
                match shape {
                    Some("heavy") => ", answers larger than its usual",
                    Some("deep") => ", paging deeper than it usually does",
                    Some("wide") => ", mostly distinct objects",
                    Some(_) => ", volume alone (twice the factor)",
                    None => "",
                },
                w.max_page
            ),
            evidence_first: i64::from(w.first_minute) * 60_000,
            evidence: json!({
                "scale": scale,
                "shape": shape,
                "window_minutes": n,
                "requests": w.requests,
                "bytes": w.kib * 1024,
                "distinct_objects_est": objects.round(),
                "max_page": w.max_page,
                "baseline_per_min": {
                    "requests": base.requests, "bytes": base.kib * 1024.0,
                    "objects": base.objects, "pages": base.pages,
                    "active_minutes": base.active_minutes,
                    "rate_requests": base.rate_requests,
                    "rate_bytes": base.rate_kib * 1024.0,
                    "session_minutes": base.session_minutes,
                },
                "last_5m": sc.map(|s| json!({
                    "requests": s.requests5.round(), "bytes": (s.kib5 * 1024.0).round(),
                })),
                "last_15m": sc.map(|s| json!({
                    "requests": s.requests15.round(), "bytes": (s.kib15 * 1024.0).round(),
                })),
                "last_60m": sc.map(|s| json!({
                    "requests": s.requests60.round(), "bytes": (s.kib60 * 1024.0).round(),
                })),
                "route_class_sensitivity": sens,
            }),
        })
    }
}

impl Detector for Enumeration {
    fn kind(&self) -> FindingKind {
        FindingKind::Enumeration
    }

    fn inspect(&self, cx: &Context<'_>) -> Option<Signal> {
        let c = &self.0;
        let ev = cx.ev;
        ev.event.object?;
        let minute = (ev.event.ts / 60_000) as u32;
        let n = c.window_secs.div_ceil(60) as u32;
        let w = cx.tok.window(minute, n);
        let mut distinct = sketch_estimate(w.objects);
        let mut ratio = f64::from(w.errors) / f64::from(w.requests.max(1));
        let sens = cx.route_class.sensitivity;
        let mut speed = "fast";
        let (mut errors, mut requests) = (f64::from(w.errors), f64::from(w.requests));
        if distinct < f64::from(c.min_distinct_objects) * sens || ratio < c.min_error_ratio {
            // Low and slow: the long window (15 to 30 minutes of ids).
            let sc = cx.tok.scales()?;
            let d = sc.objects();
            // The share of misses among all requests lags when the token
            // was busy before (its own 200s decay slowly), so the misses per
            // distinct id count too: an enumerator's ids are mostly misses.
            let r = (f64::from(sc.errors15) / f64::from(sc.requests15.max(1.0)))
                .max((f64::from(sc.errors15) / d.max(1.0)).min(1.0));
            if c.slow_min_distinct_objects == 0
                || d < f64::from(c.slow_min_distinct_objects) * sens
                || r < c.min_error_ratio
            {
                return None;
            }
            (distinct, ratio, speed) = (d, r, "slow");
            (errors, requests) = (f64::from(sc.errors15), f64::from(sc.requests15));
        }
        Some(Signal {
            severity: None,
            score: (60.0 + ratio * 35.0).min(95.0) as u8,
            summary: if speed == "fast" {
                format!(
                    "~{distinct:.0} distinct object ids on {} in {} min, {:.0}% answered 403/404 ({} of {} requests)",
                    ev.event.route,
                    n,
                    ratio * 100.0,
                    w.errors,
                    w.requests
                )
            } else {
                format!(
                    "low and slow: ~{distinct:.0} distinct object ids on {} over the last 15-30 min, \
                     {:.0}% answered 403/404 (~{errors:.0} misses, ~{requests:.0} requests, decayed over 15 min)",
                    ev.event.route,
                    ratio * 100.0,
                )
            },
            evidence_first: if speed == "fast" {
                i64::from(w.first_minute) * 60_000
            } else {
                ev.event.ts - 30 * 60_000
            },
            evidence: json!({
                "speed": speed,
                "window_minutes": if speed == "fast" { n } else { 30 },
                "distinct_objects_est": distinct.round(),
                "requests": requests.round(),
                "errors_403_404": errors.round(),
                "error_ratio": (ratio * 1000.0).round() / 1000.0,
                "route": ev.event.route.as_ref(),
            }),
        })
    }
}
