//! Topic administration: the repartition and changelog topics.

use super::*;

/// Create the repartition topic if it does not exist: as many partitions as
/// the largest unkeyed input topic (or `repartition_partitions`).
pub(super) fn ensure_repartition_topic(kc: &KafkaConfig, topic: &str) -> Result<(), ServiceError> {
    let mut partitions = kc.repartition_partitions as i32;
    if partitions == 0 {
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
            client_config_for(kc, ClientKind::Admin)?.create()?;
        for t in kc.topics.iter().filter(|t| !t.keyed) {
            let md = admin
                .inner()
                .fetch_metadata(Some(&t.name), Duration::from_secs(30))?;
            let n = md
                .topics()
                .iter()
                .map(|t| t.partitions().len())
                .max()
                .unwrap_or(0);
            partitions = partitions.max(n as i32);
        }
    }
    ensure_topic(kc, topic, partitions.max(1), &[], "repartition")
}

/// Create a topic if it does not exist.
pub(super) fn ensure_topic(
    kc: &KafkaConfig,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
    what: &str,
) -> Result<(), ServiceError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        client_config_for(kc, ClientKind::Admin)?.create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServiceError::Setup(format!("runtime: {e}")))?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let res = rt.block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for r in res {
        match r {
            Ok(_) => {
                tracing::info!(kind = what, %topic, partitions, "topic created")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(ServiceError::Setup(format!(
                    "cannot create the {what} topic {t}: {code} (create it with {partitions} partitions, or allow tokenwatch to)"
                )));
            }
        }
    }
    Ok(())
}
