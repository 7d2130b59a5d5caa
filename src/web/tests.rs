//! Handler tests through the whole `Router` with `oneshot`: login,
//! sessions, roles, CSRF, security headers, pagination, bad input, and the
//! API against its OpenAPI description.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::config::{ApiKeyConfig, Mode, Role, Severity};
use crate::detect::{Finding, FindingKind};
use crate::event::TokenId;
use crate::store::StoredFinding;

struct App {
    router: Router,
    _dir: tempfile::TempDir,
    health: Arc<Health>,
}

fn finding(n: usize, kind: FindingKind) -> Finding {
    Finding {
        id: format!("f-{n:04}-{}", kind.as_str()),
        kind,
        severity: Severity::High,
        score: 80,
        mode: Mode::Enforce,
        token_id: TokenId(Arc::from(format!("tok-{n:04}").as_str())),
        subject: Some(Arc::from(format!("user-{n:04}").as_str())),
        client_id: Some(Arc::from("web-app")),
        event_time: crate::event::fmt_time(1_700_000_000_000 + n as i64 * 60_000),
        event_ts: 1_700_000_000_000 + n as i64 * 60_000,
        evidence_first: String::new(),
        evidence_last: String::new(),
        summary: format!("<script>alert({n})</script> used from two places"),
        client_ip: "20.0.0.1".into(),
        asn: 64500,
        network: "residential",
        country: Some(Arc::from("DE")),
        city: Some(Arc::from("Berlin")),
        route: "/v1/records".into(),
        user_agent: "curl/8".into(),
        evidence: serde_json::json!({"distance_km": 550.4, "speed_kmh": 43020.0}),
        context: None,
        source_ts: None,
        token_exp: None,
    }
}

/// A store with `n` incidents (one finding each, every third also an
/// enumeration) and users `ana` (viewer), `rui` (responder), `ada` (admin).
fn app(n: usize) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.store.path = dir.path().join("tw.db");
    let mut store = Store::open(&cfg.store.path).unwrap();
    let mut decider = crate::decide::Decider::new(&cfg.policy);
    let findings: Vec<Finding> = (0..n)
        .map(|i| {
            finding(
                i,
                if i % 3 == 0 {
                    FindingKind::Enumeration
                } else {
                    FindingKind::TokenReplay
                },
            )
        })
        .collect();
    let jsons: Vec<Vec<u8>> = findings
        .iter()
        .map(|f| serde_json::to_vec(f).unwrap())
        .collect();
    let rows: Vec<StoredFinding<'_>> = findings
        .iter()
        .zip(&jsons)
        .map(|(f, j)| StoredFinding::of(f, j))
        .collect();
    store
        .insert_findings_and_decide(&rows, 1, |i| Some(decider.decide(&findings[i])))
        .unwrap();
    // SAFETY of the test env: only this test reads these variables.
    unsafe {
        std::env::set_var("TW_TEST_KEY_VIEWER", "v".repeat(40));
        std::env::set_var("TW_TEST_KEY_RESPONDER", "r".repeat(40));
    }
    cfg.dashboard.api_keys = vec![
        ApiKeyConfig {
            name: "ro".into(),
            role: Role::Viewer,
            key: "env:TW_TEST_KEY_VIEWER".into(),
        },
        ApiKeyConfig {
            name: "bot".into(),
            role: Role::Responder,
            key: "env:TW_TEST_KEY_RESPONDER".into(),
        },
    ];
    cfg.dashboard.login_attempts_per_minute = 5;
    // Secrets written inline, as a careless config would: never on a page.
    cfg.response.channels = vec![
        toml::from_str(
            "name = \"slack\"\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/SLACKSECRET\"",
        )
        .unwrap(),
        toml::from_str("name = \"pd\"\nkind = \"pagerduty\"\nrouting_key = \"PDROUTINGSECRET\"")
            .unwrap(),
    ];
    cfg.response.revokers = vec![
        toml::from_str(
            "name = \"idp\"\nkind = \"http\"\nurl = \"https://idp.example/t/{jti}\"\nauthorization = \"Bearer ADMINSECRET\"",
        )
        .unwrap(),
    ];
    cfg.dashboard.users = [
        ("ana", Role::Viewer),
        ("rui", Role::Responder),
        ("ada", Role::Admin),
    ]
    .iter()
    .map(|(n, r)| crate::config::UserConfig {
        name: n.to_string(),
        role: *r,
        password_hash: auth::hash_password(&format!("{n}-password-1")).unwrap(),
    })
    .collect();
    let auth = Auth::new(&cfg.dashboard, Vec::new(), false).unwrap();
    let health = Arc::new(Health::default());
    let st = WebState::new(Arc::new(cfg), auth, health.clone(), None, None);
    App {
        router: router(st.expect("web state")),
        _dir: dir,
        health,
    }
}

async fn send(app: &App, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn cookies(h: &axum::http::HeaderMap) -> Vec<String> {
    h.get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

fn hidden(body: &str, name: &str) -> String {
    let at = body
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in {body}"));
    let rest = &body[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Log in through the form; returns (session cookie pair, CSRF token).
async fn login(app: &App, user: &str) -> (String, String) {
    let (_, h, body) = send(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let login_cookie = cookie_pair(&cookies(&h)[0]);
    let csrf = hidden(&body, "csrf");
    let form = format!("username={user}&password={user}-password-1&csrf={csrf}&next=%2Fincidents");
    let (status, h, _) = send(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, login_cookie)
            .body(Body::from(form))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/incidents");
    let session = cookies(&h)
        .into_iter()
        .find(|c| c.starts_with("tw_session="))
        .unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    let session = cookie_pair(&session);
    let (status, _, page) = send(app, get_session("/", &session)).await;
    assert_eq!(status, StatusCode::OK);
    (session.clone(), hidden(&page, "csrf"))
}

fn post_form(path: &str, session: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, session)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap()
}

fn get_session(path: impl AsRef<str>, session: &str) -> Request<Body> {
    Request::get(path.as_ref())
        .header(header::COOKIE, session)
        .body(Body::empty())
        .unwrap()
}

fn get_key(path: &str, key: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn everything_but_login_assets_and_openapi_needs_a_login() {
    let app = app(3);
    let (s, h, _) = send(
        &app,
        Request::get("/incidents?kind=enumeration")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        h[header::LOCATION],
        "/login?next=/incidents%3Fkind%3Denumeration"
    );
    for path in [
        "/api/v1/incidents",
        "/api/v1/audit",
        "/live/stream",
        "/api/v1/me",
    ] {
        let (s, _, body) = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert!(
            s == StatusCode::UNAUTHORIZED || s == StatusCode::SEE_OTHER,
            "{path}: {s}"
        );
        if path.starts_with("/api") {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["message"], "log in first");
        }
    }
    let (s, _, _) = send(
        &app,
        get_key("/api/v1/me", "not-a-key-not-a-key-not-a-key-0000"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for path in [
        "/login",
        "/assets/app.css",
        "/assets/app.js",
        "/api/openapi.json",
    ] {
        let (s, _, _) = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn login_rotates_sessions_and_refuses_bad_passwords_and_foreign_forms() {
    let app = app(1);
    let (first, _) = login(&app, "ana").await;
    // Logging in again with the old cookie gives a new session and kills the old one.
    let (_, h, body) = send(&app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let lc = cookie_pair(&cookies(&h)[0]);
    let form = format!(
        "username=ana&password=ana-password-1&csrf={}&next=%2F",
        hidden(&body, "csrf")
    );
    let (_, h, _) = send(&app, post_form("/login", &format!("{lc}; {first}"), &form)).await;
    let second = cookie_pair(&cookies(&h)[0]);
    assert_ne!(first, second);
    let (s, _, _) = send(&app, get_session("/", &first)).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the old session is gone");
    let (s, _, _) = send(&app, get_session("/", &second)).await;
    assert_eq!(s, StatusCode::OK);

    // Wrong password: 401, a clear message, no session.
    let (_, h, body) = send(&app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let lc = cookie_pair(&cookies(&h)[0]);
    let form = format!("username=ana&password=nope&csrf={}", hidden(&body, "csrf"));
    let (s, h, body) = send(&app, post_form("/login", &lc, &form)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Wrong user name or password"));
    assert!(!cookies(&h).iter().any(|c| c.starts_with("tw_session=")));

    // A login form posted from elsewhere (no matching tw_login cookie).
    let form = "username=ana&password=ana-password-1&csrf=forged";
    let (s, _, _) = send(&app, post_form("/login", "tw_login=other", form)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // An open redirect through `next` is not possible.
    let (_, h, body) = send(
        &app,
        Request::get("/login?next=//evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(body.contains("name=\"next\" value=\"/\""));
    let lc = cookie_pair(&cookies(&h)[0]);
    let form = format!(
        "username=ana&password=ana-password-1&csrf={}&next=%2F%2Fevil.example",
        hidden(&body, "csrf")
    );
    let (_, h, _) = send(&app, post_form("/login", &lc, &form)).await;
    assert_eq!(h[header::LOCATION], "/");
}

#[tokio::test]
async fn login_attempts_are_rate_limited() {
    let app = app(1);
    let mut last = StatusCode::OK;
    for _ in 0..7 {
        let (_, h, body) = send(&app, Request::get("/login").body(Body::empty()).unwrap()).await;
        let lc = cookie_pair(&cookies(&h)[0]);
        let form = format!("username=rui&password=guess&csrf={}", hidden(&body, "csrf"));
        let (s, _, _) = send(&app, post_form("/login", &lc, &form)).await;
        last = s;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // Even the right password waits now.
    let (_, h, body) = send(&app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let lc = cookie_pair(&cookies(&h)[0]);
    let form = format!(
        "username=rui&password=rui-password-1&csrf={}",
        hidden(&body, "csrf")
    );
    let (s, _, body) = send(&app, post_form("/login", &lc, &form)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("and try again"));
}

/// A login form posted from `addr`.
async fn login_from(app: &App, addr: &str, user: &str, password: &str) -> (StatusCode, String) {
    let (_, h, body) = send(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let lc = cookie_pair(&cookies(&h)[0]);
    let form = format!(
        "username={user}&password={password}&csrf={}",
        hidden(&body, "csrf")
    );
    let mut req = post_form("/login", &lc, &form);
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo::<std::net::SocketAddr>(
            addr.parse().unwrap(),
        ));
    let (s, _, body) = send(app, req).await;
    (s, body)
}

/// Issue 14, point 5: failures from one network never lock the user out
/// of another, and a huge user name is neither stored nor hashed.
#[tokio::test]
async fn guesses_from_one_network_do_not_refuse_the_owner_elsewhere() {
    let app = app(1);
    for _ in 0..8 {
        login_from(&app, "203.0.113.66:4000", "rui", "guess").await;
    }
    let (s, _) = login_from(&app, "203.0.113.66:4001", "rui", "rui-password-1").await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the guessing network waits"
    );
    let (s, _) = login_from(&app, "198.51.100.7:5000", "rui", "rui-password-1").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the owner elsewhere logs in");
    // IPv6: one /64 is one network.
    for _ in 0..8 {
        login_from(&app, "[2001:db8:9:9::1]:1", "eve", "guess").await;
    }
    let (s, _) = login_from(&app, "[2001:db8:9:9::ffff]:1", "rui", "rui-password-1").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // A 1 MiB name fails at once and is not kept whole anywhere.
    let long = "n".repeat(1 << 20);
    let (s, body) = login_from(&app, "192.0.2.50:1", &long, "x").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(!body.contains(&"n".repeat(100)));
}

#[tokio::test]
async fn state_changes_need_the_csrf_token_and_this_origin() {
    let app = app(2);
    let (session, csrf) = login(&app, "rui").await;
    let (rows, _) = first_incidents(&app).await;
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let path = format!("/incidents/{id}/acknowledge");
    let (s, _, body) = send(&app, post_form(&path, &session, "note=x")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("CSRF"));
    let (s, _, _) = send(&app, post_form(&path, &session, "csrf=wrong")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A forged cross-site post carrying a stolen token is still refused.
    let mut forged = post_form(&path, &session, &format!("csrf={csrf}"));
    forged
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    let (s, _, body) = send(&app, forged).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("cross-site"));
    let mut forged = post_form(&path, &session, &format!("csrf={csrf}"));
    forged
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(send(&app, forged).await.0, StatusCode::FORBIDDEN);
    // The real form works, and so does the header for scripts.
    let (s, h, _) = send(
        &app,
        post_form(&path, &session, &format!("csrf={csrf}&note=seen")),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{:?}", h);
    let req = Request::post(format!("/api/v1/incidents/{id}/status"))
        .header(header::COOKIE, &session)
        .header("x-csrf-token", &csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"status":"resolved","note":"done"}"#))
        .unwrap();
    let (s, _, body) = send(&app, req).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, body) = send(&app, get_key("/api/v1/audit?q=user:rui", &"r".repeat(40))).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    let whats: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert!(
        whats.contains(&"incident acknowledged") && whats.contains(&"incident resolved"),
        "{whats:?}"
    );
}

async fn first_incidents(app: &App) -> (Vec<Value>, i64) {
    let (s, _, body) = send(app, get_key("/api/v1/incidents", &"v".repeat(40))).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    (
        v["items"].as_array().unwrap().clone(),
        v["total"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn roles_decide_who_may_act() {
    let app = app(2);
    let (rows, _) = first_incidents(&app).await;
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let token = rows[0]["token_id"].as_str().unwrap().to_string();
    // A viewer sees but cannot act.
    let (session, csrf) = login(&app, "ana").await;
    let (s, _, page) = send(&app, get_session(format!("/incidents/{id}"), &session)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !page.contains("Revoke token"),
        "a viewer gets no act buttons"
    );
    let form = format!("csrf={csrf}&reason=x&confirm=yes");
    let (s, _, body) = send(
        &app,
        post_form(&format!("/tokens/{token}/revoke"), &session, &form),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("responder role"));
    let (s, _, _) = send(
        &app,
        post_form(
            "/rules/stolen-token/mode",
            &session,
            &format!("csrf={csrf}&mode=enforce"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A responder revokes (after confirming) but cannot switch rules.
    let (session, csrf) = login(&app, "rui").await;
    let (s, _, page) = send(
        &app,
        get_session(format!("/tokens/{token}/revoke?incident={id}"), &session),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("I confirm"));
    let (s, _, body) = send(
        &app,
        post_form(
            &format!("/tokens/{token}/revoke"),
            &session,
            &format!("csrf={csrf}&reason=theft"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no confirmation ticked");
    assert!(body.contains("confirmation"));
    let (s, h, _) = send(
        &app,
        post_form(
            &format!("/tokens/{token}/revoke"),
            &session,
            &format!("csrf={csrf}&reason=theft&confirm=yes&incident={id}"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        h[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("done=revocation_queued")
    );
    let (s, _, _) = send(
        &app,
        post_form(
            "/rules/stolen-token/mode",
            &session,
            &format!("csrf={csrf}&mode=enforce"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An admin switches the rule; the audit says who.
    let (session, csrf) = login(&app, "ada").await;
    let (s, _, _) = send(
        &app,
        post_form(
            "/rules/stolen-token/mode",
            &session,
            &format!("csrf={csrf}&mode=enforce"),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, _, body) = send(&app, get_key("/api/v1/rules", &"v".repeat(40))).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    let rule = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "stolen-token")
        .unwrap();
    assert_eq!(rule["mode"], "enforce");
    // API keys carry roles too.
    let viewer = Request::post(format!("/api/v1/tokens/{token}/revoke"))
        .header(header::AUTHORIZATION, format!("Bearer {}", "v".repeat(40)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"reason":"x","confirm":true}"#))
        .unwrap();
    assert_eq!(send(&app, viewer).await.0, StatusCode::FORBIDDEN);
    let bot = Request::post(format!("/api/v1/tokens/{token}/revoke"))
        .header(header::AUTHORIZATION, format!("Bearer {}", "r".repeat(40)))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"reason":"automation","confirm":true}"#))
        .unwrap();
    let (s, _, body) = send(&app, bot).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let (_, _, body) = send(&app, get_key("/api/v1/audit", &"v".repeat(40))).await;
    assert!(
        body.contains("user:rui") && body.contains("user:key:bot") && body.contains("user:ada"),
        "{body}"
    );
}

#[tokio::test]
async fn the_overview_counts_rejected_requests() {
    let app = app(1);
    app.health.live.add_rejected(4_242);
    let (session, _) = login(&app, "ana").await;
    let (s, _, page) = send(&app, get_session("/", &session)).await;
    assert_eq!(s, StatusCode::OK);
    let at = page.find("Rejected requests").expect("the card");
    assert!(page[at..].contains("4242"), "{page}");
}

#[tokio::test]
async fn pages_carry_security_headers_and_escape_what_they_show() {
    let app = app(3);
    let (session, _) = login(&app, "ana").await;
    let (rows, _) = first_incidents(&app).await;
    let id = rows[0]["id"].as_str().unwrap();
    let (s, h, page) = send(&app, get_session(format!("/incidents/{id}"), &session)).await;
    assert_eq!(s, StatusCode::OK);
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline")
            && csp.contains("frame-ancestors 'none'")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    assert!(!page.contains("<script>alert"), "finding text is escaped");
    assert!(page.contains("&#60;script&#62;alert") || page.contains("&lt;script&gt;alert"));
    assert!(
        !page.contains("<script>") || page.matches("<script").count() == 1,
        "only app.js"
    );
    // Unknown pages and internal errors say nothing about internals.
    let (s, h, page) = send(
        &app,
        Request::get("/no/such/page").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(h.contains_key("content-security-policy"));
    assert!(!page.contains("src/") && !page.contains("panicked"));
}

#[tokio::test]
async fn lists_paginate_on_the_server_and_bad_filters_get_clear_4xx() {
    let app = app(120);
    let key = "v".repeat(40);
    let (s, _, body) = send(&app, get_key("/api/v1/incidents?per_page=50&page=3", &key)).await;
    assert_eq!(s, StatusCode::OK);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 120);
    assert_eq!(v["items"].as_array().unwrap().len(), 20);
    let (_, _, body) = send(
        &app,
        get_key("/api/v1/incidents?kind=enumeration&per_page=500", &key),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 40);
    let (_, _, body) = send(&app, get_key("/api/v1/incidents?q=user-0042", &key)).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 1);
    assert_eq!(v["items"][0]["subject"], "user-0042");
    let from = crate::event::fmt_time(1_700_000_000_000 + 100 * 60_000);
    let (_, _, body) = send(
        &app,
        get_key(&format!("/api/v1/incidents?from={from}"), &key),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 20, "event-time filter");
    for (q, expect) in [
        ("page=0", "`page`"),
        ("per_page=1000", "`per_page`"),
        ("kind=stolen", "`kind` must be one of token_replay"),
        ("from=yesterday", "`from`: `yesterday` is not a time"),
        ("page=abc", "bad query"),
    ] {
        let (s, _, body) = send(&app, get_key(&format!("/api/v1/incidents?{q}"), &key)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["message"].as_str().unwrap().contains(expect),
            "{q}: {body}"
        );
    }
    // The page says the same in HTML.
    let (session, _) = login(&app, "ana").await;
    let (s, _, page) = send(&app, get_session("/incidents?page=3", &session)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("page 3 of 3")
            && page.contains("rel=\"prev\"")
            && !page.contains("rel=\"next\"")
    );
    let (s, _, page) = send(&app, get_session("/incidents?severity=urgent", &session)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(page.contains("`severity` must be one of"));
    // Bad JSON bodies.
    let bot = |body: &'static str| {
        Request::post("/api/v1/tokens/tok-0001/revoke")
            .header(header::AUTHORIZATION, format!("Bearer {}", "r".repeat(40)))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    for (b, expect) in [
        ("{not json", "bad JSON body"),
        (
            r#"{"reason":"x","confirm":true,"raw_token":"eyJ"}"#,
            "unknown field",
        ),
        (r#"{"reason":"x","confirm":false}"#, "confirm: true"),
    ] {
        let (s, _, body) = send(&app, bot(b)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert!(body.contains(expect), "{b}: {body}");
    }
    let (s, _, _) = send(&app, get_key("/api/v1/incidents/i-nope", &key)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_api_answers_every_documented_read_with_the_documented_fields() {
    let app = app(4);
    let spec: Value = serde_json::from_str(include_str!("../../assets/openapi.json")).unwrap();
    let schemas = &spec["components"]["schemas"];
    let key = "v".repeat(40);
    let (rows, _) = first_incidents(&app).await;
    let id = rows[0]["id"].as_str().unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        let url = path.replace("{id}", id).replace("{token_id}", "tok-0001");
        let (s, _, body) = send(&app, get_key(&url, &key)).await;
        assert_eq!(s, StatusCode::OK, "{url}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut schema = &get["responses"]["200"]["content"]["application/json"]["schema"];
        if let Some(r) = schema["$ref"].as_str() {
            schema = &schemas[r.rsplit('/').next().unwrap()];
        }
        for field in schema["required"].as_array().unwrap() {
            assert!(
                v.get(field.as_str().unwrap()).is_some(),
                "{url}: no `{field}` in {body}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 9, "{checked}");
}

/// Issue 14, point 2: only a dashboard path survives, whatever a browser
/// would make of the rest.
#[test]
fn login_returns_only_to_dashboard_paths() {
    use super::safe_next;
    for evil in [
        "/\t/evil.example/phish",
        "/\n/evil.example",
        "//evil.example",
        "/\\evil.example",
        "/&#47;evil.example",
        "https://evil.example/",
        "/livex",
        "/incidents//evil.example",
        "/rules%2F%2Fevil.example",
        "javascript:alert(1)",
        "/\"><script>",
    ] {
        assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
    }
    for ok in [
        "/",
        "/live",
        "/incidents/inc-1?done=resolved",
        "/rules/",
        "/audit?page=2",
    ] {
        assert_eq!(safe_next(Some(ok)), ok);
    }
    assert_eq!(safe_next(Some(&format!("/live?{}", "a".repeat(600)))), "/");
    assert_eq!(safe_next(None), "/");
}

/// Issue 14, point 6: `?done=` names a fixed message; it never supplies text.
#[tokio::test]
async fn flash_messages_are_fixed_texts_never_the_query() {
    let app = app(3);
    let (session, _) = login(&app, "ana").await;
    let (rows, _) = first_incidents(&app).await;
    let id = rows[0]["id"].as_str().unwrap();
    let (s, _, page) = send(
        &app,
        get_session(
            format!("/incidents/{id}?done=Your+account+is+locked%2C+call+555-0100"),
            &session,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!page.contains("call 555-0100"), "reflected text");
    assert!(
        !page.contains("class=\"flash\""),
        "no flash for an unknown code"
    );
    let (_, _, page) = send(
        &app,
        get_session(format!("/incidents/{id}?done=resolved"), &session),
    )
    .await;
    assert!(page.contains("Resolved."));
    let (_, _, page) = send(
        &app,
        get_session(
            format!("/incidents/{id}?done=revocation_queued&action=m-1%3Cb%3E"),
            &session,
        ),
    )
    .await;
    assert!(page.contains("Revocation queued."), "a bad id is not shown");
    assert!(!page.contains("m-1<b>") && !page.contains("m-1&lt;b"));
}

/// Issue 14, point 1: the rules page shows how each secret is set, never
/// its value, to every role.
#[tokio::test]
async fn the_rules_page_never_shows_a_secret() {
    let app = app(1);
    for user in ["ana", "ada"] {
        let (session, _) = login(&app, user).await;
        let (s, _, page) = send(&app, get_session("/rules", &session)).await;
        assert_eq!(s, StatusCode::OK);
        for secret in [
            "SLACKSECRET",
            "PDROUTINGSECRET",
            "ADMINSECRET",
            "hooks.slack.com/services",
        ] {
            assert!(!page.contains(secret), "{user} sees {secret}");
        }
        assert!(page.contains("inline (refused by check-config"), "{user}");
    }
    let (s, _, body) = send(&app, get_key("/api/v1/rules", &"v".repeat(40))).await;
    assert_eq!(s, StatusCode::OK);
    for secret in ["SLACKSECRET", "PDROUTINGSECRET", "ADMINSECRET"] {
        assert!(!body.contains(secret), "the API shows {secret}");
    }
}
