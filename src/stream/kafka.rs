//! Where Kafka is and how kidjamo's clients talk to it: `kafka://host:port[,host:port]/topic`
//! targets, and the client settings every producer and consumer shares (SPEC §3).

use rdkafka::config::ClientConfig;
use std::fmt;

/// A topic on a cluster, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTarget {
    pub brokers: String,
    pub topic: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{text:?} is not a Kafka target: {why} (expected kafka://host:port/topic)")]
pub struct TargetError {
    pub text: String,
    pub why: &'static str,
}

impl KafkaTarget {
    /// Parses `kafka://host:port[,host:port…][/topic]`; the topic defaults to `default_topic`.
    pub fn parse(text: &str, default_topic: &str) -> Result<KafkaTarget, TargetError> {
        let err = |why| TargetError {
            text: text.to_string(),
            why,
        };
        let rest = text
            .strip_prefix("kafka://")
            .ok_or_else(|| err("no kafka:// scheme"))?;
        let (brokers, topic) = match rest.split_once('/') {
            Some((b, t)) => (b, t),
            None => (rest, ""),
        };
        if brokers.is_empty() {
            return Err(err("no broker address"));
        }
        for broker in brokers.split(',') {
            let Some((host, port)) = broker.rsplit_once(':') else {
                return Err(err("a broker address has no port"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(err("a broker address is not host:port"));
            }
        }
        let topic = if topic.is_empty() {
            default_topic
        } else {
            topic
        };
        if topic.contains('/')
            || !topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(err(
                "a topic name has only letters, digits, '.', '_' and '-'",
            ));
        }
        Ok(KafkaTarget {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        })
    }
}

impl fmt::Display for KafkaTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kafka://{}/{}", self.brokers, self.topic)
    }
}

/// Compression of produced batches (SPEC §3: lz4 or zstd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compression {
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Settings of an idempotent, compressing producer that accounts for every record.
pub fn producer_config(brokers: &str, compression: Compression) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "kidjamo")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", compression.as_str())
        // Batches of up to 1 MB, held at most 5 ms: throughput without hurting alert latency.
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        // A record not acknowledged within 30 s counts as failed (and is reported).
        .set("message.timeout.ms", "30000")
        .set("socket.timeout.ms", "10000");
    c
}

/// Settings of a consumer group member that commits offsets itself, after the data is durable.
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "kidjamo-stream")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("fetch.wait.max.ms", "100")
        // A topic that disappears and comes back (a broker without durable storage restarting,
        // a topic recreated) is seen again within seconds, not the default five minutes.
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("queued.min.messages", "200000")
        // The consumer lag gauge comes from these statistics.
        .set("statistics.interval.ms", "1000")
        .set("socket.timeout.ms", "10000");
    c
}

/// The payload of the record at `offset` of a partition (whose first offset is `low`), read
/// by a throwaway consumer that joins no group (it neither moves nor commits anybody's
/// offsets). `None` when the record cannot be read within `timeout` (gone by retention, broker
/// unreachable).
pub fn payload_at(
    brokers: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    low: i64,
    timeout: std::time::Duration,
) -> Option<Vec<u8>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "kidjamo-stream-probe")
        // librdkafka wants a group id even for assign(); this one never joins or commits.
        .set("group.id", "kidjamo-stream-probe")
        .set("enable.auto.commit", "false")
        // Out of range is an answer ("not there"), not a reason to read from elsewhere.
        .set("auto.offset.reset", "error")
        .create()
        .inspect_err(|e| tracing::debug!(error = %e, "cannot create a probe consumer"))
        .ok()?;
    let deadline = std::time::Instant::now() + timeout;
    // Some brokers (tansu) answer a fetch that starts inside a record batch with the next
    // batch: when the first record read is past `offset`, start further back and read forward.
    let mut back = 0i64;
    loop {
        let start = (offset - back).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start))
            .ok()?;
        consumer
            .assign(&tpl)
            .inspect_err(|e| tracing::debug!(error = %e, "cannot assign the probe consumer"))
            .ok()?;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            match consumer.poll(left) {
                Some(Ok(m)) if m.offset() == offset => {
                    return Some(m.payload().unwrap_or_default().to_vec())
                }
                // Read past it: the fetch began after the record.
                Some(Ok(m)) if m.offset() > offset => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::debug!(topic, partition, offset, error = %e, "cannot read the record");
                    return None;
                }
                // Other events (connection, metadata) also end a poll: keep waiting.
                None => continue,
            }
        }
        if start == low {
            return None;
        }
        back = if back == 0 { 1024 } else { back * 16 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_topic() {
        let t = KafkaTarget::parse("kafka://127.0.0.1:9092/m.x", "d").expect("valid");
        assert_eq!(t.brokers, "127.0.0.1:9092");
        assert_eq!(t.topic, "m.x");
        let t = KafkaTarget::parse("kafka://a:1,b:2", "kidjamo.measurements").expect("valid");
        assert_eq!(t.brokers, "a:1,b:2");
        assert_eq!(t.topic, "kidjamo.measurements");
        assert_eq!(t.to_string(), "kafka://a:1,b:2/kidjamo.measurements");
    }

    #[test]
    fn bad_targets_say_why() {
        for (text, why) in [
            ("http://a:1/t", "no kafka:// scheme"),
            ("kafka:///t", "no broker address"),
            ("kafka://a/t", "a broker address has no port"),
            ("kafka://a:x/t", "a broker address is not host:port"),
            (
                "kafka://a:1/t/u",
                "a topic name has only letters, digits, '.', '_' and '-'",
            ),
        ] {
            let e = KafkaTarget::parse(text, "d").expect_err(text);
            assert_eq!(e.why, why, "{text}");
            assert!(e.to_string().contains(text));
        }
    }
}
