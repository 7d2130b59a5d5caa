//! The JSON API behind the pages (same login, or `Authorization: Bearer`
//! with an API key), described in `/api/openapi.json`, and the live feed's
//! event stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::queries::{
    FilterQuery, KINDS, action_state, detector_settings, load_incident, one_of, rule_views,
    set_rule_mode,
};
use super::{ApiError, Caller, WebError, WebState, require, view};
use crate::config::Role;

type ApiResult = Result<Response, ApiError>;

/// The API and the live feed's stream, behind login.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/live/stream", get(stream))
        .route("/api/v1/me", get(me))
        .route("/api/v1/overview", get(overview))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/incidents/{id}/status", post(set_status))
        .route("/api/v1/findings", get(findings))
        .route("/api/v1/actions", get(actions))
        .route("/api/v1/actions/{id}/approve", post(approve))
        .route("/api/v1/actions/{id}/reject", post(reject))
        .route("/api/v1/tokens/{token_id}/revoke", post(revoke))
        .route("/api/v1/fuses/{rule}/reset", post(reset_fuse))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/rules/{name}/mode", post(rule_mode))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/denylist/{token_id}", get(denylist))
}

pub async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../../assets/openapi.json"),
    )
        .into_response()
}

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, WebError> {
    q.map(|Query(t)| t)
        .map_err(|e| WebError::BadRequest(format!("bad query: {}", e.body_text())))
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, WebError> {
    b.map(|Json(t)| t)
        .map_err(|e| WebError::BadRequest(format!("bad JSON body: {}", e.body_text())))
}

/// The API is strict where the pages' forms are lenient: an empty value
/// for a parameter with a fixed set of values (or a time) is an error,
/// not "any".
fn no_empty(raw: &Option<String>, names: &[&str]) -> Result<(), WebError> {
    let Some(raw) = raw else { return Ok(()) };
    for pair in raw.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if v.is_empty() && names.contains(&k) {
            return Err(WebError::BadRequest(format!(
                "`{k}` is empty: leave it out for any value"
            )));
        }
    }
    Ok(())
}

fn page_of(page: Option<u32>, per_page: Option<u32>) -> Result<(u32, u32), WebError> {
    let per = per_page.unwrap_or(50);
    let page = page.unwrap_or(1);
    if !(1..=500).contains(&per) {
        return Err(WebError::BadRequest(
            "`per_page` must be between 1 and 500".into(),
        ));
    }
    if !(1..=100_000).contains(&page) {
        return Err(WebError::BadRequest(
            "`page` must be between 1 and 100000".into(),
        ));
    }
    Ok((page, per))
}

async fn me(Extension(caller): Extension<Caller>) -> ApiResult {
    ok(json!({"name": caller.name, "role": caller.role.as_str()}))
}

async fn overview(State(st): State<WebState>) -> ApiResult {
    let o = st.overview().await?;
    let (backlog, endpoints, fuses) = st
        .db(|s| Ok((s.outbox_backlog()?, s.endpoints()?, s.fuses()?)))
        .await?;
    let rates: Vec<Value> = st
        .rates()
        .into_iter()
        .map(|(t, r)| json!({"at_ms": t, "events_per_second": r}))
        .collect();
    ok(json!({
        "events_total": st.health.live.events(),
        "events_per_second": rates,
        "findings_total": o.findings_total,
        "incidents_open": o.incidents_open,
        "awaiting_approval": o.awaiting_approval,
        "open_by_severity": o.open_by_severity.iter().map(|(s, n)| json!({"severity": s, "count": n})).collect::<Vec<_>>(),
        "hours": o.hours,
        "top": {
            "tokens": pairs(&o.top_tokens),
            "subjects": pairs(&o.top_subjects),
            "client_ids": pairs(&o.top_clients),
            "asns": pairs(&o.top_asns),
        },
        "health": {
            "kafka_ready": st.health.is_ready(),
            "kafka_error": st.health.last_error(),
            "consumer_lag": st.health.live.lag(),
            "outbox_backlog": backlog,
            "endpoints": endpoints,
            "fuses": fuses.iter().map(|(r, at)| json!({"rule": r, "tripped_ms": at})).collect::<Vec<_>>(),
        },
    }))
}

fn pairs(v: &[(String, i64)]) -> Vec<Value> {
    v.iter()
        .map(|(k, n)| json!({"key": k, "findings": n}))
        .collect()
}

async fn incidents(
    State(st): State<WebState>,
    RawQuery(raw): RawQuery,
    q: Result<Query<FilterQuery>, QueryRejection>,
) -> ApiResult {
    no_empty(&raw, &["kind", "severity", "status", "from", "to"])?;
    let q = query(q)?;
    let (filter, page, per_page) = q.filter()?;
    let (rows, total) = st.db(move |s| s.incidents(&filter)).await?;
    ok(json!({"page": page, "per_page": per_page, "total": total, "items": rows}))
}

async fn incident(State(st): State<WebState>, Path(id): Path<String>) -> ApiResult {
    let d = load_incident(&st, id).await?;
    let pic = view::picture(&d.findings);
    ok(json!({
        "incident": d.row,
        "findings": d.findings,
        "actions": d.actions,
        "deliveries": d.deliveries,
        "map": {"points": pic.points, "jumps": pic.jumps},
        "devices": pic.devices,
        "timeline": {"token_id": pic.timeline_token, "minutes": pic.minutes},
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: String,
    #[serde(default)]
    note: String,
}

async fn set_status(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    b: Result<Json<StatusBody>, JsonRejection>,
) -> ApiResult {
    require(&caller, Role::Responder)?;
    let b = body(b)?;
    if !crate::store::STATUSES.contains(&b.status.as_str()) || b.status == "open" {
        return Err(WebError::BadRequest(
            "`status` must be acknowledged, resolved or false_positive".into(),
        )
        .into());
    }
    let now = crate::clock::now_ms();
    let (who, iid, status) = (caller.name.clone(), id.clone(), b.status.clone());
    let found = st
        .db(move |s| {
            let known = s.set_status(&iid, &status, &who, &b.note, now)?;
            if known && status != "acknowledged" {
                s.resolve(&iid, &who, now)?;
            }
            Ok(known)
        })
        .await?;
    if !found {
        return Err(WebError::NotFound(format!("no incident `{id}`")).into());
    }
    ok(json!({"incident_id": id, "status": b.status}))
}

#[derive(Deserialize)]
struct FindingsQuery {
    kind: Option<String>,
    token_id: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

async fn findings(
    State(st): State<WebState>,
    RawQuery(raw): RawQuery,
    q: Result<Query<FindingsQuery>, QueryRejection>,
) -> ApiResult {
    no_empty(&raw, &["kind"])?;
    let q = query(q)?;
    let (page, per) = page_of(q.page, q.per_page)?;
    let kind = one_of("kind", q.kind.filter(|k| !k.is_empty()), &KINDS)?;
    let token = q.token_id.filter(|t| !t.is_empty());
    let (items, total) = st
        .db(move |s| s.findings_page(kind.as_deref(), token.as_deref(), (page - 1) * per, per))
        .await?;
    ok(json!({"page": page, "per_page": per, "total": total, "items": items}))
}

#[derive(Deserialize)]
struct ActionsQuery {
    state: Option<String>,
    incident_id: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

async fn actions(
    State(st): State<WebState>,
    RawQuery(raw): RawQuery,
    q: Result<Query<ActionsQuery>, QueryRejection>,
) -> ApiResult {
    no_empty(&raw, &["state"])?;
    let q = query(q)?;
    let (page, per) = page_of(q.page, q.per_page)?;
    let state = action_state(q.state.filter(|k| !k.is_empty()))?;
    let inc = q.incident_id.filter(|t| !t.is_empty());
    let (items, total) = st
        .db(move |s| s.actions_page(inc.as_deref(), state, (page - 1) * per, per))
        .await?;
    ok(json!({"page": page, "per_page": per, "total": total, "items": items}))
}

async fn approve(st: State<WebState>, c: Extension<Caller>, p: Path<String>) -> ApiResult {
    decide_approval(st, c, p, true).await
}

async fn reject(st: State<WebState>, c: Extension<Caller>, p: Path<String>) -> ApiResult {
    decide_approval(st, c, p, false).await
}

async fn decide_approval(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    approve: bool,
) -> ApiResult {
    require(&caller, Role::Responder)?;
    let now = crate::clock::now_ms();
    let (who, aid) = (caller.name.clone(), id.clone());
    let done = st
        .db(move |s| {
            if approve {
                s.approve(&aid, &who, now)
            } else {
                s.reject(&aid, &who, now)
            }
        })
        .await?;
    if !done {
        return Err(WebError::NotFound(format!("`{id}` is not waiting for approval")).into());
    }
    ok(json!({"action_id": id, "state": if approve { "pending" } else { "rejected" }}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: String,
    confirm: bool,
}

async fn revoke(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    b: Result<Json<RevokeBody>, JsonRejection>,
) -> ApiResult {
    require(&caller, Role::Responder)?;
    let b = body(b)?;
    if !b.confirm {
        return Err(WebError::BadRequest("set `confirm: true` to revoke".into()).into());
    }
    if let Some(why) = crate::decode::token::invalid_token_id(&token) {
        return Err(WebError::BadRequest(why.into()).into());
    }
    let now = crate::clock::now_ms();
    let (who, t, reason) = (caller.name.clone(), token.clone(), b.reason);
    let id = st
        .db(move |s| s.manual_revoke(&t, &who, &reason, now))
        .await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(json!({"action_id": id, "token_id": token, "state": "pending"})),
    )
        .into_response())
}

async fn reset_fuse(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(rule): Path<String>,
) -> ApiResult {
    require(&caller, Role::Admin)?;
    let now = crate::clock::now_ms();
    let (who, r) = (caller.name.clone(), rule.clone());
    if !st.db(move |s| s.reset_fuse(&r, &who, now)).await? {
        return Err(WebError::NotFound(format!("the fuse `{rule}` is not tripped")).into());
    }
    ok(json!({"rule": rule, "tripped": false}))
}

async fn rules(State(st): State<WebState>) -> ApiResult {
    let (rules, by_kind) = rule_views(&st).await?;
    let detectors: Vec<Value> = detector_settings(&st.cfg)
        .into_iter()
        .map(|(k, on, sev, cd)| {
            let n = by_kind.iter().find(|x| x.0 == k).map(|x| x.1).unwrap_or(0);
            json!({"kind": k, "enabled": on, "severity": sev, "cooldown_secs": cd, "findings_24h": n})
        })
        .collect();
    let rules: Vec<Value> = rules
        .into_iter()
        .map(|r| {
            json!({
                "name": r.name, "scope": r.scope, "actions": r.actions, "mode": r.mode,
                "mode_set_in_dashboard": r.overridden, "budget": r.budget,
                "revoked": r.counts.revoked, "would_have_revoked": r.counts.would_have_revoked,
                "alerts": r.counts.alerts, "awaiting_approval": r.counts.awaiting_approval,
            })
        })
        .collect();
    ok(json!({"dry_run": st.cfg.policy.dry_run, "detectors": detectors, "rules": rules}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: String,
}

async fn rule_mode(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    b: Result<Json<ModeBody>, JsonRejection>,
) -> ApiResult {
    let b = body(b)?;
    set_rule_mode(&st, &caller, &name, &b.mode).await?;
    ok(json!({"rule": name, "mode": b.mode}))
}

#[derive(Deserialize)]
struct AuditQuery {
    q: Option<String>,
    page: Option<u32>,
    per_page: Option<u32>,
}

async fn audit(
    State(st): State<WebState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let (page, per) = page_of(q.page, q.per_page)?;
    let search = q.q.filter(|s| !s.is_empty());
    let (items, total) = st
        .db(move |s| s.audit_page(search.as_deref(), (page - 1) * per, per))
        .await?;
    ok(json!({"page": page, "per_page": per, "total": total, "items": items}))
}

async fn denylist(State(st): State<WebState>, Path(token): Path<String>) -> ApiResult {
    let now = crate::clock::now_ms();
    let until = match &st.deny {
        Some(d) => d.until(&token).filter(|u| *u > now),
        None => {
            let t = token.clone();
            st.db(move |s| {
                Ok(s.denied(now)?
                    .into_iter()
                    .find(|(id, _)| *id == t)
                    .map(|(_, u)| u))
            })
            .await?
        }
    };
    ok(json!({"token_id": token, "denied": until.is_some(), "until_ms": until}))
}

/// The live feed: one SSE event per finding or action (`data` is its JSON),
/// a `stats` event every 2 s, and `lagged` when this browser fell behind
/// and items were skipped.
pub async fn stream(State(st): State<WebState>) -> impl IntoResponse {
    let mut rx = st.health.live.subscribe();
    let hub = st.clone();
    let s = async_stream(move |tx| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let ev = tokio::select! {
                r = rx.recv() => match r {
                    Ok(item) => Event::default().event("item").data(&*item),
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    let rate = hub.rates().last().map(|r| r.1).unwrap_or(0.0);
                    Event::default().event("stats").data(json!({
                        "events_total": hub.health.live.events(),
                        "findings_total": hub.health.live.findings(),
                        "events_per_second": rate,
                        "consumer_lag": hub.health.live.lag(),
                    }).to_string())
                }
            };
            if tx.send(Ok(ev)).await.is_err() {
                break;
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}

/// A stream fed by a task through a small channel (ends when the browser
/// goes away).
fn async_stream<F, Fut>(f: F) -> tokio_stream::wrappers::ReceiverStream<Result<Event, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
