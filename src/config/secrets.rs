//! Every secret-bearing configuration value in one list, so one place
//! decides what the dashboard may show (never a value: "set, from
//! env:NAME") and what `check-config` refuses (a secret written inline).
//!
//! A Slack or Teams webhook URL is a secret (the URL is the credential), a
//! generic webhook URL is not (it is signed with its own secret).

use super::ChannelKind;
use super::{Config, ConfigError, RevokerConfig};

/// One secret-bearing value: its key (as in error messages) and its value.
pub struct SecretRef<'a> {
    pub key: String,
    pub value: &'a str,
}

/// How a secret is configured, for people: never its value.
pub fn describe(value: &str) -> String {
    if let Some(v) = value.strip_prefix("env:") {
        format!("set, from env:{v}")
    } else if let Some(p) = value.strip_prefix("file:") {
        format!("set, from file:{p}")
    } else if value.is_empty() {
        "not set".into()
    } else {
        "inline (refused by check-config: use env: or file:)".into()
    }
}

fn is_reference(value: &str) -> bool {
    value.starts_with("env:") || value.starts_with("file:")
}

/// Header names whose values are credentials.
fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "key",
        "token",
        "secret",
        "password",
    ]
    .iter()
    .any(|s| n.contains(s))
}

fn revoker_secrets<'a>(i: usize, r: &'a RevokerConfig, out: &mut Vec<SecretRef<'a>>) {
    let k = |f: &str| format!("response.revokers[{i}].{f}");
    if let Some(c) = &r.client {
        out.push(SecretRef {
            key: k("client.client_secret"),
            value: &c.client_secret,
        });
    }
    for (id, c) in &r.clients {
        out.push(SecretRef {
            key: k(&format!("clients.{id}.client_secret")),
            value: &c.client_secret,
        });
    }
    if let Some(a) = &r.authorization {
        out.push(SecretRef {
            key: k("authorization"),
            value: a,
        });
    }
    if let Some(a) = &r.admin_auth {
        out.push(SecretRef {
            key: k("admin_auth.client.client_secret"),
            value: &a.client.client_secret,
        });
    }
    if let Some(s) = &r.signing_key {
        out.push(SecretRef {
            key: k("signing_key"),
            value: s,
        });
    }
    for (name, v) in &r.headers {
        // A header built from placeholders (`{jti}`) is not a secret.
        if secret_header(name) && !v.contains('{') {
            out.push(SecretRef {
                key: k(&format!("headers.{name}")),
                value: v,
            });
        }
    }
}

/// Every secret-bearing value that is set.
pub fn secrets(cfg: &Config) -> Vec<SecretRef<'_>> {
    let mut out = Vec::new();
    if let Some(k) = &cfg.input.token_hash_key {
        out.push(SecretRef {
            key: "input.token_hash_key".into(),
            value: k,
        });
    }
    if let Some(k) = &cfg.response.custody.key {
        out.push(SecretRef {
            key: "response.custody.key".into(),
            value: k,
        });
    }
    for (i, r) in cfg.response.revokers.iter().enumerate() {
        revoker_secrets(i, r, &mut out);
    }
    for (i, c) in cfg.response.channels.iter().enumerate() {
        let k = |f: &str| format!("response.channels[{i}].{f}");
        if matches!(c.kind, ChannelKind::Slack | ChannelKind::Teams)
            && let Some(u) = &c.url
        {
            out.push(SecretRef {
                key: k("url"),
                value: u,
            });
        }
        for (f, v) in [
            ("secret", &c.secret),
            ("routing_key", &c.routing_key),
            ("password", &c.password),
        ] {
            if let Some(v) = v {
                out.push(SecretRef {
                    key: k(f),
                    value: v,
                });
            }
        }
    }
    for (i, a) in cfg.dashboard.api_keys.iter().enumerate() {
        out.push(SecretRef {
            key: format!("dashboard.api_keys[{i}].key"),
            value: &a.key,
        });
    }
    if let Some(o) = &cfg.dashboard.oidc {
        out.push(SecretRef {
            key: "dashboard.oidc.client_secret".into(),
            value: &o.client_secret,
        });
    }
    out
}

/// `check-config`: a secret written inline in the file is an error naming
/// its key and line.
pub fn inline_errors(cfg: &Config, file: &str, text: &str) -> Vec<ConfigError> {
    secrets(cfg)
        .into_iter()
        .filter(|s| !is_reference(s.value) && !s.value.is_empty())
        .map(|s| ConfigError {
            file: file.to_string(),
            line: super::key_line(text, &s.key),
            message: "a secret written inline: put it in the environment (`env:NAME`) or a \
                      file readable only by tokenwatch (`file:/path`)"
                .into(),
            key: s.key,
        })
        .collect()
}

/// The response configuration as the dashboard shows it: every setting
/// that is not a secret, and for each secret only how it is set.
pub fn redacted_response(cfg: &Config) -> String {
    let mut s = String::new();
    let secrets = secrets(cfg);
    let state = |key: &str| {
        secrets
            .iter()
            .find(|x| x.key == key)
            .map(|x| describe(x.value))
    };
    s.push_str(&format!(
        "dashboard_url = {:?}\ncustody.key = {}\ncustody.max_age_secs = {}\ncustody.max_tokens = {}\n",
        cfg.response.dashboard_url,
        state("response.custody.key").unwrap_or_else(|| "not set".into()),
        cfg.response.custody.max_age_secs,
        cfg.response.custody.max_tokens,
    ));
    s.push_str(&format!("delivery = {:?}\n", cfg.response.delivery));
    for (i, r) in cfg.response.revokers.iter().enumerate() {
        s.push_str(&format!(
            "\n[[revokers]] {:?}: kind {:?}, client_ids {:?}, issuers {:?}",
            r.name, r.kind, r.client_ids, r.issuers
        ));
        if let Some(t) = r.template {
            s.push_str(&format!("\n  template = {:?}", t.as_str()));
        }
        for (what, v) in [
            ("endpoint", &r.endpoint),
            ("introspection_endpoint", &r.introspection_endpoint),
            ("method", &r.method),
            ("url", &r.url),
        ] {
            if let Some(v) = v {
                s.push_str(&format!("\n  {what} = {v:?}"));
            }
        }
        if let Some(c) = &r.client {
            s.push_str(&format!("\n  client.client_id = {:?}", c.client_id));
        }
        for (name, v) in &r.headers {
            let shown = match state(&format!("response.revokers[{i}].headers.{name}")) {
                Some(st) => st,
                None => format!("{v:?}"),
            };
            s.push_str(&format!("\n  headers.{name} = {shown}"));
        }
        let prefix = format!("response.revokers[{i}].");
        for x in secrets.iter().filter(|x| x.key.starts_with(&prefix)) {
            let field = x.key.trim_start_matches(&prefix);
            if !field.starts_with("headers.") {
                s.push_str(&format!("\n  {field} = {}", describe(x.value)));
            }
        }
        s.push('\n');
    }
    for (i, c) in cfg.response.channels.iter().enumerate() {
        s.push_str(&format!(
            "\n[[channels]] {:?}: kind {:?}, min_severity {:?}, kinds {:?}, max_per_minute {}",
            c.name, c.kind, c.min_severity, c.kinds, c.max_per_minute
        ));
        let prefix = format!("response.channels[{i}].");
        match (&c.url, state(&format!("{prefix}url"))) {
            (_, Some(st)) => s.push_str(&format!("\n  url = {st}")),
            (Some(u), None) => s.push_str(&format!("\n  url = {:?}", origin(u))),
            (None, None) => {}
        }
        for x in secrets
            .iter()
            .filter(|x| x.key.starts_with(&prefix) && !x.key.ends_with(".url"))
        {
            s.push_str(&format!(
                "\n  {} = {}",
                x.key.trim_start_matches(&prefix),
                describe(x.value)
            ));
        }
        if let Some(u) = &c.smtp_url {
            s.push_str(&format!("\n  smtp_url = {:?}", origin(u)));
        }
        if !c.to.is_empty() {
            s.push_str(&format!("\n  from = {:?}, to = {:?}", c.from, c.to));
        }
        s.push('\n');
    }
    s
}

/// `scheme://host[:port]` of a URL: its path and query may carry a token.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    // user:password@host
    let host = host.rsplit('@').next().unwrap_or(host);
    if scheme.is_empty() {
        "(not a URL)".into()
    } else {
        format!("{scheme}://{host}/…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[input]
token_hash_key = "inline-hash-key"

[[response.revokers]]
name = "idp"
kind = "http"
url = "https://idp.example/admin/tokens/{jti}"
authorization = "Bearer inline-admin-token"
headers = { x-api-key = "env:IDP_KEY", x-revoked = "{jti}" }

[[response.channels]]
name = "slack"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"

[[response.channels]]
name = "pd"
kind = "pagerduty"
routing_key = "inline-routing-key-123"

[[response.channels]]
name = "hook"
kind = "webhook"
url = "https://hooks.example/in?token=querysecret"
secret = "file:/etc/tokenwatch/whsec"
"#;

    /// Issue 14, point 1: no secret value in what the dashboard shows, and
    /// each inline secret is a check-config error with its line.
    #[test]
    fn secrets_are_described_never_shown_and_inline_ones_are_refused() {
        let cfg = crate::config::load_str(CFG, "t.toml").expect("valid");
        let shown = redacted_response(&cfg);
        for secret in [
            "inline-admin-token",
            "XXXXSECRET",
            "inline-routing-key-123",
            "querysecret",
            "IDP_KEY\"",
        ] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        assert!(
            shown.contains("headers.x-api-key = set, from env:IDP_KEY"),
            "{shown}"
        );
        assert!(shown.contains("headers.x-revoked = \"{jti}\""), "{shown}");
        assert!(shown.contains("secret = set, from file:/etc/tokenwatch/whsec"));
        assert!(shown.contains("url = inline (refused by check-config"));
        let errs = inline_errors(&cfg, "t.toml", CFG);
        let keys: Vec<(&str, Option<usize>)> =
            errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            vec![
                ("input.token_hash_key", Some(3)),
                ("response.revokers[0].authorization", Some(9)),
                ("response.channels[0].url", Some(15)),
                ("response.channels[1].routing_key", Some(20)),
            ]
        );
    }
}
