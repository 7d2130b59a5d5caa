//! librdkafka clients: properties per client kind (secret references
//! resolved), the producer with its delivery reports, record helpers.

use super::*;

/// Which client a librdkafka property is for (the other one would warn).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum ClientKind {
    Consumer,
    Producer,
    Admin,
}

pub(super) fn consumer_only(k: &str) -> bool {
    k.starts_with("group.")
        || k.starts_with("fetch.")
        || k.starts_with("queued.")
        || k.starts_with("auto.")
        || k.starts_with("enable.auto.")
        || matches!(
            k,
            "session.timeout.ms"
                | "heartbeat.interval.ms"
                | "max.poll.interval.ms"
                | "max.partition.fetch.bytes"
                | "partition.assignment.strategy"
                | "isolation.level"
                | "check.crcs"
                | "enable.partition.eof"
        )
}

pub(super) fn producer_only(k: &str) -> bool {
    matches!(
        k,
        "acks"
            | "request.required.acks"
            | "linger.ms"
            | "queue.buffering.max.ms"
            | "queue.buffering.max.messages"
            | "queue.buffering.max.kbytes"
            | "batch.size"
            | "batch.num.messages"
            | "compression.type"
            | "compression.codec"
            | "enable.idempotence"
            | "message.timeout.ms"
            | "delivery.timeout.ms"
            | "retries"
            | "message.send.max.retries"
            | "partitioner"
            | "transactional.id"
    )
}

/// Resolve `env:NAME` and `file:/path` property values.
pub fn client_config(kc: &KafkaConfig) -> Result<ClientConfig, ServiceError> {
    client_config_for(kc, ClientKind::Consumer)
}

pub(super) fn client_config_for(
    kc: &KafkaConfig,
    kind: ClientKind,
) -> Result<ClientConfig, ServiceError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kc.brokers);
    for (k, v) in &kc.properties {
        let skip = match kind {
            ClientKind::Consumer => producer_only(k),
            ClientKind::Producer => consumer_only(k),
            ClientKind::Admin => producer_only(k) || consumer_only(k),
        };
        if skip {
            continue;
        }
        // The same `env:` / `file:` references as every other secret.
        let value = crate::config::resolve_secret(v).map_err(|message| ServiceError::Property {
            key: k.clone(),
            message,
        })?;
        c.set(k, value);
    }
    Ok(c)
}

/// Delivery reports: a record produced with a non-zero ticket reports it
/// here once the broker has it (findings: marked produced in the store
/// right away, so a crash re-produces as little as possible).
#[derive(Default)]
pub(super) struct Deliveries {
    pub(super) delivered: Mutex<Vec<usize>>,
    pub(super) last_logged: Mutex<Option<(String, Instant)>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(fac, message = log_message, "librdkafka producer")
            }
            _ => tracing::debug!(fac, message = log_message, "librdkafka producer"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if first_in_a_while(&self.last_logged, format!("{error}")) {
            tracing::warn!(%error, reason, "producer error");
        }
    }
}

/// Whether an error is new, or last logged more than 30 s ago (a broker
/// outage repeats the same error many times a second).
pub(super) fn first_in_a_while(last: &Mutex<Option<(String, Instant)>>, key: String) -> bool {
    let Ok(mut last) = last.lock() else {
        return true;
    };
    let repeat = last
        .as_ref()
        .is_some_and(|(k, at)| *k == key && at.elapsed() < Duration::from_secs(30));
    if !repeat {
        *last = Some((key, Instant::now()));
    }
    !repeat
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, ticket: usize) {
        if ticket != 0
            && result.is_ok()
            && let Ok(mut d) = self.delivered.lock()
        {
            d.push(ticket);
        }
    }
}

pub(super) type TwProducer = ThreadedProducer<Deliveries>;

pub(super) fn producer(kc: &KafkaConfig) -> Result<TwProducer, ServiceError> {
    let mut c = client_config_for(kc, ClientKind::Producer)?;
    for (k, v) in [
        ("enable.idempotence", "true"),
        ("linger.ms", "5"),
        ("compression.type", "lz4"),
    ] {
        if !kc.properties.contains_key(k) {
            c.set(k, v);
        }
    }
    Ok(c.create_with_context(Deliveries::default())?)
}

/// Record headers from `(key, value)` pairs.
pub(super) fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(*value),
        })
    })
}

/// A record without a delivery ticket.
pub(super) fn record(topic: &str) -> BaseRecord<'_, [u8], [u8], usize> {
    BaseRecord::with_opaque_to(topic, 0)
}

/// Send, waiting while the local queue is full (backpressure, not loss).
pub(super) fn send(
    p: &TwProducer,
    mut rec: BaseRecord<'_, [u8], [u8], usize>,
) -> Result<(), KafkaError> {
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
