//! The dispatcher on a controlled clock: what the per-channel rate limit
//! defers, and that deferred alerts go out when the window the limiter
//! promised opens, not a wall-clock second earlier or later.

use super::*;
use std::sync::atomic::Ordering;

/// A channel that answers every POST with 200, on 127.0.0.1.
async fn receiver() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/slack",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slack", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, hits)
}

fn dispatcher(url: &str, per_minute: u32, db: &std::path::Path, clock: Clock) -> Dispatcher {
    let channel: crate::config::ChannelConfig = toml::from_str(&format!(
        "name = \"slack\"\nkind = \"slack\"\nurl = \"{url}\"\nmin_severity = \"low\"\nmax_per_minute = {per_minute}"
    ))
    .unwrap();
    let cfg = ResponseConfig {
        channels: vec![channel],
        ..ResponseConfig::default()
    };
    let shared = Arc::new(Shared {
        timeout: Duration::from_millis(cfg.delivery.timeout_ms.max(1)),
        cfg,
        http: reqwest::Client::new(),
        custody: None,
        deny: Arc::new(DenyList::default()),
        admin: revoke::AdminTokens::default(),
    });
    Dispatcher::new(shared, Store::open(db).unwrap(), clock)
}

/// `(state, next_attempt_ms, last_error)` of every delivery, by id.
fn deliveries(db: &std::path::Path) -> Vec<(String, i64, Option<String>)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT state, next_attempt_ms, last_error FROM deliveries ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One step at the clock's time, then every call it started is recorded.
async fn step_and_settle(
    d: &mut Dispatcher,
    tx: &tokio::sync::mpsc::UnboundedSender<(DeliveryRow, Outcome)>,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(DeliveryRow, Outcome)>,
) {
    d.step(tx).unwrap();
    while d.in_flight > 0 {
        let (row, out) = rx.recv().await.unwrap();
        d.in_flight -= 1;
        d.record(row, out);
    }
}

#[tokio::test]
async fn a_storm_past_the_channel_limit_waits_for_each_next_minute_and_all_of_it_is_delivered() {
    let (url, hits) = receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("tw.db");
    // 40 s into a minute: the limiter's window closes 20 s later.
    let t0: i64 = 1_767_225_600_000 + 40_000;
    let clock_ms = Arc::new(std::sync::atomic::AtomicI64::new(t0));
    let c = clock_ms.clone();
    let mut d = dispatcher(&url, 2, &db, Arc::new(move || c.load(Ordering::SeqCst)));
    let about = ActionRow {
        id: "a-storm".into(),
        kind: "alert".into(),
        rule: "stolen-token".into(),
        token_id: "jti:t1".into(),
        incident_id: "i-1".into(),
        finding_id: "f-1".into(),
        json: "{}".into(),
        sealed: None,
    };
    for n in 0..5 {
        d.store
            .insert_system_alert(&about, None, &format!("storm alert {n}"), t0)
            .unwrap();
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let next_minute = (t0.div_euclid(60_000) + 1) * 60_000;

    step_and_settle(&mut d, &tx, &mut rx).await;
    let rows = deliveries(&db);
    assert_eq!(rows.len(), 5);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "two fit in this minute");
    let deferred: Vec<_> = rows.iter().filter(|r| r.0 == "pending").collect();
    assert_eq!(deferred.len(), 3, "{rows:?}");
    for r in &deferred {
        assert_eq!(
            r.1, next_minute,
            "deferred to the window the limiter promised"
        );
        assert!(
            r.2.as_deref()
                .is_some_and(|e| e.contains("rate limit of slack reached")),
            "and says why: {r:?}"
        );
    }

    // A millisecond before the window opens, nothing more goes out.
    clock_ms.store(next_minute - 1, Ordering::SeqCst);
    step_and_settle(&mut d, &tx, &mut rx).await;
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // The next minute: two more, the last one again deferred a minute.
    clock_ms.store(next_minute, Ordering::SeqCst);
    step_and_settle(&mut d, &tx, &mut rx).await;
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    let rows = deliveries(&db);
    let pending: Vec<_> = rows.iter().filter(|r| r.0 == "pending").collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1, next_minute + 60_000);
    assert!(d.store.outbox_backlog().unwrap() > 0);

    clock_ms.store(next_minute + 60_000, Ordering::SeqCst);
    step_and_settle(&mut d, &tx, &mut rx).await;
    assert_eq!(hits.load(Ordering::SeqCst), 5, "none dropped");
    assert!(deliveries(&db).iter().all(|r| r.0 == "delivered"));
    assert_eq!(d.store.outbox_backlog().unwrap(), 0, "the outbox empties");
}
