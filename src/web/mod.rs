//! The dashboard: server-rendered pages (askama), a JSON API with its
//! OpenAPI description, the live feed (server-sent events) and, unless
//! turned off, `/metrics`, `/healthz` and `/readyz`.
//!
//! Architecture Invariant: every route except the login page, static
//! assets, the OpenAPI description and the ops endpoints goes through
//! [`authenticate`]; every state-changing request with a session cookie
//! carries the session's CSRF token and comes from this origin.
//!
//! Architecture Invariant: the web layer reads and writes only through the
//! store (its own connections) and the live hub; it never touches the
//! processing thread's state. People's acts reach the policy as store
//! commands, exactly like `tokenwatch act`.

mod api;
pub mod auth;
mod limit;
mod oidc;
mod pages;
mod queries;
mod view;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::{Config, Role};
use crate::health::Health;
use crate::store::{Store, StoreError};
pub use auth::{Auth, Caller};

/// Shared by every request.
#[derive(Clone)]
pub struct WebState(Arc<Inner>);

pub struct Inner {
    pub cfg: Arc<Config>,
    pub auth: Auth,
    store_path: std::path::PathBuf,
    pool: Mutex<Vec<Store>>,
    pub health: Arc<Health>,
    pub prometheus: Option<PrometheusHandle>,
    pub deny: Option<Arc<crate::act::DenyList>>,
    oidc: Option<oidc::Oidc>,
    /// (wall ms, events processed): samples for the events/s chart.
    rates: Mutex<std::collections::VecDeque<(i64, u64)>>,
    overview_cache: Mutex<Option<(i64, Arc<crate::store::Overview>)>>,
}

impl std::ops::Deref for WebState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl WebState {
    pub fn new(
        cfg: Arc<Config>,
        auth: Auth,
        health: Arc<Health>,
        prometheus: Option<PrometheusHandle>,
        deny: Option<Arc<crate::act::DenyList>>,
    ) -> Result<WebState, String> {
        let oidc = cfg
            .dashboard
            .oidc
            .as_ref()
            .map(oidc::Oidc::new)
            .transpose()?;
        Ok(WebState(Arc::new(Inner {
            oidc,
            store_path: cfg.store.path.clone(),
            cfg,
            auth,
            pool: Mutex::new(Vec::new()),
            health,
            prometheus,
            deny,
            rates: Mutex::new(Default::default()),
            overview_cache: Mutex::new(None),
        })))
    }

    /// The single sign-on button's text, when it is configured.
    pub fn sso_label(&self) -> Option<String> {
        self.oidc.as_ref().map(|o| o.label().to_string())
    }

    /// Run `f` on a store connection, off the async threads.
    pub async fn db<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, WebError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = me.pool.lock().ok().and_then(|mut p| p.pop());
            let mut store = match pooled {
                Some(s) => s,
                None => Store::open(&me.store_path)?,
            };
            let out = f(&mut store);
            if let Ok(mut p) = me.pool.lock()
                && p.len() < 8
            {
                p.push(store);
            }
            out
        })
        .await
        .map_err(|e| WebError::Internal(format!("store task: {e}")))?
        .map_err(|e| WebError::Internal(e.to_string()))
    }

    /// The overview's store part, computed at most every 2 s however many
    /// browsers ask.
    pub async fn overview(&self) -> Result<Arc<crate::store::Overview>, WebError> {
        let now = crate::clock::now_ms();
        if let Ok(c) = self.overview_cache.lock()
            && let Some((at, o)) = c.as_ref()
            && now - at < 2_000
        {
            return Ok(o.clone());
        }
        let o = Arc::new(self.db(|s| s.overview()).await?);
        if let Ok(mut c) = self.overview_cache.lock() {
            *c = Some((now, o.clone()));
        }
        Ok(o)
    }

    /// Sample the event counter (every second, from a background task).
    fn sample(&self) {
        let now = crate::clock::now_ms();
        if let Ok(mut r) = self.rates.lock() {
            r.push_back((now, self.health.live.events()));
            while r.len() > 601 {
                r.pop_front();
            }
        }
    }

    /// Events per second over the last ten minutes, `(wall ms, rate)`.
    pub fn rates(&self) -> Vec<(i64, f64)> {
        let r = match self.rates.lock() {
            Ok(r) => r.iter().copied().collect::<Vec<_>>(),
            Err(_) => return Vec::new(),
        };
        r.windows(2)
            .map(|w| {
                let dt = (w[1].0 - w[0].0).max(1) as f64 / 1000.0;
                (w[1].0, w[1].1.saturating_sub(w[0].1) as f64 / dt)
            })
            .collect()
    }
}

/// What went wrong, without internals: those go to the log.
#[derive(Debug)]
pub enum WebError {
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    TooManyRequests,
    /// Busy or at a bound: try again later (503).
    Unavailable(String),
    Internal(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            WebError::Unauthorized => "log in first".into(),
            WebError::Forbidden(m)
            | WebError::NotFound(m)
            | WebError::BadRequest(m)
            | WebError::Unavailable(m) => m.clone(),
            WebError::TooManyRequests => "too many attempts; wait a minute and try again".into(),
            WebError::Internal(detail) => {
                let reference = auth::random_token()[..8].to_string();
                tracing::error!(%reference, %detail, "dashboard error");
                format!(
                    "something went wrong on our side (reference {reference}; details in the service log)"
                )
            }
        }
    }
}

/// A [`WebError`] answered as JSON (`{"error": "...", "message": "..."}`).
pub struct ApiError(pub WebError);

impl From<WebError> for ApiError {
    fn from(e: WebError) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = serde_json::json!({
            "error": status.canonical_reason().unwrap_or("error").to_lowercase(),
            "message": self.0.message(),
        });
        (status, axum::Json(body)).into_response()
    }
}

/// A [`WebError`] answered as a page.
pub struct PageError(pub WebError);

impl From<WebError> for PageError {
    fn from(e: WebError) -> PageError {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        pages::error_page(status, &self.0.message())
    }
}

pub(crate) fn cookie_value<'a>(
    req_headers: &'a axum::http::HeaderMap,
    name: &str,
) -> Option<&'a str> {
    req_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request came from another origin. Browsers say so in
/// `Sec-Fetch-Site` (pages cannot forge it); older ones only send `Origin`.
fn cross_site(req: &Request, own_host: Option<&str>) -> bool {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        return own_host != Some(host);
    }
    false
}

/// Authenticate (session cookie or API key), enforce CSRF on state
/// changes, and put the [`Caller`] in the request's extensions.
async fn authenticate(
    State(st): State<WebState>,
    req: Request,
    next: Next,
) -> Result<Response, Response> {
    let api = req.uri().path().starts_with("/api/");
    let now = crate::clock::now_ms();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let mut req = req;
    let caller = if let Some(b) = bearer {
        st.auth.api_key(&b)
    } else {
        cookie_value(req.headers(), st.auth.cookie_name()).and_then(|c| st.auth.session(c, now))
    };
    let Some(caller) = caller else {
        return Err(if api {
            ApiError(WebError::Unauthorized).into_response()
        } else {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let next = url_escape(path);
            Redirect::to(&format!("/login?next={next}")).into_response()
        });
    };
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && let Some(expected) = caller.csrf.clone() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if cross_site(&req, host.as_deref()) {
            return Err(refuse(api, "cross-site request refused"));
        }
        // The token comes in a header (scripts) or the form's `csrf` field.
        let header_token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let ok = match header_token {
            Some(t) => auth::same(t.as_bytes(), expected.as_bytes()),
            None => {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 64 * 1024)
                    .await
                    .map_err(|_| refuse(api, "request body too large"))?;
                let token = form_urlencoded_field(&bytes, "csrf");
                req = Request::from_parts(parts, Body::from(bytes));
                token.is_some_and(|t| auth::same(t.as_bytes(), expected.as_bytes()))
            }
        };
        if !ok {
            return Err(refuse(
                api,
                "missing or wrong CSRF token: reload the page and try again",
            ));
        }
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

fn refuse(api: bool, message: &str) -> Response {
    let e = WebError::Forbidden(message.into());
    if api {
        ApiError(e).into_response()
    } else {
        PageError(e).into_response()
    }
}

fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    s.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| url_unescape(v))
    })
}

pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn url_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Security headers on every answer.
async fn security_headers(State(st): State<WebState>, req: Request, next: Next) -> Response {
    let asset = req.uri().path().starts_with("/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    if st.auth.secure {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    if !asset {
        set(h, "cache-control", "no-store");
    }
    res
}

/// The caller has at least `role`, or a 403 that says who they are.
pub fn require(caller: &Caller, role: Role) -> Result<(), WebError> {
    if caller.can(role) {
        Ok(())
    } else {
        Err(WebError::Forbidden(format!(
            "this needs the {} role; you are {} ({})",
            role.as_str(),
            caller.name,
            caller.role.as_str()
        )))
    }
}

/// The dashboard's own pages a login may return to.
const NEXT_PREFIXES: [&str; 6] = [
    "/live",
    "/incidents",
    "/actions",
    "/audit",
    "/rules",
    "/tokens",
];

/// Only a local path made of safe characters under one of the dashboard's
/// pages, else `/`: never an open redirect. Browsers drop TAB and newline
/// and read `\` as `/` (`/\t/evil` → `//evil`), so only unreserved
/// characters, `/`, `?`, `=`, `&`, `%` and `+` pass, at most 512 of them.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(n) = next else { return "/".into() };
    let safe = n.len() <= 512
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/?=&%+".contains(&b))
        && !n.contains("//")
        && (n == "/"
            || NEXT_PREFIXES.iter().any(|p| {
                n.strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            }));
    if safe { n.into() } else { "/".into() }
}

/// The whole application.
pub fn router(st: WebState) -> Router {
    let protected = Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            st.clone(),
            authenticate,
        ));
    let mut app: Router = Router::new()
        .merge(protected)
        .merge(pages::public_routes())
        .merge(oidc::routes())
        .route("/api/openapi.json", get(api::openapi))
        .fallback(|| async { PageError(WebError::NotFound("no such page".into())) })
        .with_state(st.clone());
    if st.cfg.dashboard.ops_endpoints
        && let Some(p) = &st.prometheus
    {
        app = app.merge(crate::ops::router(st.health.clone(), p.clone(), None));
    }
    app.layer(axum::middleware::from_fn_with_state(
        st.clone(),
        security_headers,
    ))
}

/// Bind now (a taken port is an error at start) and serve on a thread of
/// `threads` until its stop signal. Returns the bound address (port 0 picks
/// a free one).
pub fn spawn(
    addr: SocketAddr,
    st: WebState,
    threads: &mut crate::shutdown::Threads,
) -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        format!("dashboard.listen {addr}: {e} (another tokenwatch? set [dashboard] listen)")
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("dashboard: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("dashboard.listen {addr}: {e}"))?;
    threads
        .spawn("dashboard", 2, move |stop| async move {
            let sampler = st.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    sampler.sample();
                }
            });
            let app = router(st).into_make_service_with_connect_info::<SocketAddr>();
            let graceful = stop.clone();
            // Live feeds never end by themselves: give requests in flight
            // 2 s after the stop, then close.
            let deadline = async move {
                stop.triggered().await;
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            };
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    let serve = axum::serve(l, app)
                        .with_graceful_shutdown(async move { graceful.triggered().await });
                    tokio::select! {
                        r = serve => {
                            if let Err(e) = r {
                                tracing::error!(error = %e, "dashboard stopped");
                            }
                        }
                        _ = deadline => {}
                    }
                }
                Err(e) => tracing::error!(error = %e, "dashboard cannot listen"),
            }
        })
        .map_err(|e| format!("dashboard: {e}"))?;
    Ok(bound)
}

#[cfg(test)]
mod tests;
