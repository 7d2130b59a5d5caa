//! `tokenwatch demo`: replay the bundled world, print what is caught,
//! score it against the injected attacks, and serve the dashboard with the
//! findings and decisions (a store of its own, removed at exit), with the
//! dispatcher running as in `run`. One shutdown: Ctrl-C stops the replay
//! (at the next 1,024 events), the dispatcher and the dashboard.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{dashboard, keys, load_config};
use crate::config;
use crate::decode::DecodeSettings;
use crate::detect::Finding;
use crate::eval::{self, ScoredFinding};
use crate::health::Health;
use crate::pipeline::{Pipeline, ReplayOptions};
use crate::shutdown::{Shutdown, Threads};
use crate::source::LineSource;
use crate::synth;

/// The bundled world.
const DEMO_SCENARIO: &str = include_str!("../../replay/scenarios/demo.toml");

/// How many findings are printed without `--all`.
const SHOWN: usize = 40;

/// What `tokenwatch demo` was asked for.
#[derive(Debug, Default)]
pub struct DemoOptions {
    /// `--config` (default: the built-in rules).
    pub config: Option<PathBuf>,
    /// `--findings`: JSON lines here too.
    pub findings: Option<PathBuf>,
    /// `--all`: print every finding.
    pub all: bool,
    /// `None` with `--no-dashboard`; else where it listens (`--listen`, or
    /// `[dashboard] listen`).
    pub dashboard_at: Option<Option<SocketAddr>>,
    /// `--speed`.
    pub speed: Option<f64>,
}

/// Run the demo.
pub fn demo(o: DemoOptions) -> Result<()> {
    let (mut cfg, _) = load_config(o.config.as_deref())?;
    // The demo's Kong gateway authenticates with key-auth, one key per
    // token: its credentials are per-token identities (README: Kong).
    cfg.input.credential_kind = config::CredentialKind::PerToken;
    // Its NGINX sits behind a load balancer, trusted as an operator would.
    if cfg.input.trusted_proxies.is_empty() {
        cfg.input.trusted_proxies = synth::world::load_balancers();
    }
    let sc: synth::Scenario =
        toml::from_str(DEMO_SCENARIO).context("replay/scenarios/demo.toml")?;
    eprintln!(
        "tokenwatch demo: {} users and {} service clients over {} h, logged by {} gateways ({}), {} attacks mixed in\n",
        sc.users,
        sc.services,
        sc.hours,
        sc.formats.len(),
        sc.formats.join(", "),
        sc.attacks.values().sum::<u32>()
    );
    let key = keys::or_documented(&cfg);
    let ds = synth::generate(&sc, "demo", &key).map_err(anyhow::Error::msg)?;
    let enricher = Arc::new(synth::world::enricher(&cfg));
    let settings = DecodeSettings::new(&cfg, &key).map_err(anyhow::Error::msg)?;
    let sources: Vec<LineSource> = ds
        .files
        .iter()
        .map(|(fmt, data)| LineSource::from_bytes(&format!("{fmt}.jsonl"), data.clone()))
        .collect();
    let mut out: Option<Box<dyn Write>> = match &o.findings {
        Some(p) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ))),
        None => None,
    };
    let opts = ReplayOptions {
        format: "auto".into(),
        speed: o.speed,
        progress: false,
        max_examples: 5,
    };

    let root = Shutdown::new();
    root.on_ctrl_c()
        .context("installing the SIGINT/SIGTERM handler")?;
    let mut threads = Threads::new();
    let health = Arc::new(Health::default());
    let mut pipeline = Pipeline::new(&cfg, settings, enricher);
    pipeline.stop = Some(root.clone());
    let demo_dir = std::env::temp_dir().join(format!("tokenwatch-demo-{}", std::process::id()));
    if let Some(listen) = o.dashboard_at {
        std::fs::create_dir_all(&demo_dir)
            .with_context(|| format!("creating {}", demo_dir.display()))?;
        cfg.store.path = demo_dir.join("demo.db");
        health.set_ok();
        let prometheus = crate::ops::install_recorder().ok();
        dashboard(
            &cfg,
            listen.unwrap_or(cfg.dashboard.listen),
            health.clone(),
            prometheus,
            None,
            &mut threads,
            true,
        )?;
        // Deliveries as in `run` (with the built-in rules: no channel, so
        // alerts are recorded as having nowhere to go).
        let deny = Arc::new(crate::act::DenyList::default());
        crate::act::start(&cfg, None, deny, &mut threads).context("starting the dispatcher")?;
        let mut store = crate::store::Store::open(&cfg.store.path)?;
        let hub = health.clone();
        pipeline.live = Some(health.clone());
        pipeline.on_decision = Some(Box::new(move |f, d| {
            let now = crate::clock::now_ms();
            let f = std::slice::from_ref(f);
            if let Err(e) = crate::respond::respond(&mut store, &hub.live, f, now, |_| d.clone()) {
                tracing::warn!(error = %e, "demo store");
            }
        }));
    }

    let mut shown = 0usize;
    let mut scored = Vec::new();
    let stdout = std::io::stdout();
    let replayed = pipeline.run(sources, &opts, &mut |f: &Finding| {
        scored.push(ScoredFinding::from(f));
        if let Some(o) = out.as_mut() {
            let _ = writeln!(o, "{}", serde_json::to_string(f).expect("serializes"));
        }
        if o.all || shown < SHOWN {
            shown += 1;
            let _ = writeln!(
                stdout.lock(),
                "{}  {:<8} {:<18} {:<14} {}\n{:>36}{}",
                f.event_time.get(..19).unwrap_or(&f.event_time),
                f.severity.as_str().to_uppercase(),
                f.kind.as_str(),
                f.subject
                    .as_deref()
                    .or(f.client_id.as_deref())
                    .unwrap_or("-"),
                f.token_id,
                "",
                f.summary
            );
        } else if shown == SHOWN {
            shown += 1;
            let _ = writeln!(
                stdout.lock(),
                "… (more findings; `tokenwatch demo --all` shows every one)"
            );
        }
    });
    let result = replayed.map_err(anyhow::Error::msg).and_then(|summary| {
        if let Some(mut o) = out.take() {
            o.flush()?;
        }
        if root.is_triggered() {
            println!("\n(stopped before the end of the replay)");
            return Ok(());
        }
        println!("\n── summary ──\n{}", summary.render());
        println!(
            "── accuracy against the injected attacks ──\n{}",
            eval::score(&ds.labels, &scored).render()
        );
        Ok(())
    });
    if o.dashboard_at.is_some() {
        if result.is_ok() && !root.is_triggered() {
            eprintln!(
                "\nThe dashboard keeps serving the demo's incidents (see above for the address and password). Ctrl-C stops it."
            );
            while !root.is_triggered() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        threads.stop();
        remove_dir(&demo_dir);
        eprintln!("\ntokenwatch demo: stopped");
    }
    result
}

fn remove_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}
