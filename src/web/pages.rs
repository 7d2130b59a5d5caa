//! The server-rendered pages and the forms behind the buttons.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Form, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::view::{self, time};
use super::{Caller, PageError, WebError, WebState, url_escape};
use crate::config::Role;
use crate::store::{
    ActionView, AuditRow, DeliveryStatus, EndpointState, IncidentFilter, IncidentRow, RuleCounts,
    SEVERITIES, STATUSES,
};

pub const LAND: &str = include_str!("../../assets/world-land.path");
pub const KINDS: [&str; 5] = [
    "token_replay",
    "impossible_travel",
    "suspicious_network",
    "bulk_siphon",
    "enumeration",
];
pub const ACTION_STATES: [&str; 10] = [
    "pending",
    "dispatched",
    "done",
    "failed",
    "observed",
    "awaiting_approval",
    "rejected",
    "skipped",
    "digest",
    "no_endpoint",
];

type PageResult = Result<Response, PageError>;

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

fn chrome(caller: &Caller, page: &'static str, flash: Option<String>) -> Chrome {
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
fn options(all: &[&'static str], current: &str) -> Vec<(&'static str, bool)> {
    all.iter().map(|o| (*o, *o == current)).collect()
}

fn render(t: &impl Template) -> PageResult {
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

/// Pages and forms behind login.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(overview))
        .route("/partials/overview", get(overview_partial))
        .route("/live", get(live))
        .route("/live/stream", get(super::api::stream))
        .route("/incidents", get(incidents))
        .route("/incidents/{id}", get(incident))
        .route("/incidents/{id}/{act}", post(incident_act))
        .route("/tokens/{token}/revoke", get(confirm_revoke).post(revoke))
        .route("/actions", get(actions))
        .route("/actions/{id}/{act}", post(action_act))
        .route("/fuses/{rule}/reset", post(reset_fuse))
        .route("/rules", get(rules))
        .route("/rules/{name}/mode", post(rule_mode))
        .route("/audit", get(audit))
        .route("/logout", post(logout))
}

/// The login page and static assets.
pub fn public_routes() -> Router<WebState> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/login/oidc", get(super::oidc::start))
        .route("/login/oidc/callback", get(super::oidc::callback))
        .route("/assets/{file}", get(asset))
        .route(
            "/favicon.ico",
            get(|| async { asset(Path("favicon.svg".to_string())).await }),
        )
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty): (&'static [u8], &str) = match file.as_str() {
        "app.css" => (include_bytes!("../../assets/app.css"), "text/css"),
        "app.js" => (include_bytes!("../../assets/app.js"), "text/javascript"),
        "favicon.svg" => (include_bytes!("../../assets/favicon.svg"), "image/svg+xml"),
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

// ---- login -----------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    csrf: String,
    next: String,
    error: Option<String>,
    sso: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Longest user name and password a login form may carry (longer ones
/// fail without being hashed or stored).
const MAX_USERNAME: usize = 128;
const MAX_PASSWORD: usize = 1024;

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

/// The fixed messages a page may show after an act (`?done=`): the query
/// names one, it never supplies text.
fn flash_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "acknowledged" => "Acknowledged.",
        "resolved" => "Resolved.",
        "false_positive" => "Marked as a false positive and resolved.",
        "revocation_queued" => "Revocation queued.",
        _ => return None,
    })
}

const LOGIN_COOKIE: &str = "tw_login";

/// The login form carries a token also set as a cookie (double submit):
/// a form posted from elsewhere cannot log someone in.
fn login_form(
    st: &WebState,
    next: String,
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let token = super::auth::random_token();
    let page = Login {
        csrf: token.clone(),
        next,
        error,
        sso: st.sso_label(),
    };
    let mut res = render(&page)?;
    *res.status_mut() = status;
    let secure = if st.auth.secure { "; Secure" } else { "" };
    if let Ok(v) = format!(
        "{LOGIN_COOKIE}={token}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{secure}"
    )
    .parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

async fn login_page(State(st): State<WebState>, Query(q): Query<NextQuery>) -> PageResult {
    login_form(&st, safe_next(q.next.as_deref()), None, StatusCode::OK)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

async fn login(State(st): State<WebState>, req: Request) -> PageResult {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let addr = super::limit::client_ip(
        peer,
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok()),
        &st.auth.trusted_proxies,
    );
    let headers = req.headers().clone();
    let Form(f): Form<LoginForm> = Form::from_request(req, &st)
        .await
        .map_err(|e| WebError::BadRequest(format!("the login form is incomplete: {e}")))?;
    let next = safe_next(f.next.as_deref());
    let planted = super::cookie_value(&headers, LOGIN_COOKIE);
    if !planted.is_some_and(|c| super::auth::same(c.as_bytes(), f.csrf.as_bytes())) {
        return login_form(
            &st,
            next,
            Some("The login form expired; please try again.".into()),
            StatusCode::FORBIDDEN,
        );
    }
    let now = crate::clock::now_ms();
    // What is logged and audited of a submitted name: at most 64 characters.
    let shown: String = f.username.chars().take(64).collect::<String>();
    let shown = shown.escape_debug().to_string();
    let limiter = &st.auth.limiter;
    let (by_addr, by_user) = (limiter.network(addr), limiter.user_at(&f.username, addr));
    let wait = limiter
        .wait_ms(by_addr, now)
        .max(limiter.wait_ms(by_user, now));
    if wait > 0 {
        tracing::warn!(user = %shown, %addr, wait_ms = wait, "dashboard: login backing off");
        return login_form(
            &st,
            next,
            Some(format!(
                "Too many failed attempts; wait {} seconds and try again.",
                (wait + 999) / 1000
            )),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let role = if f.username.len() > MAX_USERNAME || f.password.len() > MAX_PASSWORD {
        None
    } else {
        let Ok(Ok(_slot)) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            st.auth.verify_slots.acquire(),
        )
        .await
        else {
            return login_form(
                &st,
                next,
                Some("The server is busy checking other logins; try again in a moment.".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            );
        };
        let auth_st = st.clone();
        let (name, password) = (f.username.clone(), f.password);
        tokio::task::spawn_blocking(move || {
            auth_st
                .auth
                .check_password(&name, &password, crate::clock::now_ms())
        })
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
    };
    let Some(role) = role else {
        limiter.failed(by_addr, now);
        limiter.failed(by_user, now);
        let who = shown.clone();
        let _ = st
            .db(move |s| s.audit(now, &format!("user:{who}"), "login failed", "dashboard", ""))
            .await;
        return login_form(
            &st,
            next,
            Some("Wrong user name or password.".into()),
            StatusCode::UNAUTHORIZED,
        );
    };
    limiter.succeeded(by_user);
    let old = super::cookie_value(&headers, st.auth.cookie_name()).map(str::to_string);
    let id = st.auth.login(&f.username, role, old.as_deref(), now);
    let who = f.username.clone();
    st.db(move |s| {
        s.audit(
            now,
            &format!("user:{who}"),
            "login",
            "dashboard",
            role.as_str(),
        )
    })
    .await?;
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) = st.auth.cookie(Some(&id)).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

async fn logout(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> PageResult {
    if let Some(c) = super::cookie_value(req.headers(), st.auth.cookie_name()) {
        st.auth.logout(c);
    }
    let now = crate::clock::now_ms();
    let who = caller.name.clone();
    st.db(move |s| s.audit(now, &format!("user:{who}"), "logout", "dashboard", ""))
        .await?;
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = st.auth.cookie(None).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

use axum::extract::FromRequest;

// ---- overview --------------------------------------------------------

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

fn wall(ms: i64) -> String {
    time(ms)
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

async fn overview(State(st): State<WebState>, Extension(caller): Extension<Caller>) -> PageResult {
    let o = overview_view(&st).await?;
    render(&Overview {
        c: chrome(&caller, "overview", None),
        o,
    })
}

async fn overview_partial(State(st): State<WebState>) -> PageResult {
    render(&OverviewBody {
        o: overview_view(&st).await?,
    })
}

// ---- live ------------------------------------------------------------

#[derive(Template)]
#[template(path = "live.html")]
struct Live {
    c: Chrome,
    kinds: &'static [&'static str],
    severities: &'static [&'static str],
}

async fn live(Extension(caller): Extension<Caller>) -> PageResult {
    render(&Live {
        c: chrome(&caller, "live", None),
        kinds: &KINDS,
        severities: &SEVERITIES,
    })
}

// ---- incidents -------------------------------------------------------

/// The incident filters as they come in a query string (all text).
#[derive(Debug, Default, Deserialize)]
pub struct FilterQuery {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

fn opt(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// A choice as given (not trimmed: ` high` is not `high`); empty = any.
fn given(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn parse_time(field: &str, s: &str) -> Result<Option<i64>, WebError> {
    let Some(t) = opt(s) else { return Ok(None) };
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(&t)
        .map(|d| Some(d.timestamp_millis()))
        .map_err(|_| {
            WebError::BadRequest(format!(
                "`{field}`: `{t}` is not a time; use RFC 3339 (2026-11-23T10:00:00Z) or epoch milliseconds"
            ))
        })
}

pub fn one_of(
    field: &str,
    v: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, WebError> {
    match v {
        Some(x) if !allowed.contains(&x.as_str()) => Err(WebError::BadRequest(format!(
            "`{field}` must be one of {}; got `{x}`",
            allowed.join(", ")
        ))),
        v => Ok(v),
    }
}

impl FilterQuery {
    pub fn filter(&self) -> Result<(IncidentFilter, u32, u32), WebError> {
        let per_page = self.per_page.unwrap_or(50);
        if !(1..=500).contains(&per_page) {
            return Err(WebError::BadRequest(
                "`per_page` must be between 1 and 500".into(),
            ));
        }
        let page = self.page.unwrap_or(1);
        if page == 0 || page > 100_000 {
            return Err(WebError::BadRequest(
                "`page` starts at 1 (and stops at 100000)".into(),
            ));
        }
        Ok((
            IncidentFilter {
                kind: one_of("kind", given(&self.kind), &KINDS)?,
                severity: one_of("severity", given(&self.severity), &SEVERITIES)?,
                status: one_of("status", given(&self.status), &STATUSES)?,
                subject: opt(&self.subject),
                client_id: opt(&self.client_id),
                q: opt(&self.q),
                from_ms: parse_time("from", &self.from)?,
                to_ms: parse_time("to", &self.to)?,
                offset: (page - 1) * per_page,
                limit: per_page,
            },
            page,
            per_page,
        ))
    }

    fn link(&self, page: u32) -> String {
        let mut parts = vec![format!("page={page}")];
        for (k, v) in [
            ("q", &self.q),
            ("kind", &self.kind),
            ("severity", &self.severity),
            ("status", &self.status),
            ("subject", &self.subject),
            ("client_id", &self.client_id),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", url_escape(v)));
            }
        }
        if let Some(p) = self.per_page {
            parts.push(format!("per_page={p}"));
        }
        parts.join("&")
    }
}

pub struct Pager {
    pub page: u32,
    pub pages: u32,
    pub prev: Option<String>,
    pub next: Option<String>,
}

fn pager(base: &str, page: u32, per_page: u32, total: i64, link: impl Fn(u32) -> String) -> Pager {
    let pages = ((total.max(0) as u64).div_ceil(u64::from(per_page)) as u32).max(1);
    Pager {
        page,
        pages,
        prev: (page > 1).then(|| format!("{base}?{}", link(page - 1))),
        next: (page < pages).then(|| format!("{base}?{}", link(page + 1))),
    }
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

async fn incidents(
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

pub struct FindingView {
    pub time: String,
    pub kind: String,
    pub severity: String,
    pub score: String,
    pub mode: String,
    pub token_id: String,
    pub summary: String,
    pub evidence: Vec<(String, String)>,
    pub route: String,
    pub client_ip: String,
    pub asn: String,
    pub network: String,
    pub place: String,
    pub user_agent: String,
    pub window: String,
}

fn finding_view(f: &serde_json::Value) -> FindingView {
    let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
    let place = match (f["city"].as_str(), f["country"].as_str()) {
        (Some(c), Some(k)) => format!("{c}, {k}"),
        (None, Some(k)) => k.to_string(),
        _ => "unknown place".into(),
    };
    FindingView {
        time: s("event_time").replace('T', " "),
        kind: s("kind"),
        severity: s("severity"),
        score: f["score"].to_string(),
        mode: s("mode"),
        token_id: s("token_id"),
        summary: s("summary"),
        evidence: view::evidence_pairs(&f["evidence"]),
        route: s("route"),
        client_ip: s("client_ip"),
        asn: f["asn"].to_string(),
        network: s("network"),
        place,
        user_agent: s("user_agent"),
        window: format!(
            "{} → {}",
            s("evidence_first").replace('T', " "),
            s("evidence_last").replace('T', " ")
        ),
    }
}

pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub label: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    c: Chrome,
    i: IncidentRow,
    opened: String,
    last: String,
    can_act: bool,
    tokens: Vec<String>,
    suggestion: Option<String>,
    land: &'static str,
    view_box: String,
    /// Sizes of dots and labels at the map's zoom.
    dot: String,
    font: String,
    pic: view::Picture,
    jump_labels: Vec<(view::Jump, String, String)>,
    places: Vec<(usize, view::MapPoint, String, String)>,
    bars: Vec<Bar>,
    bar_max: u32,
    bar_from: String,
    bar_to: String,
    markers: Vec<(f64, String)>,
    devices: Vec<(view::Device, String, String)>,
    findings: Vec<FindingView>,
    actions: Vec<(ActionView, Vec<DeliveryStatus>)>,
}

/// Everything an incident page shows.
pub struct IncidentData {
    pub row: IncidentRow,
    pub findings: Vec<serde_json::Value>,
    pub actions: Vec<ActionView>,
    pub deliveries: Vec<DeliveryStatus>,
}

pub async fn load_incident(st: &WebState, id: String) -> Result<IncidentData, WebError> {
    let missing = format!("no incident `{id}`");
    let data = st
        .db(move |s| {
            let Some(row) = s.incident(&id)? else {
                return Ok(None);
            };
            let findings = s.incident_findings(&id, 200)?;
            let (actions, _) = s.actions_page(Some(&id), None, 0, 200)?;
            let deliveries = s.deliveries(Some(&id))?;
            Ok(Some(IncidentData {
                row,
                findings,
                actions,
                deliveries,
            }))
        })
        .await?;
    data.ok_or(WebError::NotFound(missing))
}

/// An allow-list entry matching an incident, for a false positive.
fn allow_suggestion(d: &IncidentData) -> String {
    let mut lines = vec!["[allow]".to_string()];
    if let Some(s) = &d.row.subject {
        lines.push(format!("subjects = [{s:?}]    # this user"));
    }
    if let Some(c) = &d.row.client_id {
        lines.push(format!("# client_ids = [{c:?}]    # or the whole client"));
    }
    let asns: std::collections::BTreeSet<i64> = d
        .findings
        .iter()
        .filter_map(|f| f["asn"].as_i64())
        .filter(|a| *a > 0)
        .collect();
    if !asns.is_empty() {
        lines.push(format!(
            "# asns = [{}]    # or the networks it came from",
            asns.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    lines.join("\n")
}

#[derive(Deserialize, Default)]
struct IncidentQuery {
    fp: Option<String>,
    done: Option<String>,
    /// With `done=revocation_queued`: the action's id (shown only if it
    /// looks like one).
    action: Option<String>,
}

async fn incident(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<IncidentQuery>,
) -> PageResult {
    let d = load_incident(&st, id).await?;
    let pic = view::picture(&d.findings);
    let jump_labels = pic
        .jumps
        .iter()
        .map(|j| {
            let (short, long) = match j.kmh {
                Some(v) => (
                    format!("{:.0} km · {v:.0} km/h", j.km),
                    format!("{:.0} km in {:.2} h = {v:.0} km/h{}", j.km, j.hours, if j.impossible { ": faster than an airliner (900 km/h)" } else { "" }),
                ),
                None => (
                    format!("{:.0} km · simultaneous", j.km),
                    format!("{:.0} km apart, in use at both places at the same time: impossible for one holder", j.km),
                ),
            };
            (j.clone(), short, long)
        })
        .collect();
    let (vx, vy, vw, vh) = view::map_view(&pic.points);
    let places = pic
        .points
        .iter()
        .enumerate()
        .map(|(n, p)| (n + 1, p.clone(), time(p.first), time(p.last)))
        .collect();
    let (bars, bar_max, bar_from, bar_to, markers) = timeline(&pic.minutes, &d.findings);
    let devices = pic
        .devices
        .iter()
        .map(|x| (x.clone(), time(x.first), time(x.last)))
        .collect();
    let mut tokens: Vec<String> = d
        .findings
        .iter()
        .filter_map(|f| f["token_id"].as_str().map(str::to_string))
        .collect();
    tokens.sort();
    tokens.dedup();
    let suggestion = q.fp.is_some().then(|| allow_suggestion(&d));
    let action_id = q.action.as_deref().filter(|a| {
        !a.is_empty()
            && a.len() <= 64
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let flash = match (q.done.as_deref(), action_id) {
        (Some("revocation_queued"), Some(a)) => Some(format!("Revocation {a} queued.")),
        (d, _) => d.and_then(flash_message).map(str::to_string),
    };
    let actions = d
        .actions
        .iter()
        .map(|a| {
            let ds = d
                .deliveries
                .iter()
                .filter(|x| x.action_id == a.id)
                .cloned()
                .collect();
            (a.clone(), ds)
        })
        .collect();
    render(&IncidentPage {
        c: chrome(&caller, "incidents", flash),
        opened: time(d.row.opened_ts),
        last: time(d.row.last_ts),
        can_act: caller.can(Role::Responder),
        tokens,
        suggestion,
        land: LAND,
        view_box: format!("{vx:.1} {vy:.1} {vw:.1} {vh:.1}"),
        dot: format!("{:.2}", 4.0 * vw / 720.0),
        font: format!("{:.2}", 11.0 * vw / 720.0),
        jump_labels,
        places,
        bars,
        bar_max,
        bar_from,
        bar_to,
        markers,
        devices,
        findings: d.findings.iter().map(finding_view).collect(),
        actions,
        pic,
        i: d.row,
    })
}

type Timeline = (Vec<Bar>, u32, String, String, Vec<(f64, String)>);

fn timeline(
    minutes: &[crate::detect::context::ContextMinute],
    findings: &[serde_json::Value],
) -> Timeline {
    let (Some(first), Some(last)) = (minutes.first(), minutes.last()) else {
        return (Vec::new(), 0, String::new(), String::new(), Vec::new());
    };
    let (t0, t1) = (first.ts, last.ts + 60_000);
    let span = (t1 - t0).max(60_000) as f64;
    let max = minutes.iter().map(|m| m.requests).max().unwrap_or(1).max(1);
    let w = (600.0 * 60_000.0 / span).clamp(1.0, 40.0);
    let bars = minutes
        .iter()
        .map(|m| {
            let h = f64::from(m.requests) / f64::from(max) * 125.0;
            Bar {
                x: (m.ts - t0) as f64 / span * 600.0,
                y: 139.0 - h,
                w: (w - 0.5).max(0.8),
                h,
                label: format!(
                    "{}: {} requests, {} KiB, {} errors{}",
                    &time(m.ts)[..16],
                    m.requests,
                    m.kib,
                    m.errors,
                    if m.max_page > 0 {
                        format!(", page {}", m.max_page)
                    } else {
                        String::new()
                    }
                ),
            }
        })
        .collect();
    let markers = findings
        .iter()
        .filter_map(|f| {
            let ts = f["event_ts"].as_i64()?;
            (ts >= t0 && ts <= t1).then(|| {
                (
                    ((ts - t0) as f64 / span * 600.0).min(599.0),
                    format!(
                        "{} {}",
                        f["kind"].as_str().unwrap_or(""),
                        f["event_time"].as_str().unwrap_or("")
                    ),
                )
            })
        })
        .collect();
    (
        bars,
        max,
        time(t0)[..16].to_string(),
        time(t1)[..16].to_string(),
        markers,
    )
}

#[derive(Deserialize)]
struct ActForm {
    #[serde(default)]
    note: String,
}

async fn incident_act(
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

// ---- manual revocation ------------------------------------------------

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

async fn confirm_revoke(
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

// ---- actions, fuses, rules, audit ------------------------------------

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

async fn actions(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<ActionsQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(|e| WebError::BadRequest(format!("bad filter: {e}")))?;
    let state = one_of("state", opt(&q.state), &ACTION_STATES)?;
    let page = q.page.unwrap_or(1).max(1);
    let per = 50u32;
    let st2 = state.clone();
    let (waiting, fuses, endpoints, (recent, total)) = st
        .db(move |s| {
            Ok((
                s.actions_page(None, Some("awaiting_approval"), 0, 200)?.0,
                s.fuses()?,
                s.endpoints()?,
                s.actions_page(None, st2.as_deref(), (page - 1) * per, per)?,
            ))
        })
        .await?;
    let state_s = state.clone().unwrap_or_default();
    let pager = pager("/actions", page, per, total, |p| {
        format!("page={p}&state={}", url_escape(&state_s))
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
        states: options(&ACTION_STATES, state.as_deref().unwrap_or("")),
        pager,
    })
}

async fn action_act(
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

pub struct RuleView {
    pub name: String,
    pub scope: String,
    pub actions: String,
    pub mode: String,
    pub other: String,
    pub overridden: bool,
    pub budget: String,
    pub counts: RuleCounts,
}

/// The rules with their effective modes and counts.
pub async fn rule_views(st: &WebState) -> Result<(Vec<RuleView>, Vec<(String, i64)>), WebError> {
    let (modes, counts, by_kind) = st
        .db(|s| Ok((s.rule_modes()?, s.rule_counts()?, s.findings_by_kind()?)))
        .await?;
    let rules = st
        .cfg
        .policy
        .rules
        .iter()
        .map(|r| {
            let set = modes
                .iter()
                .find(|(n, _)| *n == r.name)
                .map(|x| x.1.clone());
            let mode = set.clone().unwrap_or_else(|| r.mode.as_str().to_string());
            let kinds = if r.kinds.is_empty() {
                "every kind".to_string()
            } else {
                r.kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut scope = format!("{kinds}, {} and up", r.min_severity.as_str());
            if !r.routes.is_empty() {
                scope.push_str(&format!("; routes {}", r.routes.join(", ")));
            }
            if !r.client_ids.is_empty() {
                scope.push_str(&format!("; clients {}", r.client_ids.join(", ")));
            }
            RuleView {
                name: r.name.clone(),
                scope,
                actions: r
                    .actions
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(" + "),
                other: if mode == "enforce" {
                    "observe"
                } else {
                    "enforce"
                }
                .into(),
                overridden: set.is_some_and(|m| m != r.mode.as_str()),
                mode,
                budget: format!(
                    "{}/min, {}/h",
                    r.max_revocations_per_minute, r.max_revocations_per_hour
                ),
                counts: counts
                    .iter()
                    .find(|c| c.rule == r.name)
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok((rules, by_kind))
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

/// `(kind, enabled, severity, cooldown_secs)` of each detector.
pub fn detector_settings(cfg: &crate::config::Config) -> Vec<(String, bool, String, u64)> {
    let d = &cfg.detectors;
    vec![
        (
            "token_replay".into(),
            d.token_replay.enabled,
            d.token_replay.severity.as_str().into(),
            d.token_replay.cooldown_secs,
        ),
        (
            "impossible_travel".into(),
            d.impossible_travel.enabled,
            d.impossible_travel.severity.as_str().into(),
            d.impossible_travel.cooldown_secs,
        ),
        (
            "suspicious_network".into(),
            d.suspicious_network.enabled,
            d.suspicious_network.severity.as_str().into(),
            d.suspicious_network.cooldown_secs,
        ),
        (
            "bulk_siphon".into(),
            d.bulk_siphon.enabled,
            d.bulk_siphon.severity.as_str().into(),
            d.bulk_siphon.cooldown_secs,
        ),
        (
            "enumeration".into(),
            d.enumeration.enabled,
            d.enumeration.severity.as_str().into(),
            d.enumeration.cooldown_secs,
        ),
    ]
}

async fn rules(State(st): State<WebState>, Extension(caller): Extension<Caller>) -> PageResult {
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

async fn rule_mode(
    State(st): State<WebState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Form(f): Form<ModeForm>,
) -> PageResult {
    set_rule_mode(&st, &caller, &name, &f.mode).await?;
    Ok(Redirect::to("/rules").into_response())
}

pub async fn set_rule_mode(
    st: &WebState,
    caller: &Caller,
    name: &str,
    mode: &str,
) -> Result<(), WebError> {
    require(caller, Role::Admin)?;
    if !matches!(mode, "observe" | "enforce") {
        return Err(WebError::BadRequest(format!(
            "`mode` must be observe or enforce; got `{mode}`"
        )));
    }
    if !st.cfg.policy.rules.iter().any(|r| r.name == name) {
        return Err(WebError::NotFound(format!("no rule `{name}` in [policy]")));
    }
    let now = crate::clock::now_ms();
    let (who, n, m) = (caller.name.clone(), name.to_string(), mode.to_string());
    st.db(move |s| s.set_rule_mode(&n, &m, &who, now)).await
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

async fn audit(
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
