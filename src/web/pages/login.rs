//! The login form (double-submit protected, rate limited, audited) and
//! logout.

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Form, FromRequest, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{PageResult, render};
use crate::web::{Caller, WebError, WebState, safe_next};

/// Logout, behind login (the login form itself is in [`public_routes`]).
pub(super) fn routes() -> Router<WebState> {
    Router::new().route("/logout", post(logout))
}

/// The login form.
pub(super) fn public_routes() -> Router<WebState> {
    Router::new().route("/login", get(page).post(login))
}

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

const LOGIN_COOKIE: &str = "tw_login";

/// The login form carries a token also set as a cookie (double submit):
/// a form posted from elsewhere cannot log someone in.
fn login_form(
    st: &WebState,
    next: String,
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let token = crate::web::auth::random_token();
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

async fn page(State(st): State<WebState>, Query(q): Query<NextQuery>) -> PageResult {
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
    let addr = crate::web::limit::client_ip(
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
    let planted = crate::web::cookie_value(&headers, LOGIN_COOKIE);
    if !planted.is_some_and(|c| crate::web::auth::same(c.as_bytes(), f.csrf.as_bytes())) {
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
    let old = crate::web::cookie_value(&headers, st.auth.cookie_name()).map(str::to_string);
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
    if let Some(c) = crate::web::cookie_value(req.headers(), st.auth.cookie_name()) {
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
