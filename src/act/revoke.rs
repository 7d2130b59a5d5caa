//! Revocation strategies: RFC 7009 (with RFC 7662 confirmation), templated
//! HTTP calls by subject/session/client (Keycloak, Okta, Auth0, Ory Hydra
//! presets; admin tokens by client credentials), the gateway deny-list,
//! and CAEP `session-revoked` Security Event Tokens pushed per RFC 8935.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Outcome, http_outcome};
use crate::config::{
    ClientAuth, ClientCredentials, HttpTemplate, RevokerConfig, RevokerKind, resolve_secret,
};
use crate::custody::TokenFacts;

/// What a revocation knows about its target.
pub struct Target<'a> {
    pub action_id: &'a str,
    pub delivery_id: &'a str,
    pub incident_id: &'a str,
    pub token_id: &'a str,
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub summary: &'a str,
    /// The raw token, when custody had it.
    pub raw: Option<Zeroizing<String>>,
    pub facts: Option<TokenFacts>,
}

/// A ready-made template: (method, url, body).
fn preset(t: HttpTemplate) -> (&'static str, &'static str, Option<&'static str>) {
    match t {
        HttpTemplate::KeycloakLogoutUser => (
            "POST",
            "{base_url}/admin/realms/{realm}/users/{sub}/logout",
            None,
        ),
        HttpTemplate::KeycloakDeleteSession => (
            "DELETE",
            "{base_url}/admin/realms/{realm}/sessions/{session_id}",
            None,
        ),
        HttpTemplate::OktaRevokeUserGrants => (
            "DELETE",
            "{base_url}/api/v1/users/{sub}/clients/{client_id}/tokens",
            None,
        ),
        HttpTemplate::OktaClearUserSessions => (
            "DELETE",
            "{base_url}/api/v1/users/{sub}/sessions?oauthTokens=true",
            None,
        ),
        HttpTemplate::Auth0DeleteRefreshTokens => (
            "DELETE",
            "{base_url}/api/v2/users/{sub}/refresh-tokens",
            None,
        ),
        HttpTemplate::Auth0DeleteSessions => {
            ("DELETE", "{base_url}/api/v2/users/{sub}/sessions", None)
        }
        HttpTemplate::HydraRevokeConsent => (
            "DELETE",
            "{base_url}/admin/oauth2/auth/sessions/consent?subject={sub}&client={client_id}",
            None,
        ),
        HttpTemplate::HydraRevokeLogin => (
            "DELETE",
            "{base_url}/admin/oauth2/auth/sessions/login?subject={sub}",
            None,
        ),
    }
}

/// How values are escaped when rendered.
#[derive(Clone, Copy, PartialEq)]
pub enum Escape {
    /// Percent-encode values (URL paths and queries); `base_url` is kept.
    Url,
    /// Escape for the inside of a JSON string.
    Json,
    None,
}

/// Replace `{name}` placeholders. Missing values are an error naming them.
pub fn render(
    template: &str,
    vars: &BTreeMap<String, String>,
    esc: Escape,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    let mut missing = Vec::new();
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j)
                if after[..j]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && j > 0 =>
            {
                let name = &after[..j];
                match vars.get(name) {
                    // `.`, `..` and empty values would survive encoding and
                    // be normalised away by the HTTP client: `…/tokens/../revoke`
                    // calls `…/revoke` with the admin credentials.
                    Some(v)
                        if esc == Escape::Url
                            && name != "base_url"
                            && matches!(v.trim(), "" | "." | "..") =>
                    {
                        return Err(format!(
                            "`{name}` is `{v}`, which would change the URL's path; refused"
                        ));
                    }
                    Some(v) => match esc {
                        Escape::Url if name != "base_url" => out.push_str(&pct(v)),
                        Escape::Json => {
                            let q = serde_json::to_string(v).unwrap_or_default();
                            out.push_str(&q[1..q.len() - 1]);
                        }
                        _ => out.push_str(v),
                    },
                    None => missing.push(name.to_string()),
                }
                rest = &after[j + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!("unknown for this token: {}", missing.join(", ")))
    }
}

fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Does a revoker apply to this token?
pub fn in_scope(r: &RevokerConfig, client_id: Option<&str>, issuer: Option<&str>) -> bool {
    (r.client_ids.is_empty() || client_id.is_some_and(|c| r.client_ids.iter().any(|x| x == c)))
        && (r.issuers.is_empty() || issuer.is_some_and(|i| r.issuers.iter().any(|x| x == i)))
}

/// Cached admin-API bearer tokens, per revoker.
#[derive(Default)]
pub struct AdminTokens {
    cache: tokio::sync::Mutex<BTreeMap<String, (Zeroizing<String>, std::time::Instant)>>,
}

impl AdminTokens {
    async fn get(
        &self,
        http: &reqwest::Client,
        r: &RevokerConfig,
        timeout: Duration,
    ) -> Result<Zeroizing<String>, Outcome> {
        let Some(a) = &r.admin_auth else {
            return Err(Outcome::Failed {
                status: None,
                error: "no admin_auth".into(),
            });
        };
        let mut cache = self.cache.lock().await;
        if let Some((t, until)) = cache.get(&r.name)
            && std::time::Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if let Some(s) = &a.scope {
            form.push(("scope", s.clone()));
        }
        let req = with_client_auth(
            http.post(&a.token_endpoint).timeout(timeout),
            &a.client,
            &mut form,
        )?;
        let resp = req.form(&form).send().await;
        let now = crate::clock::now_ms();
        let body = match resp {
            Ok(r) if r.status().is_success() => {
                r.json::<Value>().await.map_err(|e| Outcome::Retry {
                    status: None,
                    error: format!("admin token response: {e}"),
                    retry_after_ms: None,
                })?
            }
            other => {
                return Err(match http_outcome(other, now, |_| String::new()).await {
                    Outcome::Delivered { .. } => unreachable_ok(),
                    o => o.context("admin token"),
                });
            }
        };
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| Outcome::Failed {
                status: None,
                error: "admin token response has no access_token".into(),
            })?;
        let ttl = body["expires_in"]
            .as_u64()
            .unwrap_or(300)
            .saturating_sub(30)
            .max(1);
        let t = Zeroizing::new(token.to_string());
        cache.insert(
            r.name.clone(),
            (
                t.clone(),
                std::time::Instant::now() + Duration::from_secs(ttl),
            ),
        );
        Ok(t)
    }
}

fn unreachable_ok() -> Outcome {
    Outcome::Retry {
        status: None,
        error: "unexpected response".into(),
        retry_after_ms: None,
    }
}

/// Client authentication: HTTP Basic (RFC 6749 §2.3.1: form-urlencoded
/// id and secret) or in the form body.
fn with_client_auth(
    req: reqwest::RequestBuilder,
    c: &ClientCredentials,
    form: &mut Vec<(&'static str, String)>,
) -> Result<reqwest::RequestBuilder, Outcome> {
    let secret = resolve_secret(&c.client_secret).map_err(|e| Outcome::Failed {
        status: None,
        error: format!("client_secret of {}: {e}", c.client_id),
    })?;
    Ok(match c.auth_method {
        ClientAuth::ClientSecretBasic => req.basic_auth(pct(&c.client_id), Some(pct(&secret))),
        ClientAuth::ClientSecretPost => {
            form.push(("client_id", c.client_id.clone()));
            form.push(("client_secret", secret));
            req
        }
    })
}

/// Carry out one revocation with one revoker.
pub async fn revoke(
    http: &reqwest::Client,
    admin: &AdminTokens,
    deny: &super::DenyList,
    r: &RevokerConfig,
    t: &Target<'_>,
    timeout: Duration,
    now_ms: i64,
) -> Outcome {
    match r.kind {
        RevokerKind::Rfc7009 => rfc7009(http, r, t, timeout, now_ms).await,
        RevokerKind::Http => templated(http, admin, r, t, timeout, now_ms).await,
        RevokerKind::DenyList => {
            let until = t
                .facts
                .as_ref()
                .and_then(|f| f.exp_ms)
                .filter(|e| *e > now_ms)
                .unwrap_or(now_ms + (r.deny_secs as i64) * 1000);
            deny.insert(t.token_id, until);
            Outcome::Delivered {
                status: None,
                detail: format!(
                    "denied at the gateway until {}",
                    crate::event::fmt_time(until)
                ),
            }
        }
        RevokerKind::Caep => caep(http, r, t, timeout, now_ms).await,
    }
}

async fn rfc7009(
    http: &reqwest::Client,
    r: &RevokerConfig,
    t: &Target<'_>,
    timeout: Duration,
    now_ms: i64,
) -> Outcome {
    let Some(raw) = &t.raw else {
        return Outcome::Skipped {
            why: "the raw token is not in custody (the gateway does not log it, or it expired)"
                .into(),
        };
    };
    let creds = t
        .client_id
        .and_then(|c| r.clients.get(c))
        .or(r.client.as_ref());
    let Some(creds) = creds else {
        return Outcome::Skipped {
            why: format!("no credentials for client {}", t.client_id.unwrap_or("?")),
        };
    };
    let endpoint = r.endpoint.clone().unwrap_or_default();
    let mut form = vec![
        ("token", raw.to_string()),
        ("token_type_hint", "access_token".to_string()),
    ];
    let req = match with_client_auth(http.post(&endpoint).timeout(timeout), creds, &mut form) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let resp = req
        .header("idempotency-key", t.delivery_id)
        .form(&form)
        .send()
        .await;
    form.iter_mut()
        .for_each(|(_, v)| zeroize::Zeroize::zeroize(v));
    let revoked = http_outcome(resp, now_ms, |_| "revoked (RFC 7009)".to_string()).await;
    let Outcome::Delivered { status, .. } = revoked else {
        return revoked;
    };
    let Some(ie) = &r.introspection_endpoint else {
        return revoked;
    };
    // RFC 7662: confirm the authorization server now says inactive.
    let mut form = vec![("token", raw.to_string())];
    let req = match with_client_auth(http.post(ie).timeout(timeout), creds, &mut form) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let resp = req.form(&form).send().await;
    form.iter_mut()
        .for_each(|(_, v)| zeroize::Zeroize::zeroize(v));
    match resp {
        Ok(resp) if resp.status().is_success() => match resp.json::<Value>().await {
            Ok(v) if v["active"] == json!(false) => Outcome::Delivered {
                status,
                detail: "revoked (RFC 7009); introspection confirms active=false".into(),
            },
            Ok(_) => Outcome::Retry {
                status,
                error: "revoked, but introspection still says active=true".into(),
                retry_after_ms: None,
            },
            Err(e) => Outcome::Retry {
                status,
                error: format!("introspection response: {e}"),
                retry_after_ms: None,
            },
        },
        other => http_outcome(other, now_ms, |_| String::new())
            .await
            .context("introspection"),
    }
}

async fn templated(
    http: &reqwest::Client,
    admin: &AdminTokens,
    r: &RevokerConfig,
    t: &Target<'_>,
    timeout: Duration,
    now_ms: i64,
) -> Outcome {
    let (method, url, body) = match r.template.map(preset) {
        Some((m, u, b)) => (
            r.method.clone().unwrap_or_else(|| m.to_string()),
            r.url.clone().unwrap_or_else(|| u.to_string()),
            r.body.clone().or(b.map(str::to_string)),
        ),
        None => (
            r.method.clone().unwrap_or_else(|| "POST".into()),
            r.url.clone().unwrap_or_default(),
            r.body.clone(),
        ),
    };
    let mut vars = BTreeMap::new();
    for (k, v) in &r.vars {
        match resolve_secret(v) {
            Ok(v) => vars.insert(k.clone(), v),
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("vars.{k}: {e}"),
                };
            }
        };
    }
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v {
            vars.insert(k.to_string(), v.to_string());
        }
    };
    put("token_id", Some(t.token_id));
    put("incident_id", Some(t.incident_id));
    put("action_id", Some(t.action_id));
    put("sub", t.subject);
    put("client_id", t.client_id);
    put("reason", Some(t.summary));
    if !["h:", "c:", "u:"].iter().any(|p| t.token_id.starts_with(p)) {
        put("jti", Some(t.token_id));
    }
    put(
        "session_id",
        t.facts.as_ref().and_then(|f| f.session_id.as_deref()),
    );
    let url = match render(&url, &vars, Escape::Url) {
        Ok(u) => u,
        Err(why) => return Outcome::Skipped { why },
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    if r.admin_auth.is_some() {
        match admin.get(http, r, timeout).await {
            Ok(tok) => headers.push(("authorization".into(), format!("Bearer {}", tok.as_str()))),
            Err(o) => return o,
        }
    } else if let Some(a) = &r.authorization {
        match resolve_secret(a) {
            Ok(v) => headers.push(("authorization".into(), v)),
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("authorization: {e}"),
                };
            }
        }
    }
    for (k, v) in &r.headers {
        // A secret reference is resolved in the configured value only, never
        // in one a placeholder produced: a token id `env:NAME` (from an
        // unverified JWT, or typed into the revoke form) must not read a
        // local secret and send it away.
        let value = if v.starts_with("env:") || v.starts_with("file:") {
            resolve_secret(v)
        } else {
            render(v, &vars, Escape::None)
        };
        match value {
            Ok(v) => headers.push((k.clone(), v)),
            Err(why) => {
                return Outcome::Skipped {
                    why: format!("header {k}: {why}"),
                };
            }
        }
    }
    let method = match reqwest::Method::from_bytes(method.to_uppercase().as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            return Outcome::Failed {
                status: None,
                error: format!("method `{method}` is not an HTTP method"),
            };
        }
    };
    let mut req = http
        .request(method.clone(), &url)
        .timeout(timeout)
        .header("idempotency-key", t.delivery_id);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if let Some(b) = body {
        match render(&b, &vars, Escape::Json) {
            Ok(b) => req = req.header("content-type", "application/json").body(b),
            Err(why) => return Outcome::Skipped { why },
        }
    }
    let path = url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(&url)
        .to_string();
    http_outcome(req.send().await, now_ms, move |s| {
        format!("{method} {path} → {s}")
    })
    .await
}

async fn caep(
    http: &reqwest::Client,
    r: &RevokerConfig,
    t: &Target<'_>,
    timeout: Duration,
    now_ms: i64,
) -> Outcome {
    let alg = r.algorithm.as_deref().unwrap_or("ES256");
    let key_text = match r.signing_key.as_deref().map(resolve_secret) {
        Some(Ok(k)) => Zeroizing::new(k),
        Some(Err(e)) => {
            return Outcome::Failed {
                status: None,
                error: format!("signing_key: {e}"),
            };
        }
        None => {
            return Outcome::Failed {
                status: None,
                error: "no signing_key".into(),
            };
        }
    };
    let (algorithm, key) = match alg {
        "HS256" => (
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::EncodingKey::from_secret(key_text.as_bytes()),
        ),
        "RS256" => (
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(key_text.as_bytes()),
        ),
        _ => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(key_text.as_bytes()),
        ),
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            return Outcome::Failed {
                status: None,
                error: format!("signing_key ({alg}): {e}"),
            };
        }
    };
    let set = set_claims(r, t, now_ms);
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.typ = Some("secevent+jwt".into());
    let jwt = match jsonwebtoken::encode(&header, &set, &key) {
        Ok(j) => j,
        Err(e) => {
            return Outcome::Failed {
                status: None,
                error: format!("signing the SET: {e}"),
            };
        }
    };
    let mut req = http
        .post(r.endpoint.clone().unwrap_or_default())
        .timeout(timeout)
        .header("content-type", "application/secevent+jwt")
        .header("accept", "application/json")
        .body(jwt);
    if let Some(a) = &r.authorization {
        match resolve_secret(a) {
            Ok(v) => req = req.header("authorization", v),
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("authorization: {e}"),
                };
            }
        }
    }
    http_outcome(req.send().await, now_ms, |s| {
        format!("session-revoked SET accepted ({s})")
    })
    .await
}

/// The claims of a CAEP `session-revoked` SET (RFC 8417 + CAEP 1.0).
pub fn set_claims(r: &RevokerConfig, t: &Target<'_>, now_ms: i64) -> Value {
    let sub_id = match (
        t.subject,
        t.facts.as_ref().and_then(|f| f.issuer.as_deref()),
    ) {
        (Some(s), Some(iss)) => json!({"format": "iss_sub", "iss": iss, "sub": s}),
        (Some(s), None) => json!({"format": "opaque", "id": s}),
        (None, _) => json!({"format": "opaque", "id": t.token_id}),
    };
    json!({
        "iss": r.issuer.clone().unwrap_or_else(|| "tokenwatch".into()),
        "aud": r.audience.clone().unwrap_or_default(),
        "iat": now_ms / 1000,
        "jti": t.delivery_id,
        "sub_id": sub_id,
        "events": {
            "https://schemas.openid.net/secevent/caep/event-type/session-revoked": {
                "event_timestamp": now_ms / 1000,
                "initiating_entity": "policy",
                "reason_admin": {"en": t.summary},
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A templated revoker at a receiver on 127.0.0.1 that records the
    /// request line and headers of every call.
    async fn recorded(
        token_id: &str,
    ) -> (
        Outcome,
        Vec<(String, std::collections::HashMap<String, String>)>,
    ) {
        use std::sync::{Arc, Mutex};
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = calls.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let c = c.clone();
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                c.lock()
                    .unwrap()
                    .push((req.uri().path().to_string(), headers));
                "ok"
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        unsafe { std::env::set_var("TW_TEST_REVOKER_KEY", "s3cret-admin-key") };
        let r: RevokerConfig = toml::from_str(&format!(
            "name = \"h\"\nkind = \"http\"\nmethod = \"POST\"\n\
             url = \"http://{addr}/tokens/{{token_id}}/revoke\"\n\
             headers = {{ x-revoked-token = \"{{token_id}}\", x-admin-key = \"env:TW_TEST_REVOKER_KEY\" }}"
        ))
        .unwrap();
        let t = Target {
            action_id: "a-1",
            delivery_id: "d-1",
            incident_id: "i-1",
            token_id,
            subject: None,
            client_id: None,
            summary: "s",
            raw: None,
            facts: None,
        };
        let out = templated(
            &reqwest::Client::new(),
            &AdminTokens::default(),
            &r,
            &t,
            Duration::from_secs(5),
            0,
        )
        .await;
        let calls = calls.lock().unwrap().clone();
        (out, calls)
    }

    /// Issue 14, point 7: a token id naming a secret is sent as it is; only
    /// the configured `env:` reference is resolved.
    #[tokio::test]
    async fn a_token_id_that_names_a_secret_is_never_resolved() {
        let (out, calls) = recorded("env:TW_TEST_REVOKER_KEY").await;
        assert!(matches!(out, Outcome::Delivered { .. }), "{out:?}");
        assert_eq!(calls.len(), 1);
        let h = &calls[0].1;
        assert_eq!(h["x-revoked-token"], "env:TW_TEST_REVOKER_KEY");
        assert_eq!(h["x-admin-key"], "s3cret-admin-key");
        assert_eq!(calls[0].0, "/tokens/env%3ATW_TEST_REVOKER_KEY/revoke");
    }

    /// Issue 14, point 8: `..` never reaches the admin API as a path.
    #[tokio::test]
    async fn a_dot_segment_token_id_is_refused_before_any_call() {
        for id in ["..", "."] {
            let (out, calls) = recorded(id).await;
            assert!(matches!(out, Outcome::Skipped { .. }), "{id}: {out:?}");
            assert!(calls.is_empty(), "{id}: {calls:?}");
        }
    }

    /// Issue 14, points 7 and 8.
    #[test]
    fn values_never_climb_a_url_or_name_a_secret() {
        let mut v = BTreeMap::new();
        v.insert("base_url".to_string(), "https://idp.example".to_string());
        for bad in ["..", ".", "", " .. "] {
            v.insert("jti".to_string(), bad.to_string());
            let r = render("{base_url}/tokens/{jti}/revoke", &v, Escape::Url);
            assert!(r.is_err(), "{bad:?}: {r:?}");
        }
        v.insert("jti".to_string(), "a..b".to_string());
        assert_eq!(
            render("{base_url}/tokens/{jti}/revoke", &v, Escape::Url).unwrap(),
            "https://idp.example/tokens/a..b/revoke"
        );
        // A value is never resolved as a secret reference.
        v.insert("jti".to_string(), "env:HOME".to_string());
        assert_eq!(render("{jti}", &v, Escape::None).unwrap(), "env:HOME");
    }

    #[test]
    fn templates_render_escaped_and_name_what_is_missing() {
        let mut v = BTreeMap::new();
        v.insert("base_url".to_string(), "https://kc.example.com".to_string());
        v.insert("realm".to_string(), "acme".to_string());
        v.insert("sub".to_string(), "u 1/x".to_string());
        let (_, url, _) = preset(HttpTemplate::KeycloakLogoutUser);
        assert_eq!(
            render(url, &v, Escape::Url).unwrap(),
            "https://kc.example.com/admin/realms/acme/users/u%201%2Fx/logout"
        );
        let (_, url, _) = preset(HttpTemplate::KeycloakDeleteSession);
        assert_eq!(
            render(url, &v, Escape::Url).unwrap_err(),
            "unknown for this token: session_id"
        );
        assert_eq!(
            render(r#"{"s":"{sub}"}"#, &v, Escape::Json).unwrap(),
            r#"{"s":"u 1/x"}"#
        );
        for t in HttpTemplate::ALL {
            assert!(preset(*t).1.starts_with("{base_url}/"), "{t}");
        }
    }

    #[test]
    fn caep_set_names_the_subject_and_the_event() {
        let r: RevokerConfig = toml::from_str(
            "name = \"ssf\"\nkind = \"caep\"\nendpoint = \"http://x\"\nissuer = \"https://tw\"\naudience = \"https://rx\"",
        )
        .unwrap();
        let t = Target {
            action_id: "a-1",
            delivery_id: "a-1/ssf",
            incident_id: "i-1",
            token_id: "jti-1",
            subject: Some("u-1"),
            client_id: Some("web"),
            summary: "stolen",
            raw: None,
            facts: Some(TokenFacts {
                issuer: Some("https://idp".into()),
                ..TokenFacts::default()
            }),
        };
        let c = set_claims(&r, &t, 1_000_000);
        assert_eq!(c["sub_id"]["format"], "iss_sub");
        assert_eq!(c["jti"], "a-1/ssf");
        assert!(
            c["events"]["https://schemas.openid.net/secevent/caep/event-type/session-revoked"]
                .is_object()
        );
        assert!(in_scope(&r, None, None));
    }
}
