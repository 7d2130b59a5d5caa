//! Partitions with detector state (shards) and stateless forwarders;
//! a shard's checkpoint encoding and the source marks that drop records
//! forwarded twice. Pure: tested without a broker.

use super::*;

/// How a subscribed topic's partitions are handled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Role {
    /// Keyed by token: detect here.
    Keyed,
    /// Unkeyed input: re-key each record into the repartition topic.
    Forward,
    /// The repartition topic: detect here.
    Internal,
}

pub(super) struct TopicRole {
    pub(super) name: String,
    pub(super) format: String,
    pub(super) role: Role,
}

/// A partition with detector state.
pub(super) struct Shard {
    pub(super) engine: Engine,
    /// Next offset to process (last processed + 1).
    pub(super) next: Option<i64>,
    /// After a restore, offsets below this were processed before…
    pub(super) ckpt_next: i64,
    /// …except these events, which were waiting in the reorder buffer.
    pub(super) readmit: FxHashSet<(i64, u32)>,
    pub(super) last_record: Instant,
    pub(super) last_checkpoint: Instant,
    /// Latest checkpoint sequence number in the store.
    pub(super) seq: i64,
    pub(super) dirty: bool,
    /// Repartition topic: per source partition, the highest source offset
    /// processed. Forwarding is at-least-once (a forwarder that crashes
    /// forwards again from its committed offset); this drops the copies.
    pub(super) sources: HashMap<String, HashMap<i32, i64>>,
}

/// A shard's checkpoint: `[u32 LE length][source marks (postcard)][engine snapshot]`.
pub(super) fn encode_shard_state(s: &Shard) -> Result<Vec<u8>, String> {
    let marks: Vec<(&str, i32, i64)> = s
        .sources
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |(p, o)| (t.as_str(), *p, *o)))
        .collect();
    let marks = postcard::to_allocvec(&marks).map_err(|e| e.to_string())?;
    let engine = s.engine.snapshot().map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(4 + marks.len() + engine.len());
    out.extend_from_slice(&(marks.len() as u32).to_le_bytes());
    out.extend_from_slice(&marks);
    out.extend_from_slice(&engine);
    Ok(out)
}

/// Restore a shard; returns the events to feed again.
pub(super) fn decode_shard_state(s: &mut Shard, bytes: &[u8]) -> Result<Vec<(i64, u32)>, String> {
    let len = bytes
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("checkpoint too short")?;
    let marks = bytes.get(4..4 + len).ok_or("checkpoint truncated")?;
    let marks: Vec<(String, i32, i64)> = postcard::from_bytes(marks).map_err(|e| e.to_string())?;
    let pending = s
        .engine
        .restore(&bytes[4 + len..])
        .map_err(|e| e.to_string())?;
    s.sources.clear();
    for (t, p, o) in marks {
        s.sources.entry(t).or_default().insert(p, o);
    }
    Ok(pending)
}

/// Source coordinates a forwarder puts on a repartitioned record.
pub(super) fn source_of<M: Message>(m: &M) -> Option<(&str, i32, i64)> {
    let h = m.headers()?;
    let get = |k: &str| {
        h.iter()
            .find(|x| x.key == k)
            .and_then(|x| x.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    Some((
        get("tokenwatch-source-topic")?,
        get("tokenwatch-source-partition")?.parse().ok()?,
        get("tokenwatch-source-offset")?.parse().ok()?,
    ))
}

impl Shard {
    /// A shard with empty state; `seq` is its latest checkpoint in the store.
    pub(super) fn new(engine: Engine, seq: i64) -> Shard {
        Shard {
            engine,
            next: None,
            ckpt_next: i64::MIN,
            readmit: FxHashSet::default(),
            last_record: Instant::now(),
            last_checkpoint: Instant::now(),
            seq,
            dirty: false,
            sources: HashMap::new(),
        }
    }
}

/// An unkeyed input partition in repartition mode: no state.
pub(super) struct Forward {
    pub(super) next: Option<i64>,
}

pub(super) enum Part {
    Shard(Box<Shard>),
    Forward(Box<Forward>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn shard() -> Shard {
        Shard::new(Engine::new(&Config::default()), 0)
    }

    #[test]
    fn a_checkpoint_brings_back_the_source_marks_that_drop_forwarded_copies() {
        let mut a = shard();
        a.sources.entry("gw".into()).or_default().insert(0, 41);
        a.sources.entry("gw".into()).or_default().insert(1, 7);
        a.sources
            .entry("other".into())
            .or_default()
            .insert(3, 1_000_000);
        let bytes = encode_shard_state(&a).unwrap();
        let mut b = shard();
        b.sources.entry("stale".into()).or_default().insert(9, 9);
        let pending = decode_shard_state(&mut b, &bytes).unwrap();
        assert!(pending.is_empty(), "nothing was waiting: {pending:?}");
        assert_eq!(b.sources, a.sources, "marks replaced, not merged");
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_not_a_panic() {
        let good = encode_shard_state(&shard()).unwrap();
        let mut long_marks = good.clone();
        long_marks.splice(..4, 1_000u32.to_le_bytes());
        for (bytes, want) in [
            (&b""[..], "too short"),
            (&b"\x01\x00"[..], "too short"),
            (&long_marks[..], "truncated"),
        ] {
            let err = decode_shard_state(&mut shard(), bytes).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        assert!(decode_shard_state(&mut shard(), &good[..good.len() - 1]).is_err());
    }

    fn message(headers: &[(&str, &str)]) -> rdkafka::message::OwnedMessage {
        let h = headers.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
            h.insert(Header {
                key,
                value: Some(*value),
            })
        });
        rdkafka::message::OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "tw.repartition".into(),
            Timestamp::NotAvailable,
            0,
            5,
            Some(h),
        )
    }

    #[test]
    fn a_forwarded_record_names_its_source_and_a_malformed_one_names_none() {
        let m = message(&[
            ("tokenwatch-source-topic", "gw"),
            ("tokenwatch-source-partition", "2"),
            ("tokenwatch-source-offset", "77"),
        ]);
        assert_eq!(source_of(&m), Some(("gw", 2, 77)));
        let bad = message(&[
            ("tokenwatch-source-topic", "gw"),
            ("tokenwatch-source-partition", "two"),
            ("tokenwatch-source-offset", "77"),
        ]);
        assert_eq!(source_of(&bad), None);
        assert_eq!(source_of(&message(&[])), None);
    }
}
