//! The record step, one code path for `replay`, `run` and `demo`: the bytes
//! of one source record → its events, decoded and enriched, each with its
//! position in the source; the edge then feeds them to its `Engine` (files
//! merged by time first). Replay gives exactly the findings live processing
//! gave because both go through here.
//!
//! No I/O, no clock. Drops are handed back, with the event's index in its
//! record, for the edge to count, dead-letter or report. The one effect:
//! given a custody, the raw tokens the decoder hands out are sealed into it
//! here, right after the record is decoded.

use std::sync::Arc;

use crate::custody::Custody;
use crate::decode::Decoder;
use crate::enrich::Enricher;
use crate::event::{AccessEvent, Drop, Enriched, SourcePos};

/// Where a record came from: its partition offset and the broker's
/// timestamp (Kafka), or nothing (files).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordPos {
    pub offset: i64,
    pub broker_ts: Option<i64>,
}

/// Decodes, enriches and feeds events; holds the scratch space that makes
/// this free of allocation per record.
pub struct Processor {
    enricher: Arc<Enricher>,
    decoded: Vec<Result<AccessEvent, Drop>>,
    custody: Option<Arc<Custody>>,
}

impl Processor {
    pub fn new(enricher: Arc<Enricher>) -> Processor {
        Processor {
            enricher,
            decoded: Vec::new(),
            custody: None,
        }
    }

    /// Seal the raw tokens of accepted requests into `custody` (the
    /// decoder must be built with `DecodeSettings::keep_raw_tokens`).
    pub fn with_custody(mut self, custody: Option<Arc<Custody>>) -> Processor {
        self.custody = custody;
        self
    }

    /// Hand the raw tokens of the record `decoder` just decoded to custody
    /// (the forwarders' path decodes without enriching, and calls this).
    pub fn keep_raw_tokens(&self, decoder: &mut Decoder) {
        if let Some(c) = &self.custody {
            c.keep_all(decoder.take_raw_tokens());
        }
    }

    /// Decode one record and enrich each of its events, in record order:
    /// `out` gets each event or each drop with its index in the record.
    pub fn prepare(
        &mut self,
        decoder: &mut Decoder,
        record: &[u8],
        pos: Option<RecordPos>,
        mut out: impl FnMut(u32, Result<Enriched, Drop>),
    ) {
        self.decoded.clear();
        decoder.decode(record, &mut self.decoded);
        self.keep_raw_tokens(decoder);
        for (i, r) in self.decoded.drain(..).enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match r {
                Ok(ev) => {
                    let mut en = self.enricher.enrich(ev);
                    en.source = pos.map(|p| SourcePos {
                        offset: p.offset,
                        index,
                        broker_ts: p.broker_ts,
                    });
                    out(index, Ok(en));
                }
                Err(d) => out(index, Err(d)),
            }
        }
    }
}
