//! Topics exist before anyone produces or consumes: created on first use with the configured
//! partition count (a cluster that auto-creates topics would give them its own default).

use super::kafka::KafkaTarget;
use super::StreamError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// Creates `topic` with `partitions` partitions unless it exists. Fails, naming the broker,
/// when the cluster does not answer within `timeout`.
pub fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<(), StreamError> {
    let target = KafkaTarget {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", "5000")
        .create()
        .map_err(|e| StreamError::kafka(&target, "cannot create an admin client", e))?;
    // Is the cluster there at all? (Topic creation alone would wait for its full timeout.)
    admin
        .inner()
        .fetch_metadata(None, timeout)
        .map_err(|e| StreamError::kafka(&target, "the broker does not answer", e))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StreamError::Input {
            input: "tokio runtime".into(),
            message: e.to_string(),
        })?;
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .map_err(|e| StreamError::kafka(&target, "cannot create the topic", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(StreamError::Kafka {
                    target: target.to_string(),
                    what: format!("cannot create topic {name}"),
                    message: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
