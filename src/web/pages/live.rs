//! The live feed page (its event stream is `api::stream`).

use askama::Template;
use axum::Router;
use axum::extract::Extension;
use axum::routing::get;

use super::{Chrome, PageResult, chrome, render};
use crate::store::SEVERITIES;
use crate::web::queries::KINDS;
use crate::web::{Caller, WebState};

/// The page's routes (behind login).
pub(super) fn routes() -> Router<WebState> {
    Router::new().route("/live", get(page))
}

#[derive(Template)]
#[template(path = "live.html")]
struct Live {
    c: Chrome,
    kinds: &'static [&'static str],
    severities: &'static [&'static str],
}

async fn page(Extension(caller): Extension<Caller>) -> PageResult {
    render(&Live {
        c: chrome(&caller, "live", None),
        kinds: &KINDS,
        severities: &SEVERITIES,
    })
}
