//! Top-level wiring of the long-running commands: `run` (the Kafka
//! service with its dashboard, ops endpoints and dispatcher) and `demo`
//! (a replay of the bundled world with the same dashboard and
//! dispatcher), each under one [`crate::shutdown`]. Also what every
//! command needs to start: the configuration, the token hash key, the
//! decode settings.
//!
//! `main.rs` parses the command line and calls in here; this module
//! decides which threads start, in which order, and on what they stop.
//!
//! Architecture Invariant: the pure core is built here from the
//! configuration and handed to the edges; nothing here decodes, detects or
//! decides itself. `anyhow` is allowed here (top-level wiring) and
//! nowhere below.

mod demo;
pub mod keys;
mod run;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;

use crate::config::{self, Config};
use crate::decode::DecodeSettings;
use crate::health::Health;
use crate::shutdown::Threads;

pub use demo::{DemoOptions, demo};
pub use run::{RunOverrides, run};

/// The documented default configuration (used when no `--config` is given).
pub const DEFAULT_RULES: &str = include_str!("../../rules.toml");

/// Load `path`, or the built-in rules; every error at once. Returns the
/// configuration and the directory its relative paths are relative to.
pub fn load_config(path: Option<&Path>) -> Result<(Config, PathBuf)> {
    let result = match path {
        Some(p) => config::load(p).map(|c| (c, p.parent().unwrap_or(Path::new(".")).to_path_buf())),
        None => config::load_str(DEFAULT_RULES, "rules.toml (built-in)")
            .map(|c| (c, PathBuf::from("."))),
    };
    result.map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid configuration:\n  {}", lines.join("\n  "))
    })
}

/// Decode settings under `key`, with the configured JWT verifier.
pub fn decode_settings(cfg: &Config, base: &Path, key: &[u8]) -> Result<DecodeSettings> {
    let settings = DecodeSettings::new(cfg, key).map_err(anyhow::Error::msg)?;
    Ok(
        match crate::jwks::load(&cfg.identity, base).map_err(anyhow::Error::msg)? {
            Some(v) => settings.with_verifier(v),
            None => settings,
        },
    )
}

/// How long the printed one-time admin password is accepted (it is spent by
/// its first login in any case).
const ONE_TIME_PASSWORD_SECS: i64 = 3600;

/// Start the dashboard on a thread of `threads`. With `one_time_admin`, an
/// `admin` user with a random password is added and the password printed
/// once (on stderr); it logs in once, within [`ONE_TIME_PASSWORD_SECS`].
fn dashboard(
    cfg: &Config,
    listen: SocketAddr,
    health: Arc<Health>,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    deny: Option<Arc<crate::act::DenyList>>,
    threads: &mut Threads,
    one_time_admin: bool,
) -> Result<SocketAddr> {
    use crate::web;
    let password = one_time_admin.then(|| {
        let mut p = web::auth::random_token();
        p.truncate(16);
        p
    });
    let mut one_time = Vec::new();
    if let Some(p) = &password {
        one_time.push(web::auth::OneTimeUser {
            name: "admin".to_string(),
            role: config::Role::Admin,
            password_hash: web::auth::hash_password(p).map_err(anyhow::Error::msg)?,
            expires_ms: crate::clock::now_ms() + ONE_TIME_PASSWORD_SECS * 1000,
        });
    }
    let secure = cfg
        .dashboard
        .secure_cookies
        .unwrap_or_else(|| cfg.response.dashboard_url.starts_with("https://"));
    let auth = web::Auth::new(&cfg.dashboard, one_time, secure).map_err(anyhow::Error::msg)?;
    let st = web::WebState::new(Arc::new(cfg.clone()), auth, health, prometheus, deny)
        .map_err(anyhow::Error::msg)?;
    let bound = web::spawn(listen, st, threads).map_err(|e| {
        anyhow::anyhow!("{e}\n  (for the demo: --listen 127.0.0.1:0 picks a free port, --no-dashboard only prints)")
    })?;
    let url = format!("http://{bound}/");
    match password {
        Some(p) => eprintln!(
            "dashboard: {url}  user `admin`, one-time password `{p}` (logs in once, within {} minutes; add [[dashboard.users]] to keep users)",
            ONE_TIME_PASSWORD_SECS / 60
        ),
        None => eprintln!("dashboard: {url}"),
    }
    Ok(bound)
}
