//! `[response]`: how decided actions are carried out: which strategies cut
//! a token off (`[[response.revokers]]`), where alerts go
//! (`[[response.channels]]`), how deliveries are retried, and the custody
//! of raw tokens for strategies that need them.
//!
//! Secrets (client secrets, webhook secrets, SMTP passwords, signing keys,
//! the custody key) are written as `env:NAME` or `file:/path`, never inline.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Severity;
use crate::event::FindingKind;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// Base URL of the dashboard, for links in alerts.
    pub dashboard_url: String,
    /// How raw tokens are kept (sealed) for strategies that present them.
    pub custody: CustodyConfig,
    /// Retries, backoff, leases and breakers of the deliveries.
    pub delivery: DeliveryConfig,
    /// Revocation strategies. Every revoker whose scope matches a revoke
    /// action is called (e.g. RFC 7009 at the IdP and the gateway deny-list).
    pub revokers: Vec<RevokerConfig>,
    /// Alert channels; each alert goes to every channel whose routing matches.
    pub channels: Vec<ChannelConfig>,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        ResponseConfig {
            dashboard_url: "http://127.0.0.1:8080".into(),
            custody: CustodyConfig::default(),
            delivery: DeliveryConfig::default(),
            revokers: Vec::new(),
            channels: Vec::new(),
        }
    }
}

/// `[response.custody]`: raw tokens kept (sealed) for RFC 7009 revokers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CustodyConfig {
    /// 32-byte custody key (XChaCha20-Poly1305) (64 hex digits or base64) as `env:NAME` or
    /// `file:/path`. Unset: a random key per process, and revocations
    /// pending at a restart can no longer present their token.
    pub key: Option<String>,
    /// Forget a token without `exp` this long after first seeing it.
    pub max_age_secs: u64,
    /// At most this many tokens in custody (≈ 150 bytes each).
    pub max_tokens: usize,
}

impl Default for CustodyConfig {
    fn default() -> Self {
        CustodyConfig {
            key: None,
            max_age_secs: 86_400,
            max_tokens: 1_000_000,
        }
    }
}

/// `[response.delivery]`: retries, backoff, circuit breakers.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Per HTTP call (and SMTP session).
    pub timeout_ms: u64,
    /// Attempts before a delivery is marked failed (and an alert says so).
    pub max_attempts: u32,
    /// Exponential backoff with full jitter between these bounds; a longer
    /// `Retry-After` from the endpoint wins.
    pub backoff_initial_ms: u64,
    /// The longest wait between two attempts of one delivery.
    pub backoff_max_ms: u64,
    /// Consecutive failures that open an endpoint's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before one probe (doubles while the
    /// probe fails, up to backoff_max_ms).
    pub breaker_open_ms: u64,
    /// Calls in flight at once, over all endpoints.
    pub concurrency: usize,
    /// How often the dispatcher looks for due deliveries.
    pub poll_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout_ms: 5_000,
            max_attempts: 12,
            backoff_initial_ms: 500,
            backoff_max_ms: 300_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            concurrency: 32,
            poll_ms: 200,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RevokerKind {
    /// RFC 7009 token revocation (needs the raw token: custody).
    Rfc7009,
    /// A templated HTTP call by subject, session or client.
    Http,
    /// The gateway deny-list served at `/v1/check`.
    DenyList,
    /// A CAEP `session-revoked` Security Event Token pushed per RFC 8935.
    Caep,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

/// OAuth client credentials (for RFC 7009 calls and admin-API tokens).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentials {
    /// The client's id at the authorization server.
    pub client_id: String,
    /// `env:NAME` or `file:/path`.
    pub client_secret: String,
    /// How the client authenticates (`client_secret_basic`, `client_secret_post`).
    #[serde(default = "default_basic")]
    pub auth_method: ClientAuth,
}

fn default_basic() -> ClientAuth {
    ClientAuth::ClientSecretBasic
}

/// Client-credentials grant for an admin API's bearer token (cached until
/// shortly before it expires).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminAuth {
    /// The token endpoint the admin token is fetched from.
    pub token_endpoint: String,
    /// The admin client's credentials (client credentials grant).
    #[serde(flatten)]
    pub client: ClientCredentials,
    /// The scope asked for, when the server needs one.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `[[response.revokers]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RevokerConfig {
    /// Names the endpoint in audit entries, metrics and breaker state.
    pub name: String,
    /// The strategy: `rfc7009`, `http`, `deny_list` or `caep`.
    pub kind: RevokerKind,
    /// Scope: the token's client_id; empty = every client.
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// Scope: the token's issuer (JWT `iss`, from custody); empty = any.
    #[serde(default)]
    pub issuers: Vec<String>,

    /// rfc7009: the revocation endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// rfc7009: confirm with RFC 7662 introspection (`active: false`).
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// rfc7009: tokenwatch's client at the authorization server.
    #[serde(default)]
    pub client: Option<ClientCredentials>,
    /// rfc7009: credentials per token client_id, for servers that only let
    /// a client revoke its own tokens (RFC 7009 §2.1).
    #[serde(default)]
    pub clients: BTreeMap<String, ClientCredentials>,

    /// http: a ready-made template ([`HttpTemplate`]: `keycloak_logout_user`,
    /// `keycloak_delete_session`, `okta_revoke_user_grants`,
    /// `okta_clear_user_sessions`, `auth0_delete_refresh_tokens`,
    /// `auth0_delete_sessions`, `hydra_revoke_consent`,
    /// `hydra_revoke_login`), or none and `method`/`url`/`headers`/`body`.
    #[serde(default)]
    pub template: Option<HttpTemplate>,
    /// http: the method (default `POST`, or the template's).
    #[serde(default)]
    pub method: Option<String>,
    /// http: the URL, with `{placeholders}` (percent-encoded).
    #[serde(default)]
    pub url: Option<String>,
    /// http: headers; values may be `env:`/`file:` references.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// http: the body, with `{placeholders}` (JSON-escaped).
    #[serde(default)]
    pub body: Option<String>,
    /// http: values for `{name}` placeholders (`base_url`, `realm`, …);
    /// `env:`/`file:` values are resolved.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// http: fetch an admin bearer token (`{admin_token}`) by client credentials.
    #[serde(default)]
    pub admin_auth: Option<AdminAuth>,

    /// deny_list: how long a token without `exp` stays denied.
    #[serde(default = "default_deny_secs")]
    pub deny_secs: u64,
    /// deny_list: every place the gateway accepts a token from, for
    /// `/v1/check` to look at: `header:NAME`, `query:NAME` (in the check
    /// request's own URL, as Envoy ext_authz forwards it, or in
    /// `X-Original-URI` / `X-Forwarded-Uri`, as NGINX auth_request and
    /// Traefik forwardAuth send it) and `cookie:NAME`. Default: the
    /// Authorization header and RFC 6750's `access_token` parameter.
    #[serde(default = "default_token_places")]
    pub token_places: Vec<String>,

    /// caep: the SET issuer and audience.
    #[serde(default)]
    pub issuer: Option<String>,
    /// caep: the SET audience (the receiver).
    #[serde(default)]
    pub audience: Option<String>,
    /// caep: `ES256` (PKCS#8 PEM key), `RS256` (PEM) or `HS256` (shared secret).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// caep: the signing key, `env:NAME` or `file:/path`.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// caep / http: an `Authorization` header value for the push (`env:`/`file:`).
    #[serde(default)]
    pub authorization: Option<String>,
}

fn default_deny_secs() -> u64 {
    3_600
}

fn default_token_places() -> Vec<String> {
    vec!["header:authorization".into(), "query:access_token".into()]
}

/// Where a gateway may have taken a token from (`token_places`).
#[derive(Clone, Debug, PartialEq)]
pub enum TokenPlace {
    Header(String),
    Query(String),
    Cookie(String),
}

impl TokenPlace {
    pub fn parse(s: &str) -> Result<TokenPlace, String> {
        let bad = || format!("`{s}`: use header:NAME, query:NAME or cookie:NAME");
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(bad());
        }
        Ok(match kind.trim() {
            "header" => TokenPlace::Header(name.to_ascii_lowercase()),
            "query" => TokenPlace::Query(name.to_string()),
            "cookie" => TokenPlace::Cookie(name.to_string()),
            _ => return Err(bad()),
        })
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
    /// Generic JSON signed per Standard Webhooks.
    Webhook,
    Slack,
    Teams,
    Pagerduty,
    Alertmanager,
}

/// `[[response.channels]]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The channel's name, in the audit log and in `exclude`.
    pub name: String,
    /// The channel: `email`, `webhook`, `slack`, `teams`, `pagerduty`, `alertmanager`.
    pub kind: ChannelKind,
    /// Routing: the lowest severity sent here (fuse alerts are critical).
    #[serde(default = "default_channel_severity")]
    pub min_severity: Severity,
    /// Routing: finding kinds; empty = every kind.
    #[serde(default)]
    pub kinds: Vec<FindingKind>,
    /// Rate limit: past it, alerts wait for the next minute (none is dropped).
    #[serde(default = "default_per_minute")]
    pub max_per_minute: u32,

    /// Webhooks: the URL (Alertmanager: its base URL; PagerDuty: defaults
    /// to the Events v2 endpoint). A Slack or Teams URL is itself the
    /// credential: give it as `env:NAME` or `file:/path` (`check-config`
    /// refuses it inline).
    #[serde(default)]
    pub url: Option<String>,
    /// webhook: the Standard Webhooks secret (`whsec_…` base64), `env:`/`file:`.
    #[serde(default)]
    pub secret: Option<String>,
    /// pagerduty: the integration's routing key, `env:`/`file:`.
    #[serde(default)]
    pub routing_key: Option<String>,

    /// email: `smtp://host:port` (STARTTLS when offered… see `tls`),
    /// `smtps://host:port` (implicit TLS).
    #[serde(default)]
    pub smtp_url: Option<String>,
    /// email: `starttls` (required), `opportunistic`, `none` (tests), or
    /// `tls` (implicit); default `starttls`, or `tls` for smtps://.
    #[serde(default)]
    pub tls: Option<String>,
    /// email: the SMTP user name.
    #[serde(default)]
    pub username: Option<String>,
    /// email: `env:`/`file:`.
    #[serde(default)]
    pub password: Option<String>,
    /// email: the sender address.
    #[serde(default)]
    pub from: Option<String>,
    /// email: the recipients.
    #[serde(default)]
    pub to: Vec<String>,
}

fn default_channel_severity() -> Severity {
    Severity::Medium
}
fn default_per_minute() -> u32 {
    30
}

/// Resolve a secret reference: `env:NAME`, `file:/path` (trimmed), or the
/// literal value (tolerated for non-secrets such as URLs).
pub fn resolve_secret(v: &str) -> Result<String, String> {
    if let Some(var) = v.strip_prefix("env:") {
        std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))
    } else if let Some(path) = v.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {path}: {e}"))
    } else {
        Ok(v.to_string())
    }
}

crate::format::names! {
    /// A ready-made HTTP revocation call (`act::revoke` holds the method,
    /// URL and body of each).
    HttpTemplate {
        /// Keycloak: log the user out of every session.
        KeycloakLogoutUser = "keycloak_logout_user",
        /// Keycloak: delete the token's session.
        KeycloakDeleteSession = "keycloak_delete_session",
        /// Okta: revoke the user's grants to the token's client.
        OktaRevokeUserGrants = "okta_revoke_user_grants",
        /// Okta: clear the user's sessions and their OAuth tokens.
        OktaClearUserSessions = "okta_clear_user_sessions",
        /// Auth0: delete the user's refresh tokens.
        Auth0DeleteRefreshTokens = "auth0_delete_refresh_tokens",
        /// Auth0: delete the user's sessions.
        Auth0DeleteSessions = "auth0_delete_sessions",
        /// Ory Hydra: revoke the subject's consent to the client.
        HydraRevokeConsent = "hydra_revoke_consent",
        /// Ory Hydra: revoke the subject's login sessions.
        HydraRevokeLogin = "hydra_revoke_login",
    }
}

impl ResponseConfig {
    /// Cross-field checks: (key path, message).
    pub fn validate(&self, err: &mut dyn FnMut(&str, String)) {
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.revokers.iter().enumerate() {
            let k = |f: &str| format!("response.revokers[{i}].{f}");
            if r.name.trim().is_empty() || !names.insert(r.name.clone()) {
                err(&k("name"), "revoker and channel names must be non-empty and unique (breakers and audit entries use them)".into());
            }
            match r.kind {
                RevokerKind::Rfc7009 => {
                    if r.endpoint.is_none() {
                        err(
                            &k("endpoint"),
                            "rfc7009 needs the revocation endpoint URL".into(),
                        );
                    }
                    if r.client.is_none() && r.clients.is_empty() {
                        err(&k("client"), "rfc7009 needs client credentials: client = { client_id = \"…\", client_secret = \"env:…\" }".into());
                    }
                }
                RevokerKind::Http => {
                    if r.template.is_none() && r.url.is_none() {
                        err(&k("url"), "http needs a template or a url".into())
                    }
                }
                RevokerKind::DenyList => {
                    for (j, p) in r.token_places.iter().enumerate() {
                        if let Err(e) = TokenPlace::parse(p) {
                            err(&k(&format!("token_places[{j}]")), e);
                        }
                    }
                }
                RevokerKind::Caep => {
                    if r.endpoint.is_none() {
                        err(
                            &k("endpoint"),
                            "caep needs the receiver's push endpoint (RFC 8935)".into(),
                        );
                    }
                    if r.signing_key.is_none() {
                        err(
                            &k("signing_key"),
                            "caep needs a signing key (`file:/path/key.pem` or `env:NAME`)".into(),
                        );
                    }
                    match r.algorithm.as_deref().unwrap_or("ES256") {
                        "ES256" | "RS256" | "HS256" => {}
                        other => err(
                            &k("algorithm"),
                            format!("`{other}`: use ES256, RS256 or HS256"),
                        ),
                    }
                }
            }
        }
        for (i, c) in self.channels.iter().enumerate() {
            let k = |f: &str| format!("response.channels[{i}].{f}");
            if c.name.trim().is_empty() || !names.insert(c.name.clone()) {
                err(&k("name"), "revoker and channel names must be non-empty and unique (breakers and audit entries use them)".into());
            }
            match c.kind {
                ChannelKind::Email => {
                    if c.smtp_url.is_none() {
                        err(
                            &k("smtp_url"),
                            "email needs smtp_url, e.g. \"smtp://mail.example.com:587\"".into(),
                        );
                    }
                    if c.from.is_none() {
                        err(&k("from"), "email needs a sender address".into());
                    }
                    if c.to.is_empty() {
                        err(&k("to"), "email needs at least one recipient".into());
                    }
                    if let Some(t) = &c.tls
                        && !["starttls", "opportunistic", "none", "tls"].contains(&t.as_str())
                    {
                        err(
                            &k("tls"),
                            format!("`{t}`: use starttls, opportunistic, tls or none"),
                        );
                    }
                }
                ChannelKind::Pagerduty => {
                    if c.routing_key.is_none() {
                        err(
                            &k("routing_key"),
                            "pagerduty needs the integration's routing key (`env:NAME`)".into(),
                        );
                    }
                }
                _ => {
                    if c.url.is_none() {
                        err(&k("url"), "this channel needs a url".into());
                    }
                }
            }
            if c.kind == ChannelKind::Webhook && c.secret.is_none() {
                err(&k("secret"), "a generic webhook is signed (Standard Webhooks): set secret = \"env:NAME\" holding whsec_…".into());
            }
            if c.max_per_minute == 0 {
                err(&k("max_per_minute"), "must be at least 1".into());
            }
        }
        if self.delivery.max_attempts == 0 {
            err(
                "response.delivery.max_attempts",
                "must be at least 1".into(),
            );
        }
        if self.delivery.backoff_initial_ms > self.delivery.backoff_max_ms {
            err(
                "response.delivery.backoff_initial_ms",
                "cannot exceed backoff_max_ms".into(),
            );
        }
    }

    /// Do any revokers need raw tokens?
    pub fn needs_custody(&self) -> bool {
        self.revokers.iter().any(|r| r.kind == RevokerKind::Rfc7009)
    }
}
