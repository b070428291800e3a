//! The live path (SPEC §3, §4, §6): `replay` sends wire records to Kafka (or a file) at a
//! chosen pace; `stream` consumes them into Bronze micro-batches and quarantine, runs the alert
//! engine in event time, publishes alerts, and checkpoints its state with its offsets.

pub mod alerter;
pub mod checkpoint;
pub mod consume;
pub mod flush;
pub mod kafka;
pub mod legacy;
pub mod metrics;
pub mod pacing;
pub mod poller;
pub mod produce;
pub mod source;
pub mod topics;

use crate::output::OutputError;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{target}: {what}: {message}")]
    Kafka {
        target: String,
        what: String,
        message: String,
    },
    #[error("{input}: {message}")]
    Input { input: String, message: String },
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
}

impl StreamError {
    pub fn kafka(target: &kafka::KafkaTarget, what: &str, e: impl std::fmt::Display) -> Self {
        StreamError::Kafka {
            target: target.to_string(),
            what: what.to_string(),
            message: e.to_string(),
        }
    }
}
