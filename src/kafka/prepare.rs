//! A decode thread: each batch of its partitions the poll thread lends →
//! its events, decoded and enriched through the record step
//! (`process::Processor::prepare`, the same one file replay uses), handed on
//! with the messages to the processing thread, which only filters (offsets
//! already processed, readmission after a restore, copies forwarded twice)
//! and detects.
//!
//! Decoding is stateless per record, so it runs ahead of detection on the
//! other cores (`kafka.decode_threads`, one per core by default). A
//! partition is always decoded by the same thread, with one decoder, in
//! offset order: the decoders' token caches only change speed, and `auto`
//! fixes a partition's format on its first record, as a file replay does.
//! It owns no detector state, commits nothing and never blocks the poll
//! thread (a full lane's batches wait there). A record of a forwarded
//! (unkeyed) topic is decoded here only for its partition key, and sealed;
//! the processing thread decides whether to send it (not a copy already
//! forwarded) and does.

use super::*;
use crate::seal::RecordSeal;

/// A batch and its events, in message order.
pub(super) struct Prepared<'c> {
    pub(super) batch: Vec<BorrowedMessage<'c>>,
    /// Per message, what was made of it.
    pub(super) outcomes: Vec<Outcome>,
    /// Each event or drop with its index in its record.
    pub(super) results: Vec<(u32, Result<Enriched, Drop>)>,
}

/// What the decode thread made of one message.
pub(super) enum Outcome {
    /// The next this many entries of `results` (none for a message of no
    /// topic of ours).
    Events(u32),
    /// A record of a forwarded (unkeyed) topic.
    Forward(Forwarded),
}

/// A record of an unkeyed topic, ready to forward: its partition key and
/// the record sealed (none when no object in it decoded), and its drops.
pub(super) struct Forwarded {
    pub(super) keyed: Option<(String, Vec<u8>)>,
    pub(super) drops: Vec<Drop>,
}

/// What the decode thread hands on.
pub(super) enum Ready<'c> {
    Batch(Prepared<'c>),
    /// The poll thread stopped (shutdown).
    End,
}

/// The decode thread's own record step, decoders and seal.
pub(super) struct Preparer {
    /// Per subscribed topic (as `Service::roles`): name, format, role.
    roles: Vec<(String, String, Role)>,
    settings: DecodeSettings,
    processor: crate::process::Processor,
    seal: RecordSeal,
    /// Per partition, by format name (the repartition topic carries several).
    decoders: HashMap<(usize, i32), Vec<(String, Decoder)>>,
    decoded: Vec<Result<crate::event::AccessEvent, Drop>>,
    /// Shared by the decode threads (`warn_xff`).
    xff_warned: Arc<AtomicBool>,
}

impl Preparer {
    pub(super) fn new(
        roles: &[TopicRole],
        settings: DecodeSettings,
        processor: crate::process::Processor,
        xff_warned: Arc<AtomicBool>,
    ) -> Preparer {
        Preparer {
            roles: roles
                .iter()
                .map(|r| (r.name.clone(), r.format.clone(), r.role))
                .collect(),
            seal: RecordSeal::new(&settings.forward_key()),
            settings,
            processor,
            decoders: HashMap::new(),
            decoded: Vec::new(),
            xff_warned,
        }
    }

    /// The thread's loop: until the poll thread ends or the processing
    /// thread stops taking batches.
    pub(super) fn run<'c>(
        &mut self,
        rx: &std::sync::mpsc::Receiver<Fetched<'c>>,
        tx: &SyncSender<Ready<'c>>,
    ) {
        while let Ok(Fetched::Batch(batch)) = rx.recv() {
            let prepared = self.prepare(batch);
            if tx.send(Ready::Batch(prepared)).is_err() {
                return;
            }
        }
        let _ = tx.send(Ready::End);
    }

    pub(super) fn prepare<'c>(&mut self, batch: Vec<BorrowedMessage<'c>>) -> Prepared<'c> {
        let mut results = Vec::with_capacity(batch.len());
        let outcomes = batch
            .iter()
            .map(|m| self.message(m, &mut results))
            .collect();
        Prepared {
            batch,
            outcomes,
            results,
        }
    }

    fn message(
        &mut self,
        m: &BorrowedMessage<'_>,
        out: &mut Vec<(u32, Result<Enriched, Drop>)>,
    ) -> Outcome {
        let Preparer {
            roles,
            settings,
            processor,
            seal,
            decoders,
            decoded,
            xff_warned,
        } = self;
        let Some((ti, (_, configured, role))) =
            roles.iter().enumerate().find(|(_, r)| r.0 == m.topic())
        else {
            return Outcome::Events(0);
        };
        let format = match role {
            Role::Internal => m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "tokenwatch-format")
                        .and_then(|h| h.value)
                })
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or("auto"),
            Role::Keyed | Role::Forward => configured.as_str(),
        };
        let decoder = match decoder_for(
            decoders.entry((ti, m.partition())).or_default(),
            settings,
            format,
        ) {
            Ok(d) => d,
            Err(e) => {
                // Only a forwarded record can name a format this instance
                // does not have (a configured one is checked at start).
                let why = format!(
                    "the record names the format {format:?}, which this instance cannot decode \
                     ({e}): give every instance of the group the same [formats] blocks"
                );
                let d = Drop::new(DropReason::UnknownFormat, why);
                if *role == Role::Forward {
                    return Outcome::Forward(Forwarded {
                        keyed: None,
                        drops: vec![d],
                    });
                }
                out.push((0, Err(d)));
                return Outcome::Events(1);
            }
        };
        let payload = m.payload().unwrap_or_default();
        if *role == Role::Forward {
            // Decoded (without enriching) only for the partition key; the
            // raw tokens go to custody; the copy is sealed (it carries the
            // gateway's raw credentials).
            decoded.clear();
            decoder.decode(payload, decoded);
            processor.keep_raw_tokens(decoder);
            warn_xff(xff_warned, decoder);
            let mut key: Option<String> = None;
            let mut drops = Vec::new();
            for r in decoded.drain(..) {
                match r {
                    Ok(e) if key.is_none() => key = Some(partition_key(&e).to_string()),
                    Ok(_) => {}
                    Err(d) => drops.push(d),
                }
            }
            return Outcome::Forward(Forwarded {
                keyed: key.map(|k| (k, seal.seal(format, payload))),
                drops,
            });
        }
        // Forwarded records are sealed; ones forwarded by a version before
        // sealing are read as they are, so a rolling upgrade loses nothing.
        let sealed = *role == Role::Internal
            && m.headers()
                .is_some_and(|h| h.iter().any(|h| h.key == "tokenwatch-seal"));
        let opened = sealed.then(|| seal.open(format, payload));
        let pos = RecordPos {
            offset: m.offset(),
            broker_ts: m.timestamp().to_millis(),
        };
        let before = out.len();
        let push = |i: u32, r: Result<Enriched, Drop>| out.push((i, r));
        match opened {
            None => processor.prepare(decoder, payload, Some(pos), push),
            Some(Some(p)) => processor.prepare(decoder, &p, Some(pos), push),
            Some(None) => out.push((
                0,
                Err(Drop::new(
                    DropReason::Unsealable,
                    "a repartitioned record that does not open under this instance's \
                     key: give every instance of the group the same TOKENWATCH_HASH_KEY",
                )),
            )),
        }
        warn_xff(xff_warned, decoder);
        Outcome::Events(u32::try_from(out.len() - before).unwrap_or(u32::MAX))
    }
}

/// A partition's decoder for `format` (the repartition topic carries
/// several), made on first use.
fn decoder_for<'a>(
    decoders: &'a mut Vec<(String, Decoder)>,
    settings: &DecodeSettings,
    format: &str,
) -> Result<&'a mut Decoder, String> {
    let i = match decoders.iter().position(|(f, _)| f == format) {
        Some(i) => i,
        None => {
            decoders.push((format.to_string(), settings.decoder(format)?));
            decoders.len() - 1
        }
    };
    decoders
        .get_mut(i)
        .map(|(_, d)| d)
        .ok_or_else(|| format!("no decoder for {format}"))
}
