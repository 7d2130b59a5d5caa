//! The operational endpoints of `tokenwatch run`, on their own address so
//! orchestrators and Prometheus can reach them without the dashboard's
//! login: `/healthz` (the process is up), `/readyz` (joined the consumer
//! group and the brokers answer; 503 with the last error otherwise) and
//! `/metrics` (Prometheus text format, every metric of `telemetry`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::kafka::Health;

/// Install the Prometheus recorder behind the `metrics` facade.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))
}

#[derive(Clone)]
struct Ops {
    health: Arc<Health>,
    prometheus: PrometheusHandle,
}

pub fn router(health: Arc<Health>, prometheus: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Ops { health, prometheus })
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

/// Bind now (so a taken port is an error at start) and serve on a
/// background thread with its own small runtime.
pub fn spawn(
    addr: SocketAddr,
    health: Arc<Health>,
    prometheus: PrometheusHandle,
) -> Result<(), String> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("kafka.ops_listen {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("kafka.ops_listen {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("ops-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("ops endpoints: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let app = router(health, prometheus);
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("ops endpoints: {e}");
                        }
                    }
                    Err(e) => tracing::error!("ops endpoints: {e}"),
                }
            });
        })
        .map_err(|e| format!("ops endpoints: {e}"))?;
    tracing::info!("ops endpoints on http://{addr}/ (healthz, readyz, metrics)");
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
        let app = router(health.clone(), prom);
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
}
