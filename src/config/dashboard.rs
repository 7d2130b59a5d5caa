//! `[dashboard]`: the web console and its JSON API: where it listens, who
//! may log in (local users with Argon2id hashes, API keys for automation),
//! and how long sessions last.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Serve the dashboard from `tokenwatch run`.
    pub enabled: bool,
    /// Where the dashboard listens (`127.0.0.1:8080`; behind a TLS proxy when exposed).
    pub listen: SocketAddr,
    /// Local users. Hash passwords with `tokenwatch hash-password`. With no
    /// users, `run` creates a one-time `admin` password and prints it once:
    /// it logs in once, within an hour.
    pub users: Vec<UserConfig>,
    /// Bearer keys for the JSON API (`Authorization: Bearer <key>`).
    pub api_keys: Vec<ApiKeyConfig>,
    /// A session ends after this long without a request…
    pub idle_timeout_secs: u64,
    /// …and after this long in any case.
    pub absolute_timeout_secs: u64,
    /// Failed logins allowed per client network (IPv4 address, IPv6 /64)
    /// and per user name from that network before each further failure
    /// doubles the wait (1 s, 2 s, 4 s… at most 15 min; forgotten after an
    /// hour). A correct password from another network is never refused.
    pub login_attempts_per_minute: u32,
    /// Reverse proxies in front of the dashboard (CIDRs): from these peers
    /// the client is the right-most X-Forwarded-For address not listed
    /// here. Empty (default): the peer address is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Mark cookies `Secure`. Default: when `response.dashboard_url` is https
    /// (the dashboard behind a TLS-terminating proxy).
    pub secure_cookies: Option<bool>,
    /// Also serve `/metrics`, `/healthz` and `/readyz` here, without login
    /// (they are always on `[kafka] ops_listen` when that is set).
    pub ops_endpoints: bool,
    /// Single sign-on through an OpenID Connect provider (optional).
    pub oidc: Option<OidcConfig>,
}

/// `[dashboard.oidc]`: the authorization code flow with PKCE.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    /// The dashboard's client id at the provider.
    pub client_id: String,
    /// `env:NAME` or `file:/path`.
    pub client_secret: String,
    /// This dashboard's callback, registered at the provider:
    /// `https://tokenwatch.example.com/login/oidc/callback`.
    pub redirect_url: String,
    /// Scopes asked for; must include `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim naming the person, the key of `roles`: `sub`
    /// (default; unique under the verified issuer) or e.g. `email`, which
    /// is accepted only with `email_verified: true`. Never a fallback from
    /// one to the other.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Roles by user name; people not listed get `default_role`, or are refused.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, Role>,
    /// The role of people not in `roles`; none refuses them.
    #[serde(default)]
    pub default_role: Option<Role>,
    /// The login button's text.
    #[serde(default = "default_label")]
    pub label: String,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_username_claim() -> String {
    "sub".into()
}

fn default_label() -> String {
    "Log in with single sign-on".into()
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            users: Vec::new(),
            api_keys: Vec::new(),
            idle_timeout_secs: 1800,
            absolute_timeout_secs: 43200,
            login_attempts_per_minute: 5,
            trusted_proxies: Vec::new(),
            secure_cookies: None,
            ops_endpoints: true,
            oidc: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Acts on incidents: acknowledge, resolve, revoke, approve.
    Responder,
    /// Rules (modes), fuses.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The login name.
    pub name: String,
    /// What this user may do (`viewer`, `responder`, `admin`).
    pub role: Role,
    /// Argon2id PHC string (`$argon2id$v=19$…`), from `tokenwatch hash-password`.
    pub password_hash: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key's name, recorded as the actor in the audit log.
    pub name: String,
    /// What this key may do (`viewer`, `responder`, `admin`).
    pub role: Role,
    /// The key itself, as `env:NAME` or `file:/path` (at least 32 characters).
    pub key: String,
}

impl DashboardConfig {
    pub fn validate(&self, err: &mut dyn FnMut(&str, String)) {
        let mut names = std::collections::BTreeSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.trim().is_empty() || !names.insert(u.name.clone()) {
                err(
                    &format!("dashboard.users[{i}].name"),
                    "user names must be non-empty and unique".into(),
                );
            }
            if !u.password_hash.starts_with("$argon2id$") {
                err(
                    &format!("dashboard.users[{i}].password_hash"),
                    "must be an Argon2id hash ($argon2id$…): make one with `tokenwatch hash-password`"
                        .into(),
                );
            }
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            if !(k.key.starts_with("env:") || k.key.starts_with("file:")) {
                err(
                    &format!("dashboard.api_keys[{i}].key"),
                    "write the key as env:NAME or file:/path, never inline".into(),
                );
            }
        }
        if self.idle_timeout_secs == 0 || self.absolute_timeout_secs < self.idle_timeout_secs {
            err(
                "dashboard.absolute_timeout_secs",
                "timeouts must be > 0 and the absolute one at least the idle one".into(),
            );
        }
        if let Some(o) = &self.oidc {
            if !(o.client_secret.starts_with("env:") || o.client_secret.starts_with("file:")) {
                err(
                    "dashboard.oidc.client_secret",
                    "write the secret as env:NAME or file:/path, never inline".into(),
                );
            }
            if !o.redirect_url.ends_with("/login/oidc/callback") {
                err(
                    "dashboard.oidc.redirect_url",
                    "must be this dashboard's https://…/login/oidc/callback (register it at the provider)".into(),
                );
            }
            if !o.scopes.iter().any(|s| s == "openid") {
                err("dashboard.oidc.scopes", "must include `openid`".into());
            }
        }
        if self.login_attempts_per_minute == 0 {
            err("dashboard.login_attempts_per_minute", "must be > 0".into());
        }
    }
}
