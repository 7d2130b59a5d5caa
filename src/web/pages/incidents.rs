//! The incident list with its filters, and the acts on one incident
//! (acknowledge, resolve, false positive).

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Chrome, PageResult, Pager, chrome, options, pager, render};
use crate::config::Role;
use crate::store::{IncidentRow, SEVERITIES, STATUSES};
use crate::web::queries::{FilterQuery, KINDS};
use crate::web::view::time;
use crate::web::{Caller, WebError, WebState, require, url_escape};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new()
        .route("/incidents", get(page))
        .route("/incidents/{id}/{act}", post(act))
}

pub struct IncidentLine {
    pub id: String,
    pub last: String,
    pub severity: String,
    pub status: String,
    pub kinds: Vec<String>,
    pub subject: Option<String>,
    pub token_id: Option<String>,
    pub client_id: Option<String>,
    pub findings: u32,
    pub revoked: bool,
}

impl From<IncidentRow> for IncidentLine {
    fn from(i: IncidentRow) -> IncidentLine {
        IncidentLine {
            last: time(i.last_ts),
            id: i.id,
            severity: i.severity,
            status: i.status,
            kinds: i.kinds,
            subject: i.subject,
            token_id: i.token_id,
            client_id: i.client_id,
            findings: i.findings,
            revoked: i.revoked,
        }
    }
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct Incidents {
    c: Chrome,
    f: FilterQuery,
    rows: Vec<IncidentLine>,
    total: i64,
    pager: Pager,
    kinds: Vec<(&'static str, bool)>,
    severities: Vec<(&'static str, bool)>,
    statuses: Vec<(&'static str, bool)>,
}

async fn page(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<FilterQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(|e| WebError::BadRequest(format!("bad filter: {e}")))?;
    let (filter, page, per_page) = q.filter()?;
    let (rows, total) = st.db(move |s| s.incidents(&filter)).await?;
    let pager = pager("/incidents", page, per_page, total, |p| q.link(p));
    render(&Incidents {
        c: chrome(&caller, "incidents", None),
        rows: rows.into_iter().map(IncidentLine::from).collect(),
        total,
        pager,
        kinds: options(&KINDS, &q.kind),
        severities: options(&SEVERITIES, &q.severity),
        statuses: options(&STATUSES, &q.status),
        f: q,
    })
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    note: String,
}

async fn act(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((id, act)): Path<(String, String)>,
    Form(form): Form<ActForm>,
) -> PageResult {
    require(&caller, Role::Responder)?;
    let now = crate::clock::now_ms();
    let who = caller.name.clone();
    let (iid, note) = (id.clone(), form.note.clone());
    let (found, query) = match act.as_str() {
        "acknowledge" => (
            st.db(move |s| s.set_status(&iid, "acknowledged", &who, &note, now))
                .await?,
            "done=acknowledged".to_string(),
        ),
        "resolve" => (
            st.db(move |s| {
                let known = s.set_status(&iid, "resolved", &who, &note, now)?;
                s.resolve(&iid, &who, now)?;
                Ok(known)
            })
            .await?,
            "done=resolved".to_string(),
        ),
        "false-positive" => (
            st.db(move |s| {
                let known = s.set_status(&iid, "false_positive", &who, &note, now)?;
                s.resolve(&iid, &who, now)?;
                Ok(known)
            })
            .await?,
            "fp=1&done=false_positive".to_string(),
        ),
        other => {
            return Err(WebError::NotFound(format!("no action `{other}` on incidents")).into());
        }
    };
    if !found {
        return Err(WebError::NotFound(format!("no incident `{id}`")).into());
    }
    Ok(Redirect::to(&format!("/incidents/{}?{query}", url_escape(&id))).into_response())
}
