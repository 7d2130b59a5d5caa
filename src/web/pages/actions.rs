//! The actions: those waiting for approval, the tripped fuses, the
//! endpoints' breakers and the recent actions; approve, reject, reset a
//! fuse.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Chrome, PageResult, Pager, chrome, options, pager, render, wall};
use crate::config::Role;
use crate::decide::ActionStatus;
use crate::store::{ActionView, EndpointState};
use crate::web::queries::{ACTION_STATES, action_state, opt};
use crate::web::{Caller, WebError, WebState, require, url_escape};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new()
        .route("/actions", get(page))
        .route("/actions/{id}/{act}", post(act))
        .route("/fuses/{rule}/reset", post(reset_fuse))
}

#[derive(Template)]
#[template(path = "actions.html")]
struct Actions {
    c: Chrome,
    can_act: bool,
    is_admin: bool,
    waiting: Vec<ActionView>,
    fuses: Vec<(String, String)>,
    endpoints: Vec<EndpointState>,
    recent: Vec<(ActionView, String)>,
    states: Vec<(&'static str, bool)>,
    pager: Pager,
}

#[derive(Deserialize, Default)]
struct ActionsQuery {
    #[serde(default)]
    state: String,
    page: Option<u32>,
}

async fn page(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ActionsQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(|e| WebError::BadRequest(format!("bad filter: {e}")))?;
    let state = action_state(opt(&q.state))?;
    let page = q.page.unwrap_or(1).max(1);
    let per = 50u32;
    let (waiting, fuses, endpoints, (recent, total)) = st
        .db(move |s| {
            Ok((
                s.actions_page(None, Some(ActionStatus::AwaitingApproval), 0, 200)?
                    .0,
                s.fuses()?,
                s.endpoints()?,
                s.actions_page(None, state, (page - 1) * per, per)?,
            ))
        })
        .await?;
    let state_s = state.map(ActionStatus::as_str).unwrap_or_default();
    let pager = pager("/actions", page, per, total, |p| {
        format!("page={p}&state={}", url_escape(state_s))
    });
    render(&Actions {
        c: chrome(&caller, "actions", None),
        can_act: caller.can(Role::Responder),
        is_admin: caller.can(Role::Admin),
        waiting,
        fuses: fuses.into_iter().map(|(r, at)| (r, wall(at))).collect(),
        endpoints,
        recent: recent
            .into_iter()
            .map(|a| {
                let t = wall(a.created_ms);
                (a, t)
            })
            .collect(),
        states: options(&ACTION_STATES, state_s),
        pager,
    })
}

async fn act(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path((id, act)): Path<(String, String)>,
) -> PageResult {
    require(&caller, Role::Responder)?;
    let now = crate::clock::now_ms();
    let who = caller.name.clone();
    let aid = id.clone();
    let done = match act.as_str() {
        "approve" => st.db(move |s| s.approve(&aid, &who, now)).await?,
        "reject" => st.db(move |s| s.reject(&aid, &who, now)).await?,
        other => return Err(WebError::NotFound(format!("no action `{other}`")).into()),
    };
    if !done {
        return Err(WebError::NotFound(format!("`{id}` is not waiting for approval")).into());
    }
    Ok(Redirect::to("/actions").into_response())
}

async fn reset_fuse(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(rule): Path<String>,
) -> PageResult {
    require(&caller, Role::Admin)?;
    let now = crate::clock::now_ms();
    let who = caller.name.clone();
    let r = rule.clone();
    if !st.db(move |s| s.reset_fuse(&r, &who, now)).await? {
        return Err(WebError::NotFound(format!("the fuse `{rule}` is not tripped")).into());
    }
    Ok(Redirect::to("/actions").into_response())
}
