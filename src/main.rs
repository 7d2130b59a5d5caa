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

const DEFAULT_RULES: &str = include_str!("../rules.toml");
const DEMO_SCENARIO: &str = include_str!("../replay/scenarios/demo.toml");
/// The documented key replays, `explain`, `synth` and the demo use when none
/// is configured: anyone can compute ids under it, so `run` refuses it.
const DEFAULT_HASH_KEY: &[u8] = b"tokenwatch-default-hash-key";
/// A configured key shorter than this is refused (a guessable key makes
/// `h:` ids computable).
const MIN_HASH_KEY_BYTES: usize = 16;

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
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn load_config(path: Option<&Path>) -> Result<(Config, PathBuf)> {
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

/// Raw-token custody, when a revoker needs raw tokens.
fn custody(cfg: &Config) -> Result<Option<Arc<tokenwatch::custody::Custody>>> {
    if !cfg.response.needs_custody() {
        return Ok(None);
    }
    let c = &cfg.response.custody;
    let key = match &c.key {
        Some(k) => {
            let text = config::resolve_secret(k)
                .map_err(|e| anyhow::anyhow!("response.custody.key: {e}"))?;
            tokenwatch::custody::parse_key(&text)?
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
    Ok(Some(Arc::new(tokenwatch::custody::Custody::new(
        &key,
        c.max_tokens,
        c.max_age_secs,
    ))))
}

fn act_cmd(config_path: &Path, by: &str, act: Act) -> Result<()> {
    let (cfg, _) = load_config(Some(config_path))?;
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

/// Decode settings for `cfg`, with JWT verification when `[identity]`
/// names keys (paths relative to `base`, the config file's folder).
fn decode_settings(cfg: &Config, base: &Path, key: &[u8]) -> Result<DecodeSettings> {
    let settings = DecodeSettings::new(cfg, key).map_err(anyhow::Error::msg)?;
    Ok(
        match tokenwatch::jwks::load(&cfg.identity, base).map_err(anyhow::Error::msg)? {
            Some(v) => settings.with_verifier(v),
            None => settings,
        },
    )
}

fn hash_key(cfg: &Config) -> Vec<u8> {
    configured_hash_key(cfg)
        .ok()
        .flatten()
        .unwrap_or_else(|| DEFAULT_HASH_KEY.to_vec())
}

/// The token hash key from `$TOKENWATCH_HASH_KEY` (`input.token_hash_key_env`)
/// or `input.token_hash_key` (`env:NAME` / `file:/path`); `None` when
/// neither is set.
fn configured_hash_key(cfg: &Config) -> Result<Option<Vec<u8>>> {
    let env = &cfg.input.token_hash_key_env;
    let key = if let Ok(k) = std::env::var(env)
        && !k.is_empty()
    {
        k
    } else if let Some(k) = &cfg.input.token_hash_key {
        config::resolve_secret(k).map_err(|e| anyhow::anyhow!("input.token_hash_key: {e}"))?
    } else {
        return Ok(None);
    };
    if key.len() < MIN_HASH_KEY_BYTES {
        bail!(
            "the token hash key is {} bytes: use at least {MIN_HASH_KEY_BYTES} random bytes, \
             e.g. `export {env}=$(openssl rand -hex 32)`",
            key.len()
        );
    }
    Ok(Some(key.into_bytes()))
}

/// Batch commands (replay, explain, synth, demo) may run under the
/// documented key, and say so once.
fn batch_hash_key(cfg: &Config) -> Result<Vec<u8>> {
    Ok(match configured_hash_key(cfg)? {
        Some(k) => k,
        None => {
            eprintln!(
                "note: no token hash key ({} or input.token_hash_key): opaque-token ids (h:…) \
                 use the built-in documented key, which anyone can compute; set one for real logs",
                cfg.input.token_hash_key_env
            );
            DEFAULT_HASH_KEY.to_vec()
        }
    })
}

/// `run` watches real traffic: it never starts under the documented key.
fn service_hash_key(cfg: &Config) -> Result<Vec<u8>> {
    configured_hash_key(cfg)?.ok_or_else(|| {
        anyhow::anyhow!(
            "tokenwatch run needs a secret token hash key: the built-in one is public, so anyone \
             could compute the ids (h:…) of opaque tokens. Set {env} (e.g. \
             `export {env}=$(openssl rand -hex 32)`, the same on every instance) or \
             input.token_hash_key = \"file:/path\"",
            env = cfg.input.token_hash_key_env
        )
    })
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
            let (cfg, base) = load_config(config.as_deref())?;
            let settings = decode_settings(&cfg, &base, &batch_hash_key(&cfg)?)?;
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
            let (mut cfg, base) = load_config(config.as_deref())?;
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
            let settings = decode_settings(&cfg, &base, &batch_hash_key(&cfg)?)?;
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
        } => demo(
            config.as_deref(),
            findings.as_deref(),
            all,
            (!no_dashboard).then_some(listen),
            speed,
        ),
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
        Command::Run { config, brokers } => {
            let (mut cfg, base) = load_config(Some(&config))?;
            if let (Some(b), Some(k)) = (brokers, cfg.kafka.as_mut()) {
                k.brokers = b;
            }
            let enricher =
                Arc::new(Enricher::from_config(&cfg, &base).context("loading GeoIP databases")?);
            let settings = decode_settings(&cfg, &base, &service_hash_key(&cfg)?)?;
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::Relaxed))
                .context("installing the SIGINT/SIGTERM handler")?;
            let health = Arc::new(tokenwatch::health::Health::default());
            let custody = custody(&cfg)?;
            let deny = Arc::new(tokenwatch::act::DenyList::default());
            let ops_listen = cfg.kafka.as_ref().and_then(|k| k.ops_listen);
            let prometheus = if ops_listen.is_some() || cfg.dashboard.enabled {
                Some(tokenwatch::ops::install_recorder().map_err(anyhow::Error::msg)?)
            } else {
                None
            };
            let web_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let web = if cfg.dashboard.enabled {
                Some(dashboard(
                    &cfg,
                    cfg.dashboard.listen,
                    health.clone(),
                    prometheus.clone(),
                    Some(deny.clone()),
                    web_stop.clone(),
                    cfg.dashboard.users.is_empty() && cfg.dashboard.api_keys.is_empty(),
                )?)
            } else {
                None
            };
            if let (Some(addr), Some(prometheus)) = (ops_listen, prometheus) {
                let check = cfg
                    .response
                    .revokers
                    .iter()
                    .find(|r| r.kind == config::RevokerKind::DenyList)
                    .map(|r| tokenwatch::ops::Check {
                        deny: deny.clone(),
                        settings: settings.clone(),
                        // Validated with the configuration.
                        places: r
                            .token_places
                            .iter()
                            .filter_map(|p| config::TokenPlace::parse(p).ok())
                            .collect(),
                    });
                tokenwatch::ops::spawn(addr, health.clone(), prometheus, check)
                    .map_err(anyhow::Error::msg)?;
            }
            // The dispatcher stops after the service: the last decisions are
            // in the outbox, calls in flight finish, the rest waits for the
            // next start.
            let dispatch_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let dispatcher =
                tokenwatch::act::start(&cfg, custody.clone(), deny, dispatch_stop.clone())
                    .context("starting the dispatcher")?;
            let stats =
                tokenwatch::kafka::run(&cfg, settings, custody, enricher, stop, health, |s| {
                    eprintln!(
                        "tokenwatch run: consumed {} records, {} events, {} dropped, {} findings \
                     ({} re-derived after a restart, not produced again), {} partitions, \
                     {} checkpoints, {} commits",
                        s.consumed,
                        s.events,
                        s.dropped,
                        s.findings,
                        s.findings_deduplicated,
                        s.assigned,
                        s.checkpoints,
                        s.commits
                    );
                })?;
            if let Some(l) = &stats.latency_us {
                eprintln!(
                    "tokenwatch run: broker timestamp → finding produced: p50 {:.1} ms, p99 {:.1} ms, \
                     p99.9 {:.1} ms, max {:.1} ms over {} findings",
                    l.p50 as f64 / 1000.0,
                    l.p99 as f64 / 1000.0,
                    l.p999 as f64 / 1000.0,
                    l.max as f64 / 1000.0,
                    l.count
                );
            }
            dispatch_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = dispatcher.join();
            web_stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(w) = web {
                let _ = w.join();
            }
            eprintln!(
                "tokenwatch run: stopped cleanly ({} records consumed, state checkpointed)",
                stats.consumed
            );
            Ok(())
        }
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
            let ds = synth::generate(&sc, &name, &hash_key(&cfg)).map_err(anyhow::Error::msg)?;
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
    let settings = DecodeSettings::new(cfg, &batch_hash_key(cfg)?).map_err(anyhow::Error::msg)?;
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

fn demo(
    config: Option<&Path>,
    findings_path: Option<&Path>,
    all: bool,
    dashboard_at: Option<Option<std::net::SocketAddr>>,
    speed: Option<f64>,
) -> Result<()> {
    let (mut cfg, _) = load_config(config)?;
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
    let key = hash_key(&cfg);
    let ds = synth::generate(&sc, "demo", &key).map_err(anyhow::Error::msg)?;
    let enricher = Arc::new(synth::world::enricher(&cfg));
    let settings = DecodeSettings::new(&cfg, &key).map_err(anyhow::Error::msg)?;
    let sources: Vec<LineSource> = ds
        .files
        .iter()
        .map(|(fmt, data)| LineSource::from_bytes(&format!("{fmt}.jsonl"), data.clone()))
        .collect();
    let mut out: Option<Box<dyn Write>> = match findings_path {
        Some(p) => Some(Box::new(std::io::BufWriter::new(std::fs::File::create(p)?))),
        None => None,
    };
    let mut shown = 0usize;
    let mut scored = Vec::new();
    let opts = ReplayOptions {
        format: "auto".into(),
        speed,
        progress: false,
        max_examples: 5,
    };
    let health = Arc::new(tokenwatch::health::Health::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // With the dashboard: findings and decisions go to a store of their
    // own (removed at exit), served while the replay runs and after it.
    let demo_dir = std::env::temp_dir().join(format!("tokenwatch-demo-{}", std::process::id()));
    let web = match dashboard_at {
        Some(listen) => {
            std::fs::create_dir_all(&demo_dir)
                .with_context(|| format!("creating {}", demo_dir.display()))?;
            cfg.store.path = demo_dir.join("demo.db");
            // Nothing to save: Ctrl-C ends the demo at once, replay or not.
            let dir = demo_dir.clone();
            ctrlc::set_handler(move || {
                let _ = std::fs::remove_dir_all(&dir);
                eprintln!("\ntokenwatch demo: stopped");
                std::process::exit(0);
            })
            .context("installing the SIGINT/SIGTERM handler")?;
            health.set_ok();
            let prometheus = tokenwatch::ops::install_recorder().ok();
            Some(dashboard(
                &cfg,
                listen.unwrap_or(cfg.dashboard.listen),
                health.clone(),
                prometheus,
                None,
                stop.clone(),
                true,
            )?)
        }
        None => None,
    };
    let mut pipeline = Pipeline::new(&cfg, settings, enricher);
    if web.is_some() {
        let mut store = tokenwatch::store::Store::open(&cfg.store.path)?;
        // Deliveries as in `run` (with the built-in rules: no channel, so
        // alerts are recorded as having nowhere to go).
        let deny = Arc::new(tokenwatch::act::DenyList::default());
        tokenwatch::act::start(&cfg, None, deny, stop.clone())
            .context("starting the dispatcher")?;
        let hub = health.clone();
        pipeline.live = Some(health.clone());
        pipeline.on_decision = Some(Box::new(move |f, d| {
            let now = tokenwatch::clock::now_ms();
            let f = std::slice::from_ref(f);
            if let Err(e) =
                tokenwatch::respond::respond(&mut store, &hub.live, f, now, |_| d.clone())
            {
                tracing::warn!("demo store: {e}");
            }
        }));
    }
    let stdout = std::io::stdout();
    let summary = pipeline
        .run(sources, &opts, &mut |f: &Finding| {
            scored.push(ScoredFinding::from(f));
            if let Some(o) = out.as_mut() {
                let _ = writeln!(o, "{}", serde_json::to_string(f).expect("serializes"));
            }
            if all || shown < 40 {
                shown += 1;
                let _ = writeln!(
                    stdout.lock(),
                    "{}  {:<8} {:<18} {:<14} {}\n{:>36}{}",
                    &f.event_time[..19],
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
            } else if shown == 40 {
                shown += 1;
                let _ = writeln!(
                    stdout.lock(),
                    "… (more findings; `tokenwatch demo --all` shows every one)"
                );
            }
        })
        .map_err(anyhow::Error::msg)?;
    if let Some(mut o) = out {
        o.flush()?;
    }
    println!("\n── summary ──\n{}", summary.render());
    println!(
        "── accuracy against the injected attacks ──\n{}",
        eval::score(&ds.labels, &scored).render()
    );
    if let Some(w) = web {
        eprintln!(
            "\nThe dashboard keeps serving the demo's incidents (see above for the address and password). Ctrl-C stops it."
        );
        let _ = w.join();
        let _ = std::fs::remove_dir_all(&demo_dir);
    }
    Ok(())
}

/// How long the printed one-time admin password is accepted (it is spent by
/// its first login in any case).
const ONE_TIME_PASSWORD_SECS: i64 = 3600;

/// Start the dashboard. With `one_time_admin`, an `admin` user with a
/// random password is added and the password printed once (on stderr); it
/// logs in once, within [`ONE_TIME_PASSWORD_SECS`].
fn dashboard(
    cfg: &Config,
    listen: std::net::SocketAddr,
    health: Arc<tokenwatch::health::Health>,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    deny: Option<Arc<tokenwatch::act::DenyList>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    one_time_admin: bool,
) -> Result<std::thread::JoinHandle<()>> {
    use tokenwatch::web;
    let password = one_time_admin.then(|| web::auth::random_token()[..16].to_string());
    let mut one_time = Vec::new();
    if let Some(p) = &password {
        one_time.push(web::auth::OneTimeUser {
            name: "admin".to_string(),
            role: config::Role::Admin,
            password_hash: web::auth::hash_password(p).map_err(anyhow::Error::msg)?,
            expires_ms: tokenwatch::clock::now_ms() + ONE_TIME_PASSWORD_SECS * 1000,
        });
    }
    let secure = cfg
        .dashboard
        .secure_cookies
        .unwrap_or_else(|| cfg.response.dashboard_url.starts_with("https://"));
    let auth = web::Auth::new(&cfg.dashboard, one_time, secure).map_err(anyhow::Error::msg)?;
    let st = web::WebState::new(Arc::new(cfg.clone()), auth, health, prometheus, deny)
        .map_err(anyhow::Error::msg)?;
    let (handle, bound) = web::spawn(listen, st, stop).map_err(|e| {
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
    Ok(handle)
}
