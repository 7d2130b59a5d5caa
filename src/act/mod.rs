//! Act: the dispatcher that carries out what the policy decided.
//!
//! The processing thread writes action requests to the store's outbox in
//! the same transaction as the findings that caused them (before the input
//! offset is committed). This dispatcher, on its own thread and runtime,
//! expands each pending action into one delivery per endpoint (revokers in
//! scope; alert channels by routing), claims due deliveries with a lease,
//! calls the endpoints concurrently with timeouts, and records each
//! outcome: retries with exponential backoff and jitter (honouring
//! `Retry-After`), a circuit breaker per endpoint (opening is alerted on
//! the other channels), per-channel rate limits, idempotency keys (the
//! delivery id). Everything it does is audited.
//!
//! Architecture Invariant: detection never waits for a delivery: the
//! dispatcher shares nothing with the processing thread but the store and
//! custody, and a slow endpoint only fills its own queue.

pub mod notify;
pub mod retry;
pub mod revoke;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::config::{Config, ResponseConfig};
use crate::custody::Custody;
use crate::store::{ActionRecord, ActionRow, DeliveryRow, Finish, Store};
use notify::AlertView;
use retry::{Breaker, Permit, RateLimit, Transition};

use crate::clock::Clock;

/// The result of one call to an endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        status: Option<u16>,
        detail: String,
    },
    /// The endpoint does not apply (e.g. no raw token, no subject).
    Skipped {
        why: String,
    },
    /// Will not work by retrying (4xx, configuration).
    Failed {
        status: Option<u16>,
        error: String,
    },
    /// Worth retrying (5xx, 429, timeouts, refused connections).
    Retry {
        status: Option<u16>,
        error: String,
        retry_after_ms: Option<u64>,
    },
}

impl Outcome {
    fn context(self, what: &str) -> Outcome {
        match self {
            Outcome::Failed { status, error } => Outcome::Failed {
                status,
                error: format!("{what}: {error}"),
            },
            Outcome::Retry {
                status,
                error,
                retry_after_ms,
            } => Outcome::Retry {
                status,
                error: format!("{what}: {error}"),
                retry_after_ms,
            },
            o => o,
        }
    }
}

/// Map an HTTP response (or transport error) to an outcome.
pub async fn http_outcome(
    resp: Result<reqwest::Response, reqwest::Error>,
    now_ms: i64,
    ok: impl FnOnce(u16) -> String,
) -> Outcome {
    match resp {
        Ok(r) => {
            let status = r.status().as_u16();
            if r.status().is_success() {
                return Outcome::Delivered {
                    status: Some(status),
                    detail: ok(status),
                };
            }
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry::parse_retry_after(v, now_ms));
            let body: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let error = format!(
                "HTTP {status}{}{}",
                if body.is_empty() { "" } else { ": " },
                body.trim()
            );
            if status == 408 || status == 429 || status >= 500 {
                Outcome::Retry {
                    status: Some(status),
                    error,
                    retry_after_ms: retry_after,
                }
            } else {
                Outcome::Failed {
                    status: Some(status),
                    error,
                }
            }
        }
        Err(e) => {
            let error = if e.is_timeout() {
                "timed out".to_string()
            } else if e.is_connect() {
                format!(
                    "cannot connect: {}",
                    std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.to_string())
                )
            } else {
                e.to_string()
            };
            Outcome::Retry {
                status: None,
                error,
                retry_after_ms: None,
            }
        }
    }
}

/// The gateway deny-list: token ids refused until a time.
#[derive(Debug, Default)]
pub struct DenyList {
    map: DashMap<String, i64>,
}

impl DenyList {
    pub fn insert(&self, token_id: &str, until_ms: i64) {
        let mut e = self.map.entry(token_id.to_string()).or_insert(until_ms);
        *e = (*e).max(until_ms);
    }

    pub fn until(&self, token_id: &str) -> Option<i64> {
        self.map.get(token_id).map(|e| *e)
    }

    /// The first of `ids` denied at `now_ms`, with the time it is denied until.
    pub fn check(&self, ids: &[String], now_ms: i64) -> Option<(String, i64)> {
        ids.iter().find_map(|id| {
            self.map
                .get(id)
                .filter(|u| **u > now_ms)
                .map(|u| (id.clone(), *u))
        })
    }

    fn forget_expired(&self, now_ms: i64) {
        self.map.retain(|_, u| *u > now_ms);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

struct Shared {
    cfg: ResponseConfig,
    http: reqwest::Client,
    custody: Option<Arc<Custody>>,
    deny: Arc<DenyList>,
    admin: revoke::AdminTokens,
    timeout: Duration,
}

/// Start the dispatcher on a thread of `threads`, on the store at
/// `cfg.store.path`. It stops (after the calls in flight finish) on the
/// thread's stop signal.
pub fn start(
    cfg: &Config,
    custody: Option<Arc<Custody>>,
    deny: Arc<DenyList>,
    threads: &mut crate::shutdown::Threads,
) -> std::io::Result<()> {
    let rc = cfg.response.clone();
    let path = cfg.store.path.clone();
    threads.spawn("dispatcher", 0, move |stop| async move {
        let store = match Store::open(&path) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "dispatcher cannot open the store");
                return;
            }
        };
        let http = match reqwest::Client::builder()
            .user_agent(concat!("tokenwatch/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "dispatcher cannot build its http client");
                return;
            }
        };
        let shared = Arc::new(Shared {
            timeout: Duration::from_millis(rc.delivery.timeout_ms.max(1)),
            cfg: rc,
            http,
            custody,
            deny,
            admin: revoke::AdminTokens::default(),
        });
        Dispatcher::new(shared, store, crate::clock::system())
            .run(stop)
            .await
    })
}

struct Dispatcher {
    shared: Arc<Shared>,
    store: Store,
    breakers: HashMap<String, Breaker>,
    limits: HashMap<String, RateLimit>,
    in_flight: usize,
    last_housekeeping: i64,
    clock: Clock,
}

enum Work {
    Revoke(String),
    Alert(Box<AlertView>),
}

impl Dispatcher {
    fn new(shared: Arc<Shared>, store: Store, clock: Clock) -> Dispatcher {
        let mut breakers = HashMap::new();
        // Open breakers stay open across a restart.
        if let Ok(eps) = store.endpoints() {
            for e in eps {
                if e.state != "closed" {
                    let mut b = Breaker::new(&shared.cfg.delivery);
                    b.failures = e.failures;
                    b.state = retry::BreakerState::Open {
                        until_ms: e.open_until_ms,
                    };
                    breakers.insert(e.name, b);
                }
            }
        }
        let limits = shared
            .cfg
            .channels
            .iter()
            .map(|c| (c.name.clone(), RateLimit::new(c.max_per_minute)))
            .collect();
        Dispatcher {
            shared,
            store,
            breakers,
            limits,
            in_flight: 0,
            last_housekeeping: 0,
            clock,
        }
    }

    async fn run(mut self, stop: crate::shutdown::Shutdown) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(DeliveryRow, Outcome)>();
        let poll = Duration::from_millis(self.shared.cfg.delivery.poll_ms.max(10));
        loop {
            let stopping = stop.is_triggered();
            if stopping && self.in_flight == 0 {
                break;
            }
            if !stopping && let Err(e) = self.step(&tx) {
                tracing::warn!(error = %e, "dispatcher step failed");
            }
            tokio::select! {
                Some((d, out)) = rx.recv() => {
                    self.in_flight -= 1;
                    self.record(d, out);
                    while let Ok((d, out)) = rx.try_recv() {
                        self.in_flight -= 1;
                        self.record(d, out);
                    }
                }
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Expand new actions, start due deliveries, housekeeping.
    fn step(
        &mut self,
        tx: &tokio::sync::mpsc::UnboundedSender<(DeliveryRow, Outcome)>,
    ) -> Result<(), crate::store::StoreError> {
        let now = (self.clock)();
        for a in self.store.pending_actions(256)? {
            let (endpoints, why) = self.route(&a);
            self.store.expand(&a, &endpoints, &why, now)?;
        }
        let free = self
            .shared
            .cfg
            .delivery
            .concurrency
            .max(1)
            .saturating_sub(self.in_flight);
        if free > 0 {
            let lease = (self.shared.cfg.delivery.timeout_ms as i64) * 3 + 5_000;
            for d in self.store.claim_due(now, lease, free)? {
                self.start(d, now, tx)?;
            }
        }
        if now - self.last_housekeeping >= 2_000 {
            self.last_housekeeping = now;
            for (id, until) in self.store.denied(now)? {
                self.shared.deny.insert(&id, until);
            }
            self.shared.deny.forget_expired(now);
            if let Some(c) = &self.shared.custody {
                c.purge_expired(now);
                crate::telemetry::custody_tokens(c.len());
                crate::telemetry::custody_refused(
                    c.refused.load(std::sync::atomic::Ordering::Relaxed),
                );
            }
            crate::telemetry::outbox_backlog(self.store.outbox_backlog()?);
        }
        Ok(())
    }

    fn view(&self, a: &ActionRow) -> AlertView {
        let action = ActionRecord::parse(&a.json);
        let (f, i, done) = self
            .store
            .alert_context(&a.finding_id, &a.incident_id)
            .unwrap_or_default();
        AlertView::build(
            &action,
            f.as_ref(),
            i.as_ref(),
            &done,
            &self.shared.cfg.dashboard_url,
        )
    }

    /// Which endpoints an action goes to, or why none.
    fn route(&self, a: &ActionRow) -> (Vec<String>, String) {
        let cfg = &self.shared.cfg;
        if a.kind == "revoke" {
            let action = ActionRecord::parse(&a.json);
            let client = action.client_id.as_deref();
            let issuer = self
                .shared
                .custody
                .as_ref()
                .and_then(|c| c.facts(&a.token_id))
                .and_then(|f| f.issuer);
            let eps: Vec<String> = cfg
                .revokers
                .iter()
                .filter(|r| revoke::in_scope(r, client, issuer.as_deref()))
                .map(|r| r.name.clone())
                .collect();
            let why = if cfg.revokers.is_empty() {
                "no [[response.revokers]] configured: nothing can cut the token off".to_string()
            } else {
                format!("no revoker in scope for client {}", client.unwrap_or("?"))
            };
            (eps, why)
        } else {
            let v = self.view(a);
            let exclude = ActionRecord::parse(&a.json).exclude;
            let eps = cfg
                .channels
                .iter()
                .filter(|c| Some(&c.name) != exclude.as_ref() && notify::routes_to(c, &v))
                .map(|c| c.name.clone())
                .collect();
            (eps, "no alert channel routes this alert".into())
        }
    }

    fn start(
        &mut self,
        d: DeliveryRow,
        now: i64,
        tx: &tokio::sync::mpsc::UnboundedSender<(DeliveryRow, Outcome)>,
    ) -> Result<(), crate::store::StoreError> {
        let breaker = self
            .breakers
            .entry(d.endpoint.clone())
            .or_insert_with(|| Breaker::new(&self.shared.cfg.delivery));
        if let Permit::Wait(until) = breaker.permit(now) {
            self.store.finish(
                &d,
                &Finish::Defer {
                    why: format!(
                        "circuit breaker open for {} (probing again later)",
                        d.endpoint
                    ),
                    next_ms: until,
                },
                now,
            )?;
            return Ok(());
        }
        let work = if d.action.kind == "revoke" {
            Work::Revoke(d.endpoint.clone())
        } else {
            if let Some(l) = self.limits.get_mut(&d.endpoint)
                && let Err(next) = l.take(now)
            {
                // A probe permit was taken: give it back.
                if let Some(b) = self.breakers.get_mut(&d.endpoint)
                    && b.state == retry::BreakerState::HalfOpen
                {
                    b.state = retry::BreakerState::Open { until_ms: now };
                }
                self.store.finish(
                    &d,
                    &Finish::Defer {
                        why: format!(
                            "rate limit of {} reached: waits for the next minute",
                            d.endpoint
                        ),
                        next_ms: next,
                    },
                    now,
                )?;
                return Ok(());
            }
            Work::Alert(Box::new(self.view(&d.action)))
        };
        self.in_flight += 1;
        let shared = self.shared.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let out = execute(&shared, &d, work, now).await;
            let _ = tx.send((d, out));
        });
        Ok(())
    }

    /// Record an outcome: breaker, backoff, store, audit, metrics, alerts.
    fn record(&mut self, d: DeliveryRow, out: Outcome) {
        let now = (self.clock)();
        let cfg = self.shared.cfg.delivery.clone();
        let breaker = self
            .breakers
            .entry(d.endpoint.clone())
            .or_insert_with(|| Breaker::new(&cfg));
        let transition = match &out {
            Outcome::Delivered { .. } => breaker.success(&cfg),
            Outcome::Retry { .. } => breaker.failure(&cfg, now),
            // The endpoint answered: it is up.
            Outcome::Failed {
                status: Some(_), ..
            } => breaker.success(&cfg),
            _ => None,
        };
        let (state, failures, until) = (
            breaker.state,
            breaker.failures,
            match breaker.state {
                retry::BreakerState::Open { until_ms } => until_ms,
                _ => 0,
            },
        );
        let result = match &out {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Failed { .. } => "failed",
            Outcome::Retry { .. } => "retry",
        };
        crate::telemetry::delivery(&d.action.kind, &d.endpoint, result);
        let finish = match out {
            Outcome::Delivered { status, detail } => Finish::Delivered { status, detail },
            Outcome::Skipped { why } => Finish::Skipped { why },
            Outcome::Failed { status, error } => Finish::Failed { status, error },
            Outcome::Retry {
                status,
                error,
                retry_after_ms,
            } => {
                if d.attempts + 1 >= cfg.max_attempts {
                    Finish::Failed {
                        status,
                        error: format!("gave up after {} attempts: {error}", d.attempts + 1),
                    }
                } else {
                    let wait =
                        retry::backoff_ms(&cfg, d.attempts, rand::random::<f64>(), retry_after_ms);
                    tracing::info!(
                        kind = %d.action.kind,
                        token_id = %d.action.token_id,
                        endpoint = %d.endpoint,
                        %error,
                        attempt = d.attempts + 1,
                        of = cfg.max_attempts,
                        next_ms = wait,
                        "delivery will be retried"
                    );
                    Finish::Retry {
                        status,
                        error,
                        next_ms: now + wait as i64,
                    }
                }
            }
        };
        if let (Finish::Delivered { .. }, Some(until)) = (&finish, self.denied_until(&d)) {
            let _ = self
                .store
                .deny(&d.action.token_id, until, &d.action.id, now);
        }
        match &finish {
            Finish::Delivered { detail, .. } => {
                tracing::info!(
                    kind = %d.action.kind,
                    token_id = %d.action.token_id,
                    endpoint = %d.endpoint,
                    %detail,
                    "delivered"
                )
            }
            Finish::Failed { error, .. } => {
                tracing::warn!(
                    kind = %d.action.kind,
                    token_id = %d.action.token_id,
                    endpoint = %d.endpoint,
                    %error,
                    "delivery failed"
                )
            }
            Finish::Skipped { why } => {
                tracing::info!(
                    kind = %d.action.kind,
                    token_id = %d.action.token_id,
                    endpoint = %d.endpoint,
                    %why,
                    "delivery skipped"
                )
            }
            _ => {}
        }
        match self.store.finish(&d, &finish, now) {
            Ok(Some(crate::decide::ActionStatus::Failed)) if d.action.kind == "revoke" => {
                self.system_alert(
                    &d,
                    None,
                    &format!("Revocation of token {} FAILED at every revoker in scope (last: {}); cut it off by hand", d.action.token_id, d.endpoint),
                    now,
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(delivery = %d.id, error = %e, "outcome not recorded"),
        }
        if let Some(t) = transition {
            let last_error = match &finish {
                Finish::Retry { error, .. } | Finish::Failed { error, .. } => Some(error.clone()),
                _ => None,
            };
            let _ = self.store.set_endpoint(
                &d.endpoint,
                state.as_str(),
                failures,
                until,
                last_error.as_deref(),
                now,
            );
            crate::telemetry::breaker_open(&d.endpoint, matches!(t, Transition::Opened { .. }));
            match t {
                Transition::Opened { until_ms, failures } => {
                    let msg = format!(
                        "Endpoint {} is failing ({failures} failures in a row, last: {}): circuit breaker open, probing again in {} s; deliveries wait in the outbox",
                        d.endpoint,
                        last_error.unwrap_or_default(),
                        (until_ms - now) / 1000
                    );
                    tracing::warn!(endpoint = %d.endpoint, failures, "circuit breaker open");
                    let _ =
                        self.store
                            .audit(now, "dispatcher", "breaker opened", &d.endpoint, &msg);
                    self.system_alert(&d, Some(&d.endpoint), &msg, now);
                }
                Transition::Closed => {
                    tracing::info!(endpoint = %d.endpoint, "circuit breaker closed");
                    let _ = self.store.audit(
                        now,
                        "dispatcher",
                        "breaker closed",
                        &d.endpoint,
                        "answers again",
                    );
                }
            }
        } else if matches!(state, retry::BreakerState::Closed) && failures == 0 {
            // Keep the stored state fresh for people looking at it.
            if self
                .store
                .endpoints()
                .map(|e| {
                    e.iter()
                        .any(|x| x.name == d.endpoint && x.state != "closed")
                })
                .unwrap_or(false)
            {
                let _ = self
                    .store
                    .set_endpoint(&d.endpoint, "closed", 0, 0, None, now);
            }
        }
    }

    fn denied_until(&self, d: &DeliveryRow) -> Option<i64> {
        let r = self
            .shared
            .cfg
            .revokers
            .iter()
            .find(|r| r.name == d.endpoint)?;
        (r.kind == crate::config::RevokerKind::DenyList)
            .then(|| self.shared.deny.until(&d.action.token_id))
            .flatten()
    }

    fn system_alert(&mut self, d: &DeliveryRow, exclude: Option<&str>, summary: &str, now: i64) {
        if let Err(e) = self
            .store
            .insert_system_alert(&d.action, exclude, summary, now)
        {
            tracing::warn!(error = %e, "cannot queue a system alert");
        }
    }
}

async fn execute(shared: &Shared, d: &DeliveryRow, work: Work, now: i64) -> Outcome {
    match work {
        Work::Alert(v) => {
            let Some(c) = shared.cfg.channels.iter().find(|c| c.name == d.endpoint) else {
                return Outcome::Failed {
                    status: None,
                    error: format!("channel {} is no longer configured", d.endpoint),
                };
            };
            notify::send(&shared.http, c, &v, &d.id, now, shared.timeout).await
        }
        Work::Revoke(name) => {
            let Some(r) = shared.cfg.revokers.iter().find(|r| r.name == name) else {
                return Outcome::Failed {
                    status: None,
                    error: format!("revoker {name} is no longer configured"),
                };
            };
            let action = ActionRecord::parse(&d.action.json);
            let custody = shared.custody.as_deref();
            let raw = custody.and_then(|c| {
                let sealed = d
                    .action
                    .sealed
                    .clone()
                    .map(crate::custody::Sealed)
                    .or_else(|| c.sealed(&d.action.token_id))?;
                c.open(&d.action.token_id, &sealed)
            });
            let t = revoke::Target {
                action_id: &d.action.id,
                delivery_id: &d.id,
                incident_id: &d.action.incident_id,
                token_id: &d.action.token_id,
                subject: action.subject.as_deref(),
                client_id: action.client_id.as_deref(),
                summary: &action.summary,
                raw,
                facts: custody.and_then(|c| c.facts(&d.action.token_id)),
            };
            revoke::revoke(
                &shared.http,
                &shared.admin,
                &shared.deny,
                r,
                &t,
                shared.timeout,
                now,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests;
