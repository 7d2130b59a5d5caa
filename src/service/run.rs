//! `tokenwatch run`: the Kafka service on the main thread, and beside it
//! the dashboard, the ops endpoints and the dispatcher, on threads of
//! their own, under one shutdown.
//!
//! Start order: dashboard, ops endpoints, dispatcher, then the Kafka
//! service. SIGINT / SIGTERM stops the Kafka service first (checkpoint,
//! commit, leave the group); then [`Threads::stop`] stops the rest in the
//! reverse order: the dispatcher (the last decisions are in the outbox,
//! calls in flight finish, the rest waits for the next start), the ops
//! endpoints, the dashboard.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{dashboard, decode_settings, keys, load_config};
use crate::config::{self, Config};
use crate::custody::Custody;
use crate::enrich::Enricher;
use crate::health::Health;
use crate::shutdown::{Shutdown, Threads};

/// Where `tokenwatch run` differs from its configuration file.
#[derive(Debug, Default)]
pub struct RunOverrides {
    /// `--brokers`: replaces `kafka.brokers`.
    pub brokers: Option<String>,
    /// `--ops-listen`: replaces `kafka.ops_listen`.
    pub ops_listen: Option<std::net::SocketAddr>,
}

/// Run the service with the configuration at `config` until SIGINT or
/// SIGTERM.
pub fn run(config: &Path, overrides: RunOverrides) -> Result<()> {
    let (mut cfg, base) = load_config(Some(config))?;
    if let Some(k) = cfg.kafka.as_mut() {
        if let Some(b) = overrides.brokers {
            k.brokers = b;
        }
        if let Some(a) = overrides.ops_listen {
            k.ops_listen = Some(a);
        }
    }
    let enricher = Arc::new(Enricher::from_config(&cfg, &base).context("loading GeoIP databases")?);
    let settings = decode_settings(&cfg, &base, &keys::service(&cfg)?)?;
    let stop = Shutdown::new();
    stop.on_ctrl_c()
        .context("installing the SIGINT/SIGTERM handler")?;
    let health = Arc::new(Health::default());
    let custody = custody(&cfg)?;
    let deny = Arc::new(crate::act::DenyList::default());
    let ops_listen = cfg.kafka.as_ref().and_then(|k| k.ops_listen);
    let prometheus = if ops_listen.is_some() || cfg.dashboard.enabled {
        Some(crate::ops::install_recorder().map_err(anyhow::Error::msg)?)
    } else {
        None
    };

    let mut threads = Threads::new();
    if cfg.dashboard.enabled {
        dashboard(
            &cfg,
            cfg.dashboard.listen,
            health.clone(),
            prometheus.clone(),
            Some(deny.clone()),
            &mut threads,
            cfg.dashboard.users.is_empty() && cfg.dashboard.api_keys.is_empty(),
        )?;
    }
    if let (Some(addr), Some(prometheus)) = (ops_listen, prometheus) {
        let check = deny_check(&cfg, &deny, &settings);
        crate::ops::spawn(addr, health.clone(), prometheus, check, &mut threads)
            .map_err(anyhow::Error::msg)?;
    }
    crate::act::start(&cfg, custody.clone(), deny, &mut threads)
        .context("starting the dispatcher")?;

    let result = crate::kafka::run(&cfg, settings, custody, enricher, stop, health);
    threads.stop();
    let stats = result?;
    if let Some(l) = &stats.latency_us {
        tracing::info!(
            p50_ms = l.p50 as f64 / 1000.0,
            p99_ms = l.p99 as f64 / 1000.0,
            p999_ms = l.p999 as f64 / 1000.0,
            max_ms = l.max as f64 / 1000.0,
            findings = l.count,
            "broker timestamp to finding produced"
        );
    }
    tracing::info!(
        consumed = stats.consumed,
        "stopped cleanly, state checkpointed"
    );
    Ok(())
}

/// The deny-list check the ops endpoints serve, when a deny-list revoker
/// is configured.
fn deny_check(
    cfg: &Config,
    deny: &Arc<crate::act::DenyList>,
    settings: &crate::decode::DecodeSettings,
) -> Option<crate::ops::Check> {
    cfg.response
        .revokers
        .iter()
        .find(|r| r.kind == config::RevokerKind::DenyList)
        .map(|r| crate::ops::Check {
            deny: deny.clone(),
            settings: settings.clone(),
            // Validated with the configuration.
            places: r
                .token_places
                .iter()
                .filter_map(|p| config::TokenPlace::parse(p).ok())
                .collect(),
        })
}

/// Raw-token custody, when a revoker needs raw tokens.
fn custody(cfg: &Config) -> Result<Option<Arc<Custody>>> {
    if !cfg.response.needs_custody() {
        return Ok(None);
    }
    let c = &cfg.response.custody;
    let key = match &c.key {
        Some(k) => {
            let text = config::resolve_secret(k)
                .map_err(|e| anyhow::anyhow!("response.custody.key: {e}"))?;
            crate::custody::parse_key(&text)?
        }
        None => {
            tracing::warn!(
                "response.custody.key is not set: raw tokens are sealed with a random key for this \
                 process only, so revocations still pending at a restart cannot present their token \
                 (set key = \"env:TOKENWATCH_CUSTODY_KEY\", e.g. from `openssl rand -hex 32`)"
            );
            zeroize::Zeroizing::new(rand::random::<[u8; 32]>())
        }
    };
    Ok(Some(Arc::new(Custody::new(
        &key,
        c.max_tokens,
        c.max_age_secs,
    ))))
}
