//! The server-rendered pages and the forms behind the buttons, one file per
//! page; this file holds their frame (`Chrome`), rendering, paging and the
//! routes. What the JSON API shares with the pages is in `web::queries`.

mod actions;
mod audit;
mod incident;
mod incidents;
mod live;
mod login;
mod overview;
mod revoke;
mod rules;

use askama::Template;
use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::view::time;
use super::{Caller, PageError, WebError, WebState};

/// The world's land masses, the incident map's background.
pub const LAND: &str = include_str!("../../../assets/world-land.path");

pub(super) type PageResult = Result<Response, PageError>;

/// What every page's frame shows.
pub struct Chrome {
    pub page: &'static str,
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub nav: Vec<(&'static str, &'static str, bool)>,
    pub flash: Option<String>,
    pub version: &'static str,
}

pub(super) fn chrome(caller: &Caller, page: &'static str, flash: Option<String>) -> Chrome {
    Chrome {
        page,
        user: caller.name.clone(),
        role: caller.role.as_str(),
        csrf: caller.csrf.clone().unwrap_or_default(),
        nav: [
            ("/", "Overview", "overview"),
            ("/live", "Live", "live"),
            ("/incidents", "Incidents", "incidents"),
            ("/actions", "Actions", "actions"),
            ("/rules", "Rules", "rules"),
            ("/audit", "Audit", "audit"),
        ]
        .into_iter()
        .map(|(h, l, k)| (h, l, k == page))
        .collect(),
        flash,
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// `<option>`s with the current one selected.
pub(super) fn options(all: &[&'static str], current: &str) -> Vec<(&'static str, bool)> {
    all.iter().map(|o| (*o, *o == current)).collect()
}

pub(super) fn render(t: &impl Template) -> PageResult {
    t.render()
        .map(|h| Html(h).into_response())
        .map_err(|e| PageError(WebError::Internal(format!("template: {e}"))))
}

pub fn error_page(status: StatusCode, message: &str) -> Response {
    #[derive(Template)]
    #[template(path = "error.html")]
    struct E<'a> {
        status: String,
        message: &'a str,
    }
    let body = E {
        status: status.to_string(),
        message,
    }
    .render()
    .unwrap_or_else(|_| message.to_string());
    (status, Html(body)).into_response()
}

/// Pages and forms behind login.
pub fn routes() -> Router<WebState> {
    Router::new()
        .merge(overview::routes())
        .merge(live::routes())
        .merge(incidents::routes())
        .merge(incident::routes())
        .merge(revoke::routes())
        .merge(actions::routes())
        .merge(rules::routes())
        .merge(audit::routes())
        .merge(login::routes())
}

/// The login form and static assets (single sign-on has its own routes,
/// in `oidc`).
pub fn public_routes() -> Router<WebState> {
    Router::new()
        .merge(login::public_routes())
        .route("/assets/{file}", get(asset))
        .route(
            "/favicon.ico",
            get(|| async { asset(Path("favicon.svg".to_string())).await }),
        )
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty): (&'static [u8], &str) = match file.as_str() {
        "app.css" => (include_bytes!("../../../assets/app.css"), "text/css"),
        "app.js" => (include_bytes!("../../../assets/app.js"), "text/javascript"),
        "favicon.svg" => (
            include_bytes!("../../../assets/favicon.svg"),
            "image/svg+xml",
        ),
        _ => return error_page(StatusCode::NOT_FOUND, "no such asset"),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

pub(super) fn wall(ms: i64) -> String {
    time(ms)
}

pub struct Pager {
    pub page: u32,
    pub pages: u32,
    pub prev: Option<String>,
    pub next: Option<String>,
}

pub(super) fn pager(
    base: &str,
    page: u32,
    per_page: u32,
    total: i64,
    link: impl Fn(u32) -> String,
) -> Pager {
    let pages = ((total.max(0) as u64).div_ceil(u64::from(per_page)) as u32).max(1);
    Pager {
        page,
        pages,
        prev: (page > 1).then(|| format!("{base}?{}", link(page - 1))),
        next: (page < pages).then(|| format!("{base}?{}", link(page + 1))),
    }
}
