//! tokenwatch: catches stolen access tokens in API gateway logs.
//!
//! Module map, in the order a record flows:
//!
//! - [`event`], [`format`], [`config`]: the vocabulary at the bottom (records,
//!   finding kinds, formats' fields and presets, `rules.toml`).
//! - [`source`]: where records come from (files, stdin).
//! - [`decode`]: gateway formats → typed [`event::AccessEvent`]; raw tokens stop here.
//! - [`enrich`]: geo, ASN, network class, client fingerprint.
//! - [`detect`]: the event-time engine, per-token state and the detectors.
//! - [`process`]: the record step shared by replay, `run` and `demo`.
//! - [`pipeline`]: wiring for replays (merging inputs by event time).
//! - [`explain`]: `tokenwatch explain`, what the decoder read from each record.
//! - [`kafka`]: the streaming service (`tokenwatch run`) and `replay --to-kafka`.
//! - [`decide`]: findings → incidents → action requests (pure).
//! - [`respond`]: findings → store with the policy's decisions → live feed.
//! - [`act`]: the dispatcher: revocations and alerts from the outbox.
//! - [`jwks`]: the issuer's keys for JWT verification, loaded and refreshed.
//! - [`custody`]: raw tokens, sealed in memory, for RFC 7009 revocation.
//! - [`store`]: SQLite: checkpoints, findings, incidents, outbox, audit.
//! - [`service`]: top-level wiring of `run` and `demo`, and what every
//!   command needs to start (configuration, hash key, decode settings).
//! - [`shutdown`]: one stop signal, and the threads that serve until it.
//! - [`telemetry`]: every metric, through the `metrics` facade.
//! - [`clock`]: the wall clock, for the edges only.
//! - [`synth`]: labeled synthetic traffic and matching GeoIP databases.
//! - [`eval`]: scores findings against ground-truth labels.
//!
//! `decode`, `enrich` and `detect` are the pure core: no I/O, no wall
//! clock, no panics on input. See ARCHITECTURE.md.

pub mod act;
pub mod clock;
pub mod config;
pub mod custody;
pub mod decide;
pub mod decode;
pub mod detect;
pub mod enrich;
pub mod eval;
pub mod event;
pub mod explain;
pub mod format;
pub mod health;
pub mod jwks;
pub mod kafka;
pub mod live;
pub mod ops;
pub mod pipeline;
pub mod process;
pub mod respond;
pub mod seal;
pub mod service;
pub mod shutdown;
pub mod source;
pub mod store;
pub mod synth;
pub mod telemetry;
pub mod web;
