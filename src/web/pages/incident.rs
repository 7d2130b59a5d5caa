//! One incident: its map of places and jumps, the request timeline, the
//! devices, the findings with their evidence and the actions taken.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::routing::get;
use serde::Deserialize;

use super::{Chrome, LAND, PageResult, chrome, render};
use crate::config::Role;
use crate::store::{ActionView, DeliveryStatus, FindingRecord, IncidentRow};
use crate::web::queries::{IncidentData, load_incident};
use crate::web::view::{self, time};
use crate::web::{Caller, WebState};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new().route("/incidents/{id}", get(page))
}

pub struct FindingView {
    pub time: String,
    pub kind: String,
    pub severity: String,
    pub score: String,
    pub mode: String,
    pub token_id: String,
    pub summary: String,
    pub evidence: Vec<(String, String)>,
    pub route: String,
    pub client_ip: String,
    pub asn: String,
    pub network: String,
    pub place: String,
    pub user_agent: String,
    pub window: String,
}

fn finding_view(f: &FindingRecord) -> FindingView {
    FindingView {
        time: f.event_time.replace('T', " "),
        kind: f.kind.clone(),
        severity: f.severity.clone(),
        score: f.score.to_string(),
        mode: f.mode.clone(),
        token_id: f.token_id.clone(),
        summary: f.summary.clone(),
        evidence: view::evidence_pairs(&f.evidence),
        route: f.route.clone(),
        client_ip: f.client_ip.clone(),
        asn: f.asn.to_string(),
        network: f.network.clone(),
        place: f.place(),
        user_agent: f.user_agent.clone(),
        window: format!(
            "{} → {}",
            f.evidence_first.replace('T', " "),
            f.evidence_last.replace('T', " ")
        ),
    }
}

pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub label: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    c: Chrome,
    i: IncidentRow,
    opened: String,
    last: String,
    can_act: bool,
    tokens: Vec<String>,
    suggestion: Option<String>,
    land: &'static str,
    view_box: String,
    /// Sizes of dots and labels at the map's zoom.
    dot: String,
    font: String,
    pic: view::Picture,
    jump_labels: Vec<(view::Jump, String, String)>,
    places: Vec<(usize, view::MapPoint, String, String)>,
    bars: Vec<Bar>,
    bar_max: u32,
    bar_from: String,
    bar_to: String,
    markers: Vec<(f64, String)>,
    devices: Vec<(view::Device, String, String)>,
    findings: Vec<FindingView>,
    actions: Vec<(ActionView, Vec<DeliveryStatus>)>,
}

/// An allow-list entry matching an incident, for a false positive.
fn allow_suggestion(d: &IncidentData) -> String {
    let mut lines = vec!["[allow]".to_string()];
    if let Some(s) = &d.row.subject {
        lines.push(format!("subjects = [{s:?}]    # this user"));
    }
    if let Some(c) = &d.row.client_id {
        lines.push(format!("# client_ids = [{c:?}]    # or the whole client"));
    }
    let asns: std::collections::BTreeSet<u32> = d
        .findings
        .iter()
        .map(|f| f.asn)
        .filter(|a| *a > 0)
        .collect();
    if !asns.is_empty() {
        lines.push(format!(
            "# asns = [{}]    # or the networks it came from",
            asns.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    lines.join("\n")
}

#[derive(Deserialize, Default)]
struct IncidentQuery {
    fp: Option<String>,
    done: Option<String>,
    /// With `done=revocation_queued`: the action's id (shown only if it
    /// looks like one).
    action: Option<String>,
}

async fn page(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<IncidentQuery>,
) -> PageResult {
    let d = load_incident(&st, id).await?;
    let pic = view::picture(&d.findings);
    let jump_labels = pic
        .jumps
        .iter()
        .map(|j| {
            let (short, long) = match j.kmh {
                Some(v) => (
                    format!("{:.0} km · {v:.0} km/h", j.km),
                    format!("{:.0} km in {:.2} h = {v:.0} km/h{}", j.km, j.hours, if j.impossible { ": faster than an airliner (900 km/h)" } else { "" }),
                ),
                None => (
                    format!("{:.0} km · simultaneous", j.km),
                    format!("{:.0} km apart, in use at both places at the same time: impossible for one holder", j.km),
                ),
            };
            (j.clone(), short, long)
        })
        .collect();
    let (vx, vy, vw, vh) = view::map_view(&pic.points);
    let places = pic
        .points
        .iter()
        .enumerate()
        .map(|(n, p)| (n + 1, p.clone(), time(p.first), time(p.last)))
        .collect();
    let (bars, bar_max, bar_from, bar_to, markers) = timeline(&pic.minutes, &d.findings);
    let devices = pic
        .devices
        .iter()
        .map(|x| (x.clone(), time(x.first), time(x.last)))
        .collect();
    let mut tokens: Vec<String> = d
        .findings
        .iter()
        .map(|f| f.token_id.clone())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.sort();
    tokens.dedup();
    let suggestion = q.fp.is_some().then(|| allow_suggestion(&d));
    let action_id = q.action.as_deref().filter(|a| {
        !a.is_empty()
            && a.len() <= 64
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let flash = match (q.done.as_deref(), action_id) {
        (Some("revocation_queued"), Some(a)) => Some(format!("Revocation {a} queued.")),
        (d, _) => d.and_then(flash_message).map(str::to_string),
    };
    let actions = d
        .actions
        .iter()
        .map(|a| {
            let ds = d
                .deliveries
                .iter()
                .filter(|x| x.action_id == a.id)
                .cloned()
                .collect();
            (a.clone(), ds)
        })
        .collect();
    render(&IncidentPage {
        c: chrome(&caller, "incidents", flash),
        opened: time(d.row.opened_ts),
        last: time(d.row.last_ts),
        can_act: caller.can(Role::Responder),
        tokens,
        suggestion,
        land: LAND,
        view_box: format!("{vx:.1} {vy:.1} {vw:.1} {vh:.1}"),
        dot: format!("{:.2}", 4.0 * vw / 720.0),
        font: format!("{:.2}", 11.0 * vw / 720.0),
        jump_labels,
        places,
        bars,
        bar_max,
        bar_from,
        bar_to,
        markers,
        devices,
        findings: d.findings.iter().map(finding_view).collect(),
        actions,
        pic,
        i: d.row,
    })
}

type Timeline = (Vec<Bar>, u32, String, String, Vec<(f64, String)>);

fn timeline(
    minutes: &[crate::detect::context::ContextMinute],
    findings: &[FindingRecord],
) -> Timeline {
    let (Some(first), Some(last)) = (minutes.first(), minutes.last()) else {
        return (Vec::new(), 0, String::new(), String::new(), Vec::new());
    };
    let (t0, t1) = (first.ts, last.ts + 60_000);
    let span = (t1 - t0).max(60_000) as f64;
    let max = minutes.iter().map(|m| m.requests).max().unwrap_or(1).max(1);
    let w = (600.0 * 60_000.0 / span).clamp(1.0, 40.0);
    let bars = minutes
        .iter()
        .map(|m| {
            let h = f64::from(m.requests) / f64::from(max) * 125.0;
            Bar {
                x: (m.ts - t0) as f64 / span * 600.0,
                y: 139.0 - h,
                w: (w - 0.5).max(0.8),
                h,
                label: format!(
                    "{}: {} requests, {} KiB, {} errors{}",
                    &time(m.ts)[..16],
                    m.requests,
                    m.kib,
                    m.errors,
                    if m.max_page > 0 {
                        format!(", page {}", m.max_page)
                    } else {
                        String::new()
                    }
                ),
            }
        })
        .collect();
    let markers = findings
        .iter()
        .filter_map(|f| {
            let ts = f.event_ts;
            (ts >= t0 && ts <= t1).then(|| {
                (
                    ((ts - t0) as f64 / span * 600.0).min(599.0),
                    format!("{} {}", f.kind, f.event_time),
                )
            })
        })
        .collect();
    (
        bars,
        max,
        time(t0)[..16].to_string(),
        time(t1)[..16].to_string(),
        markers,
    )
}

/// The fixed messages a page may show after an act (`?done=`): the query
/// names one, it never supplies text.
fn flash_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "acknowledged" => "Acknowledged.",
        "resolved" => "Resolved.",
        "false_positive" => "Marked as a false positive and resolved.",
        "revocation_queued" => "Revocation queued.",
        _ => return None,
    })
}
