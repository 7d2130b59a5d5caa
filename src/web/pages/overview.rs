//! The overview: event rate, findings and incidents per hour, open
//! incidents by severity, breakers, fuses and the top talkers.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, State};
use axum::routing::get;

use super::{Chrome, PageResult, chrome, render, wall};
use crate::store::{EndpointState, SEVERITIES};
use crate::web::view::time;
use crate::web::{Caller, WebError, WebState};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(page))
        .route("/partials/overview", get(partial))
}

pub struct HourBar {
    pub x: f64,
    pub y: f64,
    pub h: f64,
    pub x2: f64,
    pub y2: f64,
    pub h2: f64,
    pub findings: i64,
    pub incidents: i64,
    pub label: String,
}

pub struct OverviewView {
    pub eps: String,
    pub events_total: u64,
    pub eps_line: String,
    pub eps_max: String,
    pub incidents_open: i64,
    pub findings_total: i64,
    pub awaiting: i64,
    pub lag: i64,
    pub backlog: i64,
    pub rejected: u64,
    pub hour_bars: Vec<HourBar>,
    pub hour_max: i64,
    pub series_end: String,
    pub by_severity: Vec<(String, i64, i64)>,
    pub ready: bool,
    pub kafka_error: Option<String>,
    pub listeners: usize,
    pub breakers: Vec<(String, String, String)>,
    pub fuses: Vec<(String, String)>,
    pub top_tokens: Vec<(String, i64)>,
    pub top_subjects: Vec<(String, i64)>,
    pub top_clients: Vec<(String, i64)>,
    pub top_asns: Vec<(String, i64)>,
}

async fn overview_view(st: &WebState) -> Result<OverviewView, WebError> {
    let o = st.overview().await?;
    let (backlog, endpoints, fuses) = st
        .db(|s| Ok((s.outbox_backlog()?, s.endpoints()?, s.fuses()?)))
        .await?;
    let rates = st.rates();
    let max = rates.iter().map(|r| r.1).fold(1.0f64, f64::max);
    let n = rates.len().max(2) as f64 - 1.0;
    let eps_line = rates
        .iter()
        .enumerate()
        .map(|(i, (_, r))| format!("{:.1},{:.1}", i as f64 * 600.0 / n, 118.0 - r / max * 105.0))
        .collect::<Vec<_>>()
        .join(" ");
    let hour_max = o
        .hours
        .iter()
        .map(|h| h.findings.max(h.incidents))
        .max()
        .unwrap_or(0)
        .max(1);
    let hour_bars = o
        .hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let hf = h.findings as f64 / hour_max as f64 * 105.0;
            let hi = h.incidents as f64 / hour_max as f64 * 105.0;
            HourBar {
                x: i as f64 * 25.0,
                y: 119.0 - hf,
                h: hf,
                x2: i as f64 * 25.0 + 11.0,
                y2: 119.0 - hi,
                h2: hi,
                findings: h.findings,
                incidents: h.incidents,
                label: time(h.ts)[..16].to_string(),
            }
        })
        .collect();
    let open_max = o
        .open_by_severity
        .iter()
        .map(|x| x.1)
        .max()
        .unwrap_or(1)
        .max(1);
    let by_severity = SEVERITIES
        .iter()
        .rev()
        .map(|s| {
            let n = o
                .open_by_severity
                .iter()
                .find(|x| x.0 == *s)
                .map(|x| x.1)
                .unwrap_or(0);
            (s.to_string(), n, (n * 10 / open_max).clamp(0, 10))
        })
        .collect();
    Ok(OverviewView {
        eps: format!("{:.0}", rates.last().map(|r| r.1).unwrap_or(0.0)),
        events_total: st.health.live.events(),
        eps_line,
        eps_max: format!("{max:.0}"),
        incidents_open: o.incidents_open,
        findings_total: o.findings_total,
        awaiting: o.awaiting_approval,
        lag: st.health.live.lag(),
        rejected: st.health.live.rejected(),
        backlog,
        hour_bars,
        hour_max,
        series_end: if o.now_ts > 0 {
            time(o.now_ts)
        } else {
            "now".into()
        },
        by_severity,
        ready: st.health.is_ready(),
        kafka_error: st.health.last_error(),
        listeners: st.health.live.listeners(),
        breakers: endpoints
            .into_iter()
            .map(|e: EndpointState| (e.name, e.state, e.last_error.unwrap_or_default()))
            .collect(),
        fuses: fuses.into_iter().map(|(r, at)| (r, wall(at))).collect(),
        top_tokens: o.top_tokens.clone(),
        top_subjects: o.top_subjects.clone(),
        top_clients: o.top_clients.clone(),
        top_asns: o.top_asns.clone(),
    })
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    c: Chrome,
    o: OverviewView,
}

#[derive(Template)]
#[template(path = "overview_body.html")]
struct OverviewBody {
    o: OverviewView,
}

async fn page(State(st): State<WebState>, Extension(caller): Extension<Caller>) -> PageResult {
    let o = overview_view(&st).await?;
    render(&Overview {
        c: chrome(&caller, "overview", None),
        o,
    })
}

async fn partial(State(st): State<WebState>) -> PageResult {
    render(&OverviewBody {
        o: overview_view(&st).await?,
    })
}
