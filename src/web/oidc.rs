//! Single sign-on through an OpenID Connect provider: the authorization
//! code flow with PKCE (S256), `state` bound to the browser by a cookie,
//! a `nonce` in the ID token, and the ID token's signature checked against
//! the provider's JWKS (issuer, audience, expiry, nonce). Who may log in,
//! and as what, comes from `[dashboard.oidc] roles` / `default_role`.

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use dashmap::DashMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::auth::random_token;
use super::{PageError, WebError, WebState, safe_next, url_escape};
use crate::config::{OidcConfig, Role};

const STATE_COOKIE: &str = "tw_oidc";
/// How long a started login may take at the provider.
const PENDING_MS: i64 = 10 * 60_000;
/// Single sign-on logins in progress at most (started, not finished).
const MAX_PENDING: usize = 10_000;

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Pending {
    verifier: String,
    nonce: String,
    next: String,
    created_ms: i64,
}

pub struct Oidc {
    cfg: OidcConfig,
    secret: String,
    http: reqwest::Client,
    discovery: OnceCell<Discovery>,
    pending: DashMap<String, Pending>,
}

impl Oidc {
    pub fn new(cfg: &OidcConfig) -> Result<Oidc, String> {
        let secret = crate::config::resolve_secret(&cfg.client_secret)
            .map_err(|e| format!("dashboard.oidc.client_secret: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("dashboard.oidc: {e}"))?;
        Ok(Oidc {
            cfg: cfg.clone(),
            secret,
            http,
            discovery: OnceCell::new(),
            pending: DashMap::new(),
        })
    }

    pub fn label(&self) -> &str {
        &self.cfg.label
    }

    async fn discovery(&self) -> Result<&Discovery, WebError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.cfg.issuer.trim_end_matches('/')
                );
                let d: Discovery = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| WebError::Internal(format!("OIDC discovery at {url}: {e}")))?
                    .json()
                    .await
                    .map_err(|e| WebError::Internal(format!("OIDC discovery at {url}: {e}")))?;
                if d.issuer.trim_end_matches('/') != self.cfg.issuer.trim_end_matches('/') {
                    return Err(WebError::Internal(format!(
                        "OIDC discovery: issuer `{}` is not the configured `{}`",
                        d.issuer, self.cfg.issuer
                    )));
                }
                Ok(d)
            })
            .await
    }

    /// The role of a signed-in person, if they may use the dashboard.
    fn role_of(&self, user: &str) -> Option<Role> {
        self.cfg.roles.get(user).copied().or(self.cfg.default_role)
    }
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Single sign-on's two public routes: off to the provider and back.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/login/oidc", get(start))
        .route("/login/oidc/callback", get(callback))
}

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// `GET /login/oidc`: off to the provider.
async fn start(
    State(st): State<WebState>,
    Query(q): Query<StartQuery>,
) -> Result<Response, PageError> {
    let Some(oidc) = &st.oidc else {
        return Err(WebError::NotFound("single sign-on is not configured".into()).into());
    };
    let d = oidc.discovery().await?;
    let now = crate::clock::now_ms();
    oidc.pending.retain(|_, p| now - p.created_ms < PENDING_MS);
    // Anyone may start a login: the logins in progress are bounded (each
    // entry is small: `next` is a checked path of at most 512 bytes).
    if oidc.pending.len() >= MAX_PENDING {
        return Err(WebError::Unavailable(
            "too many single sign-on logins are in progress; try again in a few minutes".into(),
        )
        .into());
    }
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let url = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}&code_challenge={}&code_challenge_method=S256",
        d.authorization_endpoint,
        url_escape(&oidc.cfg.client_id),
        url_escape(&oidc.cfg.redirect_url),
        url_escape(&oidc.cfg.scopes.join(" ")),
        challenge(&verifier),
    );
    oidc.pending.insert(
        state.clone(),
        Pending {
            verifier,
            nonce,
            next: safe_next(q.next.as_deref()),
            created_ms: now,
        },
    );
    let mut res = Redirect::to(&url).into_response();
    let secure = if st.auth.secure { "; Secure" } else { "" };
    // Lax: the provider sends the browser back with a top-level navigation.
    if let Ok(v) = format!(
        "{STATE_COOKIE}={state}; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
    )
    .parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

/// `GET /login/oidc/callback`: check everything, start a session.
async fn callback(
    State(st): State<WebState>,
    Query(q): Query<CallbackQuery>,
    req: Request,
) -> Result<Response, PageError> {
    let Some(oidc) = &st.oidc else {
        return Err(WebError::NotFound("single sign-on is not configured".into()).into());
    };
    if let Some(e) = q.error {
        // The provider's words are not shown: anyone can craft this URL.
        let shown: String = e.chars().take(64).collect();
        let detail: String = q
            .error_description
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        tracing::info!(error = %shown.escape_debug(), detail = %detail.escape_debug(), "sso: the provider refused the login");
        return Err(WebError::Forbidden(provider_refusal(&e).into()).into());
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(
            WebError::BadRequest("the provider's answer lacks code or state".into()).into(),
        );
    };
    let bound = super::cookie_value(req.headers(), STATE_COOKIE);
    if !bound.is_some_and(|b| super::auth::same(b.as_bytes(), state.as_bytes())) {
        return Err(WebError::Forbidden(
            "this login was not started in this browser; start again from the login page".into(),
        )
        .into());
    }
    let Some((_, pending)) = oidc.pending.remove(&state) else {
        return Err(WebError::Forbidden(
            "this login expired; start again from the login page".into(),
        )
        .into());
    };
    let now = crate::clock::now_ms();
    if now - pending.created_ms >= PENDING_MS {
        return Err(WebError::Forbidden(
            "this login expired; start again from the login page".into(),
        )
        .into());
    }
    let d = oidc.discovery().await?;
    let answer: TokenAnswer = oidc
        .http
        .post(&d.token_endpoint)
        .basic_auth(&oidc.cfg.client_id, Some(&oidc.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", oidc.cfg.redirect_url.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| WebError::Internal(format!("OIDC token request: {e}")))?
        .json()
        .await
        .map_err(|e| WebError::Internal(format!("OIDC token answer: {e}")))?;
    let claims = verify_id_token(oidc, d, &answer.id_token).await?;
    if claims.get("nonce").and_then(|v| v.as_str()) != Some(pending.nonce.as_str()) {
        return Err(
            WebError::Forbidden("the ID token's nonce does not match this login".into()).into(),
        );
    }
    let user = match username(&claims, &oidc.cfg.username_claim) {
        Ok(u) => u,
        Err(why) => {
            let _ = st
                .db(move |s| s.audit(now, "sso", "login refused (sso)", "dashboard", why))
                .await;
            return Err(WebError::Forbidden(format!(
                "the provider's answer cannot name you here: {why}"
            ))
            .into());
        }
    };
    let Some(role) = oidc.role_of(&user) else {
        let who = user.clone();
        let _ = st
            .db(move |s| {
                s.audit(
                    now,
                    &format!("user:{who}"),
                    "login refused (sso)",
                    "dashboard",
                    "no role",
                )
            })
            .await;
        return Err(WebError::Forbidden(format!(
            "{user} signed in at the provider but has no role here; ask an admin to add them to [dashboard.oidc] roles"
        ))
        .into());
    };
    let old = super::cookie_value(req.headers(), st.auth.cookie_name()).map(str::to_string);
    let id = st.auth.login(&user, role, old.as_deref(), now);
    let who = user.clone();
    st.db(move |s| {
        s.audit(
            now,
            &format!("user:{who}"),
            "login (sso)",
            "dashboard",
            role.as_str(),
        )
    })
    .await?;
    // A page of our own moves on: a redirect chain started by the provider
    // would not carry the new SameSite=Strict cookie (so no 303 here). The
    // target is checked again and HTML-escaped: only a dashboard path.
    let next = html_escape(&safe_next(Some(&pending.next)));
    let body = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={next}\"><title>Signed in</title><p>Signed in. <a href=\"{next}\">Continue</a></p>"
    );
    let mut res = Html(body).into_response();
    if let Ok(v) = st.auth.cookie(Some(&id)).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Ok(v) =
        format!("{STATE_COOKIE}=; Path=/login/oidc; HttpOnly; SameSite=Lax; Max-Age=0").parse()
    {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(res)
}

/// Who signed in, by the configured claim, with no fallback between
/// namespaces: `sub` (unique under the configured, verified issuer) or a
/// claim such as `email`, which counts only when the provider says it is
/// verified (`email_verified: true`): anyone can register an unverified
/// address at many providers.
fn username(
    claims: &serde_json::Map<String, serde_json::Value>,
    claim: &str,
) -> Result<String, &'static str> {
    let value = claims
        .get(claim)
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or("the ID token lacks the configured username_claim")?;
    if claim == "email" && claims.get("email_verified").and_then(|v| v.as_bool()) != Some(true) {
        return Err("the ID token's email is not verified (email_verified is not true)");
    }
    Ok(value.to_string())
}

/// A fixed message for an OAuth error code (RFC 6749 §4.1.2.1).
fn provider_refusal(code: &str) -> &'static str {
    match code {
        "access_denied" => "the identity provider refused the login (access denied)",
        "login_required" | "interaction_required" | "consent_required" => {
            "the identity provider needs you to sign in there first"
        }
        "temporarily_unavailable" | "server_error" => {
            "the identity provider is unavailable; try again later"
        }
        _ => "the identity provider refused the login",
    }
}

/// Escape text for an HTML attribute or element.
fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

async fn verify_id_token(
    oidc: &Oidc,
    d: &Discovery,
    token: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, WebError> {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let bad = |m: String| WebError::Forbidden(format!("the ID token was refused: {m}"));
    let header = decode_header(token).map_err(|e| bad(e.to_string()))?;
    let jwks: JwkSet = oidc
        .http
        .get(&d.jwks_uri)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| WebError::Internal(format!("OIDC JWKS: {e}")))?
        .json()
        .await
        .map_err(|e| WebError::Internal(format!("OIDC JWKS: {e}")))?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        None => jwks.keys.first(),
    }
    .ok_or_else(|| bad("no key in the provider's JWKS matches its `kid`".into()))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(e.to_string()))?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&[oidc.cfg.client_id.as_str()]);
    v.set_issuer(&[d.issuer.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &v)
        .map_err(|e| bad(e.to_string()))?;
    Ok(data.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_s256_base64url_without_padding() {
        // Expected value from an independent implementation:
        // base64.urlsafe_b64encode(hashlib.sha256(v).digest()).rstrip(b'=')
        // (oidc-provider checks the real thing in tests/dashboard.rs).
        let c = challenge("dBjftJeZ4CVP-mJ92K9qlWTFQ9jT8mmnN7lmH9TQE0A");
        assert_eq!(c, "5KioTEAG4XHLk90L219vscoam8Y5RA9ynGrvylUK8sw");
        assert_eq!(c.len(), 43);
    }

    /// Issue 14, point 3: roles by `sub`, or by an email only when verified.
    #[test]
    fn the_user_is_named_by_one_claim_and_an_email_only_when_verified() {
        let c = |v: serde_json::Value| v.as_object().unwrap().clone();
        let sub_only = c(serde_json::json!({"sub": "u-1", "email": "ada@example.com"}));
        assert_eq!(username(&sub_only, "sub").unwrap(), "u-1");
        assert!(
            username(&sub_only, "email").is_err(),
            "unverified email refused"
        );
        let verified = c(
            serde_json::json!({"sub": "u-1", "email": "ada@example.com", "email_verified": true}),
        );
        assert_eq!(username(&verified, "email").unwrap(), "ada@example.com");
        let as_text =
            c(serde_json::json!({"sub": "u-1", "email": "a@x", "email_verified": "true"}));
        assert!(username(&as_text, "email").is_err());
        // No silent fallback to another namespace.
        let no_email = c(serde_json::json!({"sub": "ada@example.com"}));
        assert!(username(&no_email, "email").is_err());
        assert_eq!(
            provider_refusal("<b>call 555</b>"),
            "the identity provider refused the login"
        );
    }

    #[test]
    fn roles_come_from_the_map_then_the_default_else_none() {
        unsafe { std::env::set_var("TW_TEST_OIDC_SECRET", "s") };
        let mut cfg = OidcConfig {
            issuer: "http://127.0.0.1:1".into(),
            client_id: "c".into(),
            client_secret: "env:TW_TEST_OIDC_SECRET".into(),
            redirect_url: "http://127.0.0.1:2/login/oidc/callback".into(),
            scopes: vec!["openid".into()],
            username_claim: "email".into(),
            roles: [("ada@example.com".to_string(), Role::Admin)].into(),
            default_role: None,
            label: "SSO".into(),
        };
        let o = Oidc::new(&cfg).unwrap();
        assert_eq!(o.role_of("ada@example.com"), Some(Role::Admin));
        assert_eq!(o.role_of("eve@example.com"), None);
        cfg.default_role = Some(Role::Viewer);
        let o = Oidc::new(&cfg).unwrap();
        assert_eq!(o.role_of("eve@example.com"), Some(Role::Viewer));
        cfg.client_secret = "env:TW_TEST_OIDC_SECRET_MISSING".into();
        let err = Oidc::new(&cfg).err().expect("a missing secret is an error");
        assert!(err.contains("dashboard.oidc.client_secret"), "{err}");
    }
}
