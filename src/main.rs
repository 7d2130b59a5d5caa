//! The `tokenwatch` command line. Wiring only: every subcommand builds the
//! pure core from the configuration and drives it over some input.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use tokenwatch::config::{self, Config};
use tokenwatch::decode::DecodeSettings;
use tokenwatch::detect::Finding;
use tokenwatch::enrich::Enricher;
use tokenwatch::eval::{self, ScoredFinding};
use tokenwatch::pipeline::{Pipeline, ReplayOptions};
use tokenwatch::service::{self, keys};
use tokenwatch::source::LineSource;
use tokenwatch::synth;

/// Catches stolen access tokens in API gateway logs: token replay (a second
/// device or place) and bulk siphoning, on the gateways' own timestamps.
#[derive(Parser)]
#[command(
    name = "tokenwatch",
    version,
    after_help = "\
First steps:
  tokenwatch demo                          replay the bundled dataset and show what is caught
  tokenwatch replay access.jsonl.gz        detect on your own logs (format auto-detected)
  tokenwatch check-config rules.toml       validate a configuration

The documented default configuration is rules.toml at the top of the repository."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Act {
    /// Revocations waiting for approval, tripped fuses, open incidents,
    /// deliveries not finished, endpoint breakers.
    Status,
    /// Approve a revocation waiting for approval (protected subject/client).
    Approve { action_id: String },
    /// Reject a revocation waiting for approval.
    Reject { action_id: String },
    /// Reset a tripped fuse (`policy` or a rule name): revocations resume.
    ResetFuse { rule: String },
    /// Resolve an incident (PagerDuty and Alertmanager are told).
    Resolve { incident_id: String },
    /// Revoke a token by id with every revoker in scope.
    Revoke {
        token_id: String,
        #[arg(long, default_value = "manual revocation")]
        reason: String,
    },
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

#[derive(Subcommand)]
enum Command {
    /// Replay the bundled realistic dataset (several gateway formats, thousands
    /// of tokens, attacks mixed in), print findings as they happen, and serve
    /// the dashboard with them (the address and a one-time password are
    /// printed; Ctrl-C stops).
    Demo {
        /// Configuration (defaults to the built-in copy of rules.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write findings as JSON lines here too.
        #[arg(long)]
        findings: Option<PathBuf>,
        /// Print every finding, not only the first 40.
        #[arg(long)]
        all: bool,
        /// Only print: do not serve the dashboard afterwards.
        #[arg(long)]
        no_dashboard: bool,
        /// Where the dashboard listens (default: [dashboard] listen, 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Pace the replay, e.g. `3600x` (an hour of logs per second), to
        /// watch the live feed fill up; default: as fast as possible.
        #[arg(long, value_parser = parse_speed)]
        speed: Option<f64>,
    },
    /// Read JSON-lines access logs (plain, .gz or `-` for stdin), detect, and
    /// print findings as JSON lines.
    ///
    /// Several files are merged by event time. Bad records are counted by
    /// reason and reported as file:line.
    Replay {
        /// Input files; `-` reads stdin.
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Configuration file (rules.toml); without it, built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Gateway format: auto, envoy, kong, apisix, nginx, traefik, aws_apigw,
        /// tyk, or a [formats.NAME] from the config.
        #[arg(long, short)]
        format: Option<String>,
        /// MaxMind City database (GeoLite2-City.mmdb); overrides the config.
        #[arg(long)]
        geoip_city: Option<PathBuf>,
        /// MaxMind ASN database (GeoLite2-ASN.mmdb); overrides the config.
        #[arg(long)]
        geoip_asn: Option<PathBuf>,
        /// Write findings here (JSON lines) instead of stdout.
        #[arg(long)]
        findings: Option<PathBuf>,
        /// Write what the response policy decided here (JSON lines, one per
        /// action request: revoke or alert, its state and why): what
        /// tokenwatch would have done to these logs.
        #[arg(long)]
        actions: Option<PathBuf>,
        /// Pace the replay at a multiple of real time, e.g. `10x` or `1`.
        #[arg(long, value_parser = parse_speed)]
        speed: Option<f64>,
        /// Write the summary as JSON here.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Score the findings against these labels (from `tokenwatch synth`).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Instead of detecting, load the records into Kafka: `--to-kafka BROKERS TOPIC`.
        #[arg(long, num_args = 2, value_names = ["BROKERS", "TOPIC"])]
        to_kafka: Option<Vec<String>>,
        /// With --to-kafka: records per second (default: as fast as possible).
        #[arg(long, requires = "to_kafka")]
        rate: Option<f64>,
        /// With --to-kafka: key records by subject / client_id / token id
        /// (tokenwatch keeps state per partition); default unkeyed, like most gateways.
        #[arg(long, requires = "to_kafka")]
        key_by_token: bool,
    },
    /// Run the streaming service: consume the [kafka] topics of the config in
    /// a consumer group, detect, produce findings and dead letters, carry out
    /// the response, and serve the dashboard ([dashboard] listen). Stops
    /// cleanly on SIGINT / SIGTERM (finishes buffered events, commits).
    Run {
        /// Configuration with a [kafka] section.
        #[arg(long, short)]
        config: PathBuf,
        /// Override kafka.brokers.
        #[arg(long)]
        brokers: Option<String>,
        /// Override kafka.ops_listen: where /healthz, /readyz and /metrics
        /// are served (e.g. 127.0.0.1:9464).
        #[arg(long)]
        ops_listen: Option<std::net::SocketAddr>,
    },
    /// A person acts on the response: approve or reject a revocation waiting
    /// for approval, reset a tripped safety fuse, resolve an incident, revoke
    /// a token by hand, or list what is waiting. Every act is audited with
    /// `--by`; a running `tokenwatch run` on the same store picks it up
    /// within a second.
    Act {
        /// The configuration of the service (for [store] path).
        #[arg(long, short)]
        config: PathBuf,
        /// Who is acting (written to the audit log).
        #[arg(long, default_value_t = whoami())]
        by: String,
        #[command(subcommand)]
        act: Act,
    },
    /// Validate a configuration file and explain every error with key and line.
    CheckConfig { file: PathBuf },
    /// Show what tokenwatch reads from a log source, record by record,
    /// before you trust it with that source: one JSON line per record with
    /// the event it became (time, client IP, identity, route, object,
    /// status, bytes, user agent, TLS fingerprints) or why it was dropped
    /// and what to configure at the gateway, then a summary of the fields
    /// the source never fills (on stderr; `--summary-json` for a file).
    /// Raw tokens are never printed: identities appear as tokenwatch keys
    /// them (jti, keyed hash `h:…`, credential `c:…`, consumer `u:…`).
    ///
    /// Example: `tokenwatch explain --format envoy access.log | head`
    Explain {
        /// Input files (plain or .gz); `-` reads stdin.
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Configuration file (rules.toml): identity order, trusted
        /// proxies, custom formats; without it, built-in defaults.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Gateway format: auto (default: input.format), a preset or a
        /// [formats.NAME] from the config.
        #[arg(long, short)]
        format: Option<String>,
        /// Print at most this many records per input (the summary still
        /// covers every record).
        #[arg(long)]
        limit: Option<u64>,
        /// Also write the summary as JSON here.
        #[arg(long)]
        summary_json: Option<PathBuf>,
    },
    /// Hash a dashboard password (Argon2id) for `[[dashboard.users]]`. Reads
    /// the password from stdin (one line), prints the hash.
    HashPassword,
    /// Generate labeled synthetic traffic and matching GeoIP databases.
    Synth {
        /// Scenario file (see replay/scenarios/); flags below override it.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Output directory.
        #[arg(long, short, default_value = "out/synth")]
        out: PathBuf,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        users: Option<u32>,
        #[arg(long)]
        hours: Option<u32>,
        /// Comma-separated formats, e.g. `envoy,kong,apisix`.
        #[arg(long, value_delimiter = ',')]
        formats: Option<Vec<String>>,
        /// Write plain .jsonl instead of .jsonl.gz.
        #[arg(long)]
        plain: bool,
    },
    /// Score findings (JSON lines) against labels: recall per attack kind,
    /// false positives per 1,000 benign tokens, detection delay.
    Eval {
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        findings: PathBuf,
    },
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches(['x', 'X'])
        .parse()
        .map_err(|_| format!("`{s}` is not a speed; use e.g. 10x"))?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("speed must be > 0".into())
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The service says what it does (assignments, restores, readiness); the
    // batch commands only warn.
    let service = std::env::args().nth(1).is_some_and(|a| a == "run");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOKENWATCH_LOG")
                .unwrap_or_else(|_| if service { "info" } else { "warn" }.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn act_cmd(config_path: &Path, by: &str, act: Act) -> Result<()> {
    let (cfg, _) = service::load_config(Some(config_path))?;
    let mut store = tokenwatch::store::Store::open(&cfg.store.path)?;
    let now = tokenwatch::clock::now_ms();
    let done = |ok: bool, what: &str| -> Result<()> {
        if ok {
            println!("{what}: done (audited as user:{by})");
            Ok(())
        } else {
            bail!(
                "{what}: nothing to do (unknown id, or not in a state that allows it; see `tokenwatch act status`)"
            )
        }
    };
    match act {
        Act::Status => {
            println!("Revocations waiting for approval:");
            for (id, json) in
                store.actions_in_state(tokenwatch::decide::ActionStatus::AwaitingApproval)?
            {
                let action = tokenwatch::store::ActionRecord::parse(&json);
                println!("  {id}  {}", action.summary);
            }
            println!("Tripped fuses: {:?}", store.tripped_fuses()?);
            println!("Open incidents: {}", store.open_incidents()?.len());
            println!("Outbox backlog: {}", store.outbox_backlog()?);
            for e in store.endpoints()? {
                println!(
                    "Endpoint {}: breaker {}, {} failures{}",
                    e.name,
                    e.state,
                    e.failures,
                    e.last_error
                        .map(|x| format!(", last: {x}"))
                        .unwrap_or_default()
                );
            }
            for d in store.deliveries(None)?.iter().take(20) {
                println!(
                    "  {} {} → {}: {} after {} attempts{}",
                    d.kind,
                    d.action_id,
                    d.endpoint,
                    d.state,
                    d.attempts,
                    d.last_error
                        .as_deref()
                        .or(d.detail.as_deref())
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Act::Approve { action_id } => done(
            store.approve(&action_id, by, now)?,
            &format!("approve {action_id}"),
        ),
        Act::Reject { action_id } => done(
            store.reject(&action_id, by, now)?,
            &format!("reject {action_id}"),
        ),
        Act::ResetFuse { rule } => done(
            store.reset_fuse(&rule, by, now)?,
            &format!("reset fuse {rule}"),
        ),
        Act::Resolve { incident_id } => done(
            store.resolve(&incident_id, by, now)?,
            &format!("resolve {incident_id}"),
        ),
        Act::Revoke { token_id, reason } => {
            let id = store.manual_revoke(&token_id, by, &reason, now)?;
            println!("revoke {token_id}: queued as {id} (audited as user:{by})");
            Ok(())
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Explain {
            inputs,
            config,
            format,
            limit,
            summary_json,
        } => {
            let (cfg, base) = service::load_config(config.as_deref())?;
            let settings = service::decode_settings(&cfg, &base, &keys::batch(&cfg)?)?;
            let format = format.unwrap_or_else(|| cfg.input.format.clone());
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut summaries = Vec::new();
            for input in &inputs {
                let mut ex = tokenwatch::explain::Explainer::new(&settings, &format)
                    .map_err(anyhow::Error::msg)?;
                let mut src = LineSource::open(input)
                    .with_context(|| format!("opening {input}"))?
                    .with_max_line(cfg.input.max_record_bytes);
                let mut line = Vec::new();
                let mut printed = 0u64;
                while let Some(coord) = src
                    .next_line(&mut line)
                    .with_context(|| format!("reading {input}"))?
                {
                    for v in ex.record(&coord.to_string(), &line) {
                        if limit.is_none_or(|l| printed < l) {
                            writeln!(out, "{v}")?;
                            printed += 1;
                        }
                    }
                }
                out.flush()?;
                eprintln!("{input}: {}", ex.summary_text());
                summaries.push(ex.summary());
            }
            if let Some(p) = summary_json {
                std::fs::write(&p, serde_json::to_string_pretty(&summaries)?)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            Ok(())
        }
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(cfg) => {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let inline =
                    config::secrets::inline_errors(&cfg, &file.display().to_string(), &text);
                if !inline.is_empty() {
                    for e in &inline {
                        eprintln!("{e}");
                    }
                    bail!(
                        "{} secret(s) written inline in {}: move each to env:NAME or file:/path",
                        inline.len(),
                        file.display()
                    );
                }
                let base = file.parent().unwrap_or(Path::new("."));
                Enricher::from_config(&cfg, base).with_context(|| {
                    format!(
                        "{}: [geoip]: fix the database paths or remove them",
                        file.display()
                    )
                })?;
                if cfg.input.trusted_proxies.is_empty() {
                    eprintln!(
                        "warning: {}: input.trusted_proxies is empty, so X-Forwarded-For is not \
                         used and each client is the gateway's peer address. If a load balancer \
                         or CDN sits in front of the gateway, list its networks there (never \
                         whole private ranges: VPN users and pods have private addresses too).",
                        file.display()
                    );
                }
                println!(
                    "{}: ok (format {}, {} detectors enabled, {} route rules, {} custom formats)",
                    file.display(),
                    cfg.input.format,
                    tokenwatch::detect::registry::entries(&cfg.detectors)
                        .iter()
                        .filter(|e| e.enabled)
                        .count(),
                    cfg.routes.len(),
                    cfg.formats.len()
                );
                Ok(())
            }
            Err(errs) => {
                for e in &errs {
                    eprintln!("{e}");
                }
                bail!("{} error(s) in {}", errs.len(), file.display())
            }
        },
        Command::Replay {
            inputs,
            config,
            format,
            geoip_city,
            geoip_asn,
            findings,
            actions,
            speed,
            summary_json,
            labels,
            no_progress,
            to_kafka,
            rate,
            key_by_token,
        } => {
            let (mut cfg, base) = service::load_config(config.as_deref())?;
            if let Some(dest) = to_kafka {
                return load_kafka(
                    &cfg,
                    &inputs,
                    &dest[0],
                    &dest[1],
                    format,
                    rate,
                    key_by_token,
                );
            }
            if let Some(f) = format {
                cfg.input.format = f;
            }
            if config.is_none() {
                // The built-in rules point at the demo world's databases in the
                // repository; elsewhere, run without geo rather than fail.
                for db in [&mut cfg.geoip.city, &mut cfg.geoip.asn] {
                    if db.as_ref().is_some_and(|p| !Path::new(p).exists()) {
                        *db = None;
                    }
                }
            }
            // Paths on the command line are relative to the working
            // directory (paths in a config file, to the file).
            let from_cwd = |p: PathBuf| std::path::absolute(&p).unwrap_or(p).display().to_string();
            if let Some(p) = geoip_city {
                cfg.geoip.city = Some(from_cwd(p));
            }
            if let Some(p) = geoip_asn {
                cfg.geoip.asn = Some(from_cwd(p));
            }
            // Flags may have broken a cross-field rule: check again.
            if let Some((k, m)) = cfg.validate().into_iter().next() {
                bail!("`{k}`: {m}");
            }
            let base = if config.is_some() {
                base
            } else {
                PathBuf::from(".")
            };
            let enricher =
                Arc::new(Enricher::from_config(&cfg, &base).context("loading GeoIP databases")?);
            if !enricher.has_geo() {
                eprintln!(
                    "note: no GeoIP City database (--geoip-city): impossible-travel detection is off"
                );
            }
            let settings = service::decode_settings(&cfg, &base, &keys::batch(&cfg)?)?;
            let mut sources = Vec::new();
            for i in &inputs {
                sources.push(LineSource::open(i).with_context(|| format!("opening {i}"))?);
            }
            let mut out: Box<dyn Write> = match &findings {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut scored = Vec::new();
            let mut write_err = None;
            let opts = ReplayOptions {
                format: cfg.input.format.clone(),
                speed,
                progress: !no_progress && std::io::stderr().is_terminal(),
                max_examples: 10,
            };
            let mut pipeline = Pipeline::new(&cfg, settings, enricher);
            if actions.is_some() {
                pipeline.actions = Some(Vec::new());
            }
            let summary = pipeline
                .run(sources, &opts, &mut |f: &Finding| {
                    scored.push(ScoredFinding::from(f));
                    let line = serde_json::to_string(f).expect("findings serialize");
                    if let Err(e) = writeln!(out, "{line}") {
                        write_err.get_or_insert(e);
                    }
                    if speed.is_some() {
                        let _ = out.flush();
                    }
                })
                .map_err(anyhow::Error::msg)?;
            out.flush()?;
            if let (Some(path), Some(list)) = (&actions, &pipeline.actions) {
                let mut w = std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                );
                for a in list {
                    writeln!(w, "{}", serde_json::to_string(a)?)?;
                }
                w.flush()?;
            }
            if let Some(e) = write_err {
                bail!("writing findings: {e}");
            }
            eprint!("{}", summary.render());
            if let Some(p) = summary_json {
                std::fs::write(&p, serde_json::to_vec_pretty(&summary)?)?;
            }
            if let Some(l) = labels {
                let labels: synth::Labels = serde_json::from_slice(&std::fs::read(&l)?)
                    .with_context(|| format!("reading labels {}", l.display()))?;
                eprintln!("\n{}", eval::score(&labels, &scored).render());
            }
            Ok(())
        }
        Command::Demo {
            config,
            findings,
            all,
            no_dashboard,
            listen,
            speed,
        } => service::demo(service::DemoOptions {
            config,
            findings,
            all,
            dashboard_at: (!no_dashboard).then_some(listen),
            speed,
        }),
        Command::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                anyhow::bail!("use a password of at least 12 characters");
            }
            println!(
                "{}",
                tokenwatch::web::auth::hash_password(password).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::Run {
            config,
            brokers,
            ops_listen,
        } => service::run(
            &config,
            service::RunOverrides {
                brokers,
                ops_listen,
            },
        ),
        Command::Act { config, by, act } => act_cmd(&config, &by, act),
        Command::Synth {
            scenario,
            out,
            seed,
            users,
            hours,
            formats,
            plain,
        } => {
            let mut sc = match &scenario {
                Some(p) => synth::load_scenario(p).map_err(anyhow::Error::msg)?,
                None => synth::Scenario::default(),
            };
            if let Some(s) = seed {
                sc.seed = s;
            }
            if let Some(u) = users {
                sc.users = u;
            }
            if let Some(h) = hours {
                sc.hours = h;
            }
            if let Some(f) = formats {
                sc.formats = f;
            }
            let name = scenario
                .as_ref()
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "default".into());
            let cfg = Config::default();
            let ds = synth::generate(&sc, &name, &keys::or_documented(&cfg))
                .map_err(anyhow::Error::msg)?;
            let files = synth::write(&ds, &out, !plain)?;
            eprintln!(
                "{} events, {} attacks, {} benign tokens (seed {})",
                ds.events,
                ds.labels.attacks.len(),
                ds.labels.benign_tokens.len(),
                sc.seed
            );
            for f in files {
                println!("{f}");
            }
            Ok(())
        }
        Command::Eval { labels, findings } => {
            let labels: synth::Labels = serde_json::from_slice(&std::fs::read(&labels)?)
                .with_context(|| format!("reading labels {}", labels.display()))?;
            let text = std::fs::read_to_string(&findings)?;
            let mut scored = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                scored.push(
                    serde_json::from_str::<ScoredFinding>(line).with_context(|| {
                        format!("{}:{}: not a finding", findings.display(), i + 1)
                    })?,
                );
            }
            print!("{}", eval::score(&labels, &scored).render());
            Ok(())
        }
    }
}

fn load_kafka(
    cfg: &Config,
    inputs: &[String],
    brokers: &str,
    topic: &str,
    format: Option<String>,
    rate: Option<f64>,
    key_by_token: bool,
) -> Result<()> {
    let mut kc = cfg.kafka.clone().unwrap_or_default();
    kc.brokers = brokers.to_string();
    let settings = DecodeSettings::new(cfg, &keys::batch(cfg)?).map_err(anyhow::Error::msg)?;
    let format = format.unwrap_or_else(|| cfg.input.format.clone());
    let mut total = 0;
    for input in inputs {
        let mut src = LineSource::open(input)
            .with_context(|| format!("opening {input}"))?
            .with_max_line(cfg.input.max_record_bytes);
        let decoder = if key_by_token {
            Some(settings.decoder(&format).map_err(anyhow::Error::msg)?)
        } else {
            None
        };
        let n = tokenwatch::kafka::load(
            &kc,
            topic,
            &mut |buf| Ok(src.next_line(buf)?.is_some()),
            decoder,
            rate,
        )?;
        eprintln!("{input}: {n} records → {topic} on {brokers}");
        total += n;
    }
    eprintln!("{total} records produced");
    Ok(())
}
