//! Manual revocation of one token: the confirmation page and the form.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use serde::Deserialize;

use super::{Chrome, PageResult, chrome, render};
use crate::config::Role;
use crate::web::{Caller, WebError, WebState, require, url_escape};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new().route("/tokens/{token}/revoke", get(confirm).post(revoke))
}

#[derive(Template)]
#[template(path = "confirm_revoke.html")]
struct ConfirmRevoke {
    c: Chrome,
    token_id: String,
    incident: Option<String>,
}

#[derive(Deserialize)]
struct RevokeQuery {
    incident: Option<String>,
}

async fn confirm(
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Query(q): Query<RevokeQuery>,
) -> PageResult {
    require(&caller, Role::Responder)?;
    if let Some(why) = crate::decode::token::invalid_token_id(&token) {
        return Err(WebError::BadRequest(why.into()).into());
    }
    render(&ConfirmRevoke {
        c: chrome(&caller, "incidents", None),
        token_id: token,
        incident: q.incident.filter(|i| !i.is_empty()),
    })
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    reason: String,
    confirm: Option<String>,
    incident: Option<String>,
}

async fn revoke(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
    Form(f): Form<RevokeForm>,
) -> PageResult {
    require(&caller, Role::Responder)?;
    if f.confirm.as_deref() != Some("yes") {
        return Err(
            WebError::BadRequest("tick the confirmation box to revoke the token".into()).into(),
        );
    }
    if let Some(why) = crate::decode::token::invalid_token_id(&token) {
        return Err(WebError::BadRequest(why.into()).into());
    }
    let reason = if f.reason.trim().is_empty() {
        "revoked from the dashboard".to_string()
    } else {
        f.reason.trim().chars().take(500).collect()
    };
    let now = crate::clock::now_ms();
    let who = caller.name.clone();
    let t = token.clone();
    let action = st
        .db(move |s| s.manual_revoke(&t, &who, &reason, now))
        .await?;
    let back = match f.incident.filter(|i| !i.is_empty()) {
        Some(i) => format!(
            "/incidents/{}?done=revocation_queued&action={}",
            url_escape(&i),
            url_escape(&action)
        ),
        None => "/actions".to_string(),
    };
    Ok(Redirect::to(&back).into_response())
}
