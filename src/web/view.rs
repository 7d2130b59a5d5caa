//! What an incident page shows, computed from its findings (their JSON as
//! stored, with the token context): the places and the jumps between them
//! with distances and speeds, the devices, the per-minute timeline and the
//! evidence as named numbers.

use serde::Serialize;
use serde_json::Value;

use crate::detect::context::{ContextDevice, ContextMinute, ContextPlace};
use crate::detect::detectors::haversine_km;
use crate::store::FindingRecord;

#[derive(Debug, Clone, Serialize)]
pub struct MapPoint {
    pub lat: f32,
    pub lon: f32,
    pub label: String,
    pub asn: u32,
    pub network: String,
    pub first: i64,
    pub last: i64,
    pub token_id: String,
    /// SVG coordinates on the 720×360 equirectangular map.
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Jump {
    pub from: usize,
    pub to: usize,
    pub km: f64,
    pub hours: f64,
    /// km/h; `None` when the two uses overlap in time (simultaneous use).
    pub kmh: Option<f64>,
    /// Faster than an airliner (900 km/h) or simultaneous far apart.
    pub impossible: bool,
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub mx: f64,
    pub my: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: String,
    pub scripting: bool,
    pub tls_known: bool,
    pub first: i64,
    pub last: i64,
    pub requests: u32,
    pub user_agents: Vec<String>,
    pub token_id: String,
}

/// The part of the 720×360 map to show: the points' bounding box with a
/// margin, 2:1 like the map, never smaller than a region.
pub fn map_view(points: &[MapPoint]) -> (f64, f64, f64, f64) {
    if points.is_empty() {
        return (0.0, 0.0, 720.0, 360.0);
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in points {
        x0 = x0.min(p.x);
        y0 = y0.min(p.y);
        x1 = x1.max(p.x);
        y1 = y1.max(p.y);
    }
    let w = ((x1 - x0) * 1.4).max((y1 - y0) * 2.8).clamp(60.0, 720.0);
    let h = w / 2.0;
    let (cx, cy) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let x = (cx - w / 2.0).clamp(0.0, 720.0 - w);
    let y = (cy - h / 2.0).clamp(0.0, 360.0 - h);
    (x, y, w, h)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Picture {
    pub points: Vec<MapPoint>,
    pub jumps: Vec<Jump>,
    pub devices: Vec<Device>,
    /// The most recent token's per-minute activity.
    pub minutes: Vec<ContextMinute>,
    pub timeline_token: Option<String>,
}

pub fn project(lat: f32, lon: f32) -> (f64, f64) {
    (
        ((f64::from(lon) + 180.0) * 2.0).clamp(0.0, 720.0),
        ((90.0 - f64::from(lat)) * 2.0).clamp(0.0, 360.0),
    )
}

fn label(p: &ContextPlace) -> String {
    match (&p.city, &p.country) {
        (Some(c), Some(k)) => format!("{c}, {k}"),
        (None, Some(k)) => k.clone(),
        (Some(c), None) => c.clone(),
        (None, None) => format!("{:.1}, {:.1}", p.lat, p.lon),
    }
}

/// Merge the findings' snapshots into one picture.
pub fn picture(findings: &[FindingRecord]) -> Picture {
    let mut places: Vec<(ContextPlace, String)> = Vec::new();
    let mut devices: Vec<Device> = Vec::new();
    let mut latest: Option<(i64, String, Vec<ContextMinute>)> = None;
    for f in findings {
        let token = f.token_id.clone();
        let ts = f.event_ts;
        let ua = f.user_agent.clone();
        let Some(cx) = f.context.clone() else {
            continue;
        };
        for p in cx.places {
            // The same place seen by several findings: widen its times.
            match places.iter_mut().find(|(q, t)| {
                *t == token && (q.lat - p.lat).abs() < 0.01 && (q.lon - p.lon).abs() < 0.01
            }) {
                Some((q, _)) => {
                    q.first = q.first.min(p.first);
                    q.last = q.last.max(p.last);
                }
                None => places.push((p, token.clone())),
            }
        }
        for d in cx.devices {
            let d: ContextDevice = d;
            match devices
                .iter_mut()
                .find(|x| x.id == d.id && x.token_id == token)
            {
                Some(x) => {
                    x.first = x.first.min(d.first);
                    x.last = x.last.max(d.last);
                    x.requests = x.requests.max(d.requests);
                    if d.current && !ua.is_empty() && !x.user_agents.contains(&ua) {
                        x.user_agents.push(ua.clone());
                    }
                }
                None => devices.push(Device {
                    user_agents: if d.current && !ua.is_empty() {
                        vec![ua.clone()]
                    } else {
                        Vec::new()
                    },
                    id: d.id,
                    scripting: d.scripting,
                    tls_known: d.tls_known,
                    first: d.first,
                    last: d.last,
                    requests: d.requests,
                    token_id: token.clone(),
                }),
            }
        }
        if latest.as_ref().is_none_or(|(t, _, _)| ts >= *t) {
            latest = Some((ts, token.clone(), cx.minutes));
        }
    }
    places.sort_by_key(|(p, _)| (p.first, p.last));
    let points: Vec<MapPoint> = places
        .iter()
        .map(|(p, t)| {
            let (x, y) = project(p.lat, p.lon);
            MapPoint {
                lat: p.lat,
                lon: p.lon,
                label: label(p),
                asn: p.asn,
                network: p.network.clone(),
                first: p.first,
                last: p.last,
                token_id: t.clone(),
                x,
                y,
            }
        })
        .collect();
    let mut jumps = Vec::new();
    for i in 1..points.len() {
        let (a, b) = (&points[i - 1], &points[i]);
        let km = haversine_km(a.lat, a.lon, b.lat, b.lon);
        if km < 50.0 {
            continue;
        }
        let gap_ms = b.first - a.last;
        let hours = gap_ms.max(0) as f64 / 3_600_000.0;
        let kmh = (gap_ms > 0).then(|| km / hours);
        jumps.push(Jump {
            from: i - 1,
            to: i,
            km,
            hours,
            kmh,
            impossible: kmh.is_none_or(|v| v > 900.0),
            x1: a.x,
            y1: a.y,
            x2: b.x,
            y2: b.y,
            mx: (a.x + b.x) / 2.0,
            my: (a.y + b.y) / 2.0 - 2.0,
        });
    }
    devices.sort_by_key(|d| d.first);
    let (timeline_token, minutes) = match latest {
        Some((_, t, m)) => (Some(t), m),
        None => (None, Vec::new()),
    };
    Picture {
        points,
        jumps,
        devices,
        minutes,
        timeline_token,
    }
}

/// The evidence object flattened to `(name, value)` pairs, numbers rounded
/// for reading.
pub fn evidence_pairs(evidence: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    flatten("", evidence, &mut out);
    out
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Number(n) => {
            let s = match n.as_f64() {
                Some(f) if f.fract() != 0.0 => format!("{f:.2}"),
                _ => n.to_string(),
            };
            out.push((prefix.to_string(), s));
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Bool(b) => out.push((prefix.to_string(), b.to_string())),
        Value::Array(a) => out.push((
            prefix.to_string(),
            a.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        )),
        Value::Null => {}
    }
}

/// Event-time milliseconds as `2026-11-23 14:05:09Z`.
pub fn time(ms: i64) -> String {
    crate::event::fmt_time(ms).replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn finding(token: &str, ts: i64, places: Value) -> FindingRecord {
        serde_json::from_value(json!({"token_id": token, "event_ts": ts, "user_agent": "curl/8",
               "context": {"places": places, "devices": [{"id": "d1", "scripting": true, "tls_known": false,
                 "first": ts, "last": ts, "requests": 1, "current": true}], "minutes": [{"ts": ts, "requests": 3, "kib": 1, "errors": 0, "max_page": 0}]}}))
        .unwrap()
    }

    #[test]
    fn jumps_have_distance_time_and_speed() {
        let berlin = json!({"lat": 52.52, "lon": 13.40, "radius_km": 10, "city": "Berlin", "country": "DE",
            "asn": 3320, "network": "residential", "first": 0, "last": 3_600_000, "current": false});
        let sydney = json!({"lat": -33.87, "lon": 151.21, "radius_km": 10, "city": "Sydney", "country": "AU",
            "asn": 1221, "network": "residential", "first": 7_200_000, "last": 7_200_000, "current": true});
        let p = picture(&[finding("t1", 7_200_000, json!([berlin, sydney]))]);
        assert_eq!(p.points.len(), 2);
        assert_eq!(p.points[0].label, "Berlin, DE");
        let j = &p.jumps[0];
        assert!((j.km - 16_090.0).abs() < 100.0, "{}", j.km);
        assert!((j.hours - 1.0).abs() < 1e-9);
        assert!(j.impossible && j.kmh.unwrap() > 15_000.0);
        assert_eq!(p.devices[0].user_agents, vec!["curl/8".to_string()]);
        assert_eq!(p.minutes.len(), 1);
    }

    #[test]
    fn evidence_flattens_to_named_numbers() {
        let e = json!({"speed_kmh": 12345.678, "window": {"requests": 900}, "asns": [1, 2]});
        let pairs = evidence_pairs(&e);
        assert!(pairs.contains(&("speed_kmh".into(), "12345.68".into())));
        assert!(pairs.contains(&("window.requests".into(), "900".into())));
        assert!(pairs.contains(&("asns".into(), "1, 2".into())));
    }

    #[test]
    fn findings_without_context_give_an_empty_picture() {
        let none = FindingRecord::parse(r#"{"token_id": "x"}"#).unwrap();
        assert!(FindingRecord::parse(r#""garbage""#).is_none());
        let p = picture(&[none]);
        assert!(p.points.is_empty() && p.jumps.is_empty() && p.devices.is_empty());
    }
}
