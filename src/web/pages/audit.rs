//! The audit log, searchable and paged.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Query, State};
use axum::routing::get;
use serde::Deserialize;

use super::{Chrome, PageResult, Pager, chrome, pager, render, wall};
use crate::store::AuditRow;
use crate::web::queries::opt;
use crate::web::{Caller, WebError, WebState, url_escape};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new().route("/audit", get(page))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct Audit {
    c: Chrome,
    q: String,
    rows: Vec<(AuditRow, String)>,
    total: i64,
    pager: Pager,
}

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    q: String,
    page: Option<u32>,
}

async fn page(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(|e| WebError::BadRequest(format!("bad query: {e}")))?;
    let page = q.page.unwrap_or(1).max(1);
    let per = 100u32;
    let search = opt(&q.q);
    let (rows, total) = st
        .db(move |s| s.audit_page(search.as_deref(), (page - 1) * per, per))
        .await?;
    let qq = q.q.clone();
    let pager = pager("/audit", page, per, total, |p| {
        format!("page={p}&q={}", url_escape(&qq))
    });
    render(&Audit {
        c: chrome(&caller, "audit", None),
        q: q.q,
        rows: rows
            .into_iter()
            .map(|r| {
                let t = wall(r.at_ms);
                (r, t)
            })
            .collect(),
        total,
        pager,
    })
}
