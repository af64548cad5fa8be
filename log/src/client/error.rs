//! Client errors: each says what failed and where.

/// A client operation's result.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a client operation failed. Cloneable, so that one failure can be handed to every
/// record of a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The socket to a broker failed.
    #[error("connection to {addr}: {source}")]
    Io {
        /// The broker's address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// The connection closed with the request unanswered.
    #[error("connection to {addr} closed: {reason}")]
    Disconnected {
        /// The broker's address.
        addr: String,
        /// What closed it.
        reason: String,
    },
    /// The broker sent something that is not a valid answer.
    #[error("bad response from {addr}: {reason}")]
    Protocol {
        /// The broker's address.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// The broker and this client share no version of an API.
    #[error(
        "{addr} does not support {api} in any version this client speaks (client: v{client_min}-v{client_max}, broker: {broker})"
    )]
    UnsupportedVersion {
        /// The broker's address.
        addr: String,
        /// The API's name.
        api: String,
        /// Oldest version this client speaks.
        client_min: i16,
        /// Newest version this client speaks.
        client_max: i16,
        /// What the broker offers, or "none".
        broker: String,
    },
    /// Something did not finish in time.
    #[error("{what} timed out after {after_ms} ms")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after_ms: u64,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {} (Kafka error {code}){}", code_name(*code), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// The Kafka error code.
        code: i16,
        /// What was being done.
        context: String,
        /// The broker's message, if it sent one.
        message: Option<String>,
    },
    /// A record cannot be sent as it is (too large, bad partition, ...); only that send
    /// fails.
    #[error("record for {topic}: {reason}")]
    InvalidRecord {
        /// The record's topic.
        topic: String,
        /// What was wrong.
        reason: String,
    },
    /// A record is larger than a producer limit; only its send fails.
    #[error("record for {topic} is {size} bytes, larger than {setting} ({limit} bytes)")]
    RecordTooLarge {
        /// The record's topic.
        topic: String,
        /// Its size, encoded.
        size: usize,
        /// The limit.
        limit: usize,
        /// The setting that sets the limit.
        setting: &'static str,
    },
    /// Fetched records could not be read (bad CRC, bad framing, bad compression).
    #[error("corrupt records in {topic}-{partition} at offset {offset}: {reason}")]
    Corrupt {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset of the batch.
        offset: i64,
        /// What was wrong.
        reason: String,
    },
    /// The client was closed.
    #[error("the {0} is closed")]
    Closed(&'static str),
    /// A setting is missing or invalid.
    #[error("invalid client config {key}={value:?}: {reason}")]
    Config {
        /// The property name.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Kafka's name for an error code (`UnknownTopicOrPartition`, ...).
pub fn code_name(code: i16) -> String {
    kafka_protocol::error::ResponseError::try_from_code(code).map_or_else(|| "None".to_string(), |e| e.to_string())
}

impl ClientError {
    /// A broker error from a code, or `None` for code 0.
    pub fn from_code(code: i16, context: impl Into<String>, message: Option<String>) -> Option<Self> {
        (code != crate::codes::NONE).then(|| ClientError::Broker { code, context: context.into(), message })
    }

    /// The Kafka error code, when the broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A config error.
    pub fn config(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        ClientError::Config { key: key.to_string(), value: value.into(), reason: reason.into() }
    }

    /// Whether retrying the same operation may succeed: connection failures, timeouts and
    /// the Kafka error codes that Kafka marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io { .. } | ClientError::Disconnected { .. } | ClientError::Timeout { .. } => true,
            ClientError::Broker { code, .. } => {
                kafka_protocol::error::ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            ClientError::Protocol { .. }
            | ClientError::UnsupportedVersion { .. }
            | ClientError::Config { .. }
            | ClientError::InvalidRecord { .. }
            | ClientError::RecordTooLarge { .. }
            | ClientError::Corrupt { .. }
            | ClientError::Closed(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_errors_name_the_code_and_know_if_retrying_helps() {
        let e = ClientError::from_code(3, "produce to t-0", None).unwrap();
        assert_eq!(e.to_string(), "produce to t-0: UnknownTopicOrPartition (Kafka error 3)");
        assert!(e.is_retriable());
        let e = ClientError::from_code(10, "produce to t-0", Some("too big".into())).unwrap();
        assert_eq!(e.to_string(), "produce to t-0: MessageTooLarge (Kafka error 10): too big");
        assert!(!e.is_retriable());
        assert!(ClientError::from_code(0, "x", None).is_none());
    }
}
