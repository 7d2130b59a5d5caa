//! The operational endpoints of `tokenwatch run`, on their own address so
//! orchestrators and Prometheus can reach them without the dashboard's
//! login: `/healthz` (the process is up), `/readyz` (joined the consumer
//! group and the brokers answer; 503 with the last error otherwise) and
//! `/metrics` (Prometheus text format, every metric of `telemetry`).
//! With a deny-list revoker, also the gateway check `/v1/check` (any
//! method, any path below it, for Envoy `ext_authz` HTTP, NGINX
//! `auth_request` and plugins): 403 for a denied token, 200 otherwise.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{any, get};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::health::Health;

/// Install the Prometheus recorder behind the `metrics` facade.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))
}

/// What the gateway check needs: the deny-list and the decode settings
/// (to turn a presented token into its ids the way decoding does).
#[derive(Clone)]
pub struct Check {
    pub deny: Arc<crate::act::DenyList>,
    pub settings: crate::decode::DecodeSettings,
    /// Where the gateway accepts tokens from (the deny-list revoker's
    /// `token_places`): a token it would accept from a query parameter or
    /// a cookie is checked there too.
    pub places: Vec<crate::config::TokenPlace>,
}

impl Check {
    /// The verdict on one request: the first presented token id that is
    /// denied at `now_ms`, with the time it is denied until. The token comes
    /// in the configured places or, for gateways that already know it, as
    /// `X-Tokenwatch-Token-Id`. Total on any URI and headers (fuzzed).
    pub fn denied(
        &self,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        now_ms: i64,
    ) -> Option<(String, i64)> {
        let mut ids = self.presented(uri, headers);
        if let Some(id) = headers
            .get("x-tokenwatch-token-id")
            .and_then(|v| v.to_str().ok())
        {
            ids.push(id.trim().to_string());
        }
        self.deny.check(&ids, now_ms)
    }

    /// Every token id presented in the request's configured places.
    fn presented(&self, uri: &axum::http::Uri, headers: &HeaderMap) -> Vec<String> {
        use crate::config::TokenPlace;
        let mut ids = Vec::new();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        // The original request's query: in the check URL (ext_authz), or in
        // the header the proxy forwards it in (auth_request, forwardAuth).
        let queries: Vec<&str> = [
            uri.query(),
            header("x-original-uri").and_then(|u| u.split_once('?').map(|(_, q)| q)),
            header("x-forwarded-uri").and_then(|u| u.split_once('?').map(|(_, q)| q)),
        ]
        .into_iter()
        .flatten()
        .collect();
        for place in &self.places {
            match place {
                TokenPlace::Header(h) => {
                    for v in headers
                        .get_all(h.as_str())
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                    {
                        ids.extend(self.settings.token_ids(v));
                    }
                }
                TokenPlace::Query(name) => {
                    for q in &queries {
                        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                            if k == name.as_str() {
                                ids.extend(self.settings.token_ids(&v));
                            }
                        }
                    }
                }
                TokenPlace::Cookie(name) => {
                    for c in headers
                        .get_all("cookie")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                    {
                        for pair in c.split(';') {
                            if let Some((k, v)) = pair.trim().split_once('=')
                                && k == name
                            {
                                ids.extend(self.settings.token_ids(v.trim_matches('"')));
                            }
                        }
                    }
                }
            }
        }
        ids
    }
}

#[derive(Clone)]
struct Ops {
    health: Arc<Health>,
    prometheus: PrometheusHandle,
    check: Option<Check>,
}

pub fn router(health: Arc<Health>, prometheus: PrometheusHandle, check: Option<Check>) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if check.is_some() {
        r = r
            .route("/v1/check", any(check_token))
            .route("/v1/check/{*rest}", any(check_token));
    }
    r.with_state(Ops {
        health,
        prometheus,
        check,
    })
}

/// The gateway asks before forwarding: the token comes in `Authorization`
/// (forwarded by ext_authz / auth_request) or, for gateways that already
/// know it, as `X-Tokenwatch-Token-Id`. No token: allowed (authentication
/// is the gateway's job, not ours).
async fn check_token(
    State(ops): State<Ops>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let Some(check) = &ops.check else {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "text/plain")],
            "no deny-list\n".into(),
        );
    };
    match check.denied(&uri, &headers, crate::clock::now_ms()) {
        Some((id, until)) => {
            crate::telemetry::deny_check("deny");
            (
                StatusCode::FORBIDDEN,
                [("content-type", "application/json")],
                serde_json::json!({"denied": true, "token_id": id, "until": crate::event::fmt_time(until),
                    "reason": "token revoked by tokenwatch"})
                .to_string(),
            )
        }
        None => {
            crate::telemetry::deny_check("allow");
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"denied\":false}".into(),
            )
        }
    }
}

async fn readyz(State(ops): State<Ops>) -> (StatusCode, String) {
    if ops.health.is_ready() {
        (StatusCode::OK, "ready\n".into())
    } else {
        let why = ops
            .health
            .last_error()
            .unwrap_or_else(|| "not joined to the consumer group yet".into());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    }
}

async fn metrics(State(ops): State<Ops>) -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        ops.prometheus.render(),
    )
}

/// Bind now (so a taken port is an error at start) and serve on a thread
/// of `threads` until its stop signal.
pub fn spawn(
    addr: SocketAddr,
    health: Arc<Health>,
    prometheus: PrometheusHandle,
    check: Option<Check>,
    threads: &mut crate::shutdown::Threads,
) -> Result<(), String> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("kafka.ops_listen {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("kafka.ops_listen {addr}: {e}"))?;
    threads
        .spawn("ops-http", 0, move |stop| async move {
            let app = router(health, prometheus, check);
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    let serve = axum::serve(l, app)
                        .with_graceful_shutdown(async move { stop.triggered().await });
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "ops endpoints stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "ops endpoints cannot listen"),
            }
        })
        .map_err(|e| format!("ops endpoints: {e}"))?;
    tracing::info!(%addr, "ops endpoints serving /healthz, /readyz, /metrics");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn readyz_reports_the_health() {
        let health = Arc::new(Health::default());
        let prom = PrometheusBuilder::new().build_recorder().handle();
        let app = router(health.clone(), prom, None);
        let res = app
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        health.set_ok();
        let res = app
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        health.set_error("all brokers down".into());
        let res = app
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("all brokers down"));
    }

    #[tokio::test]
    async fn the_gateway_check_refuses_denied_tokens_by_jti_hash_or_id() {
        let cfg = crate::config::Config::default();
        let settings = crate::decode::DecodeSettings::new(&cfg, b"k").unwrap();
        let deny = Arc::new(crate::act::DenyList::default());
        let opaque_id = settings.token_ids("Bearer opaque-1").pop().unwrap();
        deny.insert(&opaque_id, i64::MAX);
        deny.insert("jti-9", i64::MAX);
        let prom = PrometheusBuilder::new().build_recorder().handle();
        let app = router(
            Arc::new(Health::default()),
            prom,
            Some(Check {
                deny,
                settings,
                places: [
                    "header:authorization",
                    "query:access_token",
                    "cookie:session",
                ]
                .iter()
                .map(|p| crate::config::TokenPlace::parse(p).unwrap())
                .collect(),
            }),
        );
        let status = |req: Request<Body>| {
            let app = app.clone();
            async move { app.oneshot(req).await.unwrap().status() }
        };
        let get = |h: &str, v: &str| {
            Request::get("/v1/check/orders/7")
                .header(h, v)
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            status(get("authorization", "Bearer opaque-1")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(get("authorization", "Bearer opaque-2")).await,
            StatusCode::OK
        );
        assert_eq!(
            status(get("x-tokenwatch-token-id", "jti-9")).await,
            StatusCode::FORBIDDEN
        );
        let post = Request::post("/v1/check")
            .header("authorization", "Bearer opaque-1")
            .body(Body::empty())
            .unwrap();
        assert_eq!(status(post).await, StatusCode::FORBIDDEN);
        assert_eq!(
            status(Request::get("/v1/check").body(Body::empty()).unwrap()).await,
            StatusCode::OK
        );
        // Issue 14, point 12: a token the gateway accepts in the query or a
        // cookie is checked there too.
        let req = |uri: &str, h: Option<(&str, &str)>| {
            let mut r = Request::get(uri);
            if let Some((k, v)) = h {
                r = r.header(k, v);
            }
            r.body(Body::empty()).unwrap()
        };
        for (uri, h) in [
            ("/v1/check/orders/7?access_token=opaque-1", None),
            (
                "/v1/check",
                Some(("x-original-uri", "/orders/7?x=1&access_token=opaque-1")),
            ),
            (
                "/v1/check",
                Some(("x-forwarded-uri", "/orders/7?access_token=opaque%2D1")),
            ),
            (
                "/v1/check",
                Some(("cookie", "theme=dark; session=opaque-1")),
            ),
        ] {
            assert_eq!(
                status(req(uri, h)).await,
                StatusCode::FORBIDDEN,
                "{uri} {h:?}"
            );
        }
        assert_eq!(
            status(req(
                "/v1/check?access_token=opaque-2",
                Some(("cookie", "other=opaque-1"))
            ))
            .await,
            StatusCode::OK,
            "an unconfigured cookie is not a place"
        );
        assert!(crate::config::TokenPlace::parse("body:token").is_err());
    }
}
