//! Client errors: each says what failed and where.

/// A client operation's result.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket to a broker failed.
    #[error("connection to {addr}: {source}")]
    Io {
        /// The broker's address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
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

    /// Whether retrying the same operation may succeed: connection failures, timeouts and
    /// the Kafka error codes that Kafka marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Io { .. } | ClientError::Disconnected { .. } | ClientError::Timeout { .. } => true,
            ClientError::Broker { code, .. } => {
                kafka_protocol::error::ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            ClientError::Protocol { .. } | ClientError::UnsupportedVersion { .. } | ClientError::Config { .. } => false,
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
