//! The detectors and the policy's rules with their modes and counts, the
//! effective configuration (secrets redacted) and the mode switch.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Form, Path, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{Chrome, PageResult, chrome, render};
use crate::config::Role;
use crate::web::queries::{RuleView, detector_settings, rule_views, set_rule_mode};
use crate::web::{Caller, WebState};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new()
        .route("/rules", get(page))
        .route("/rules/{name}/mode", post(mode))
}

#[derive(Template)]
#[template(path = "rules.html")]
struct Rules {
    c: Chrome,
    is_admin: bool,
    dry_run: bool,
    detectors: Vec<(String, bool, String, u64, i64)>,
    rules: Vec<RuleView>,
    effective: String,
}

async fn page(State(st): State<WebState>, Extension(caller): Extension<Caller>) -> PageResult {
    let (rules, by_kind) = rule_views(&st).await?;
    let detectors = detector_settings(&st.cfg)
        .into_iter()
        .map(|(k, on, sev, cd)| {
            let n = by_kind.iter().find(|x| x.0 == k).map(|x| x.1).unwrap_or(0);
            (k, on, sev, cd, n)
        })
        .collect();
    let cfg = &st.cfg;
    // Never a secret on a page, whatever the role: how each is set, only.
    let effective = format!(
        "detectors = {:#?}\n\nallow = {:#?}\n\npolicy = {:#?}\n\n[response]\n{}",
        cfg.detectors,
        cfg.allow,
        cfg.policy,
        crate::config::secrets::redacted_response(cfg)
    );
    render(&Rules {
        c: chrome(&caller, "rules", None),
        is_admin: caller.can(Role::Admin),
        dry_run: cfg.policy.dry_run,
        detectors,
        rules,
        effective,
    })
}

#[derive(Deserialize)]
struct ModeForm {
    mode: String,
}

async fn mode(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(f): Form<ModeForm>,
) -> PageResult {
    set_rule_mode(&st, &caller, &name, &f.mode).await?;
    Ok(Redirect::to("/rules").into_response())
}
