//! Application configuration, under Kafka Streams' property names.
//!
//! ```
//! use freshet_streams::StreamsConfig;
//!
//! let mut config = StreamsConfig::new("wordcount", "127.0.0.1:9092");
//! config.set("num.stream.threads", "2").unwrap();
//! config.set("commit.interval.ms", "100").unwrap();
//! assert_eq!(config.num_stream_threads, 2);
//! assert!(config.set("commit.interval.ms", "soon").is_err());
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use freshet_log::client::ConsumerRecord;

use crate::error::{Result, StreamsError};
use crate::serde::SerdeError;

/// `processing.guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessingGuarantee {
    /// `at_least_once`: input offsets are committed only after every output and changelog
    /// record written for them is acknowledged; after a failure some input is processed
    /// again.
    AtLeastOnce,
    /// `exactly_once_v2`: needs log transactions, which Freshet does not have yet; an
    /// application configured with it refuses to start.
    ExactlyOnceV2,
}

/// What to do with a record that does not deserialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeserializationResponse {
    /// Skip it (logged, and counted in the task's metrics) and go on.
    Continue,
    /// Stop the thread with an error naming the record.
    Fail,
}

/// Decides about records that do not deserialize
/// (`default.deserialization.exception.handler`).
pub trait DeserializationExceptionHandler: Send + Sync + std::fmt::Debug {
    /// Called with the record as read and the serde's error.
    fn handle(&self, record: &ConsumerRecord, error: &SerdeError) -> DeserializationResponse;
}

/// Kafka's `LogAndContinueExceptionHandler`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndContinue;

impl DeserializationExceptionHandler for LogAndContinue {
    fn handle(&self, _record: &ConsumerRecord, _error: &SerdeError) -> DeserializationResponse {
        DeserializationResponse::Continue
    }
}

/// Kafka's `LogAndFailExceptionHandler`, the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogAndFail;

impl DeserializationExceptionHandler for LogAndFail {
    fn handle(&self, record: &ConsumerRecord, error: &SerdeError) -> DeserializationResponse {
        tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset, %error, "a record does not deserialize");
        DeserializationResponse::Fail
    }
}

/// A shared handler.
#[derive(Debug, Clone)]
pub struct DeserializationHandler(pub Arc<dyn DeserializationExceptionHandler>);

impl DeserializationHandler {
    pub(crate) fn handle(&self, record: &ConsumerRecord, error: &SerdeError) -> DeserializationResponse {
        self.0.handle(record, error)
    }
}

impl Default for DeserializationHandler {
    fn default() -> Self {
        DeserializationHandler(Arc::new(LogAndFail))
    }
}

/// A Streams application's configuration.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// `application.id`: the consumer group id, and the prefix of internal topics and of the
    /// state directory.
    pub application_id: String,
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `num.stream.threads` (1).
    pub num_stream_threads: usize,
    /// `commit.interval.ms` (30 s).
    pub commit_interval: Duration,
    /// `state.dir` (`<tmp>/freshet-streams`).
    pub state_dir: PathBuf,
    /// `cache.max.bytes` (10 MiB), shared by all record caches of the instance.
    pub cache_max_bytes: usize,
    /// `processing.guarantee` (at_least_once).
    pub processing_guarantee: ProcessingGuarantee,
    /// `default.deserialization.exception.handler` (log and fail).
    pub deserialization_handler: DeserializationHandler,
    /// `application.server`: this instance's `host:port`, published to the other instances
    /// for interactive-query routing.
    pub application_server: Option<String>,
    /// `replication.factor` of internal topics (-1: the broker's default).
    pub replication_factor: i16,
    /// `poll.ms` (100): how long a thread waits for records when it has nothing to do.
    pub poll: Duration,
    /// Properties passed to the consumers and producers (`consumer.*`, `producer.*` or plain
    /// client properties such as `session.timeout.ms`).
    pub client_properties: Vec<(String, String)>,
}

impl StreamsConfig {
    /// A configuration with Kafka Streams' defaults.
    pub fn new(application_id: &str, bootstrap_servers: &str) -> Self {
        StreamsConfig {
            application_id: application_id.to_string(),
            bootstrap_servers: bootstrap_servers.to_string(),
            num_stream_threads: 1,
            commit_interval: Duration::from_secs(30),
            state_dir: std::env::temp_dir().join("freshet-streams"),
            cache_max_bytes: 10 * 1024 * 1024,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            deserialization_handler: DeserializationHandler::default(),
            application_server: None,
            replication_factor: -1,
            poll: Duration::from_millis(100),
            client_properties: Vec::new(),
        }
    }

    /// Sets a property by its Kafka Streams name. Unknown names are passed to the clients.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
            value.trim().parse().map_err(|_| StreamsError::config(key, value, "not a number"))
        }
        match key {
            "application.id" => {
                validate_application_id(value)?;
                self.application_id = value.to_string();
            }
            "bootstrap.servers" => self.bootstrap_servers = value.to_string(),
            "num.stream.threads" => {
                let n: usize = number(key, value)?;
                if n == 0 {
                    return Err(StreamsError::config(key, value, "must be at least 1"));
                }
                self.num_stream_threads = n;
            }
            "commit.interval.ms" => self.commit_interval = Duration::from_millis(number(key, value)?),
            "state.dir" => self.state_dir = PathBuf::from(value),
            "cache.max.bytes" | "cache.max.bytes.buffering" | "statestore.cache.max.bytes" => {
                self.cache_max_bytes = number(key, value)?;
            }
            "processing.guarantee" => {
                self.processing_guarantee = match value {
                    "at_least_once" => ProcessingGuarantee::AtLeastOnce,
                    "exactly_once_v2" | "exactly_once_beta" => ProcessingGuarantee::ExactlyOnceV2,
                    "exactly_once" => {
                        return Err(StreamsError::config(key, value, "removed in Kafka 4.0; use exactly_once_v2"));
                    }
                    _ => return Err(StreamsError::config(key, value, "expected at_least_once or exactly_once_v2")),
                };
            }
            "default.deserialization.exception.handler" | "deserialization.exception.handler" => {
                let handler: Arc<dyn DeserializationExceptionHandler> = match value {
                    "org.apache.kafka.streams.errors.LogAndContinueExceptionHandler" | "log-and-continue" => {
                        Arc::new(LogAndContinue)
                    }
                    "org.apache.kafka.streams.errors.LogAndFailExceptionHandler" | "log-and-fail" => {
                        Arc::new(LogAndFail)
                    }
                    _ => {
                        return Err(StreamsError::config(
                            key,
                            value,
                            "expected log-and-continue or log-and-fail (or Kafka's class names); \
                             set a custom handler on StreamsConfig::deserialization_handler",
                        ));
                    }
                };
                self.deserialization_handler = DeserializationHandler(handler);
            }
            "application.server" => {
                if value.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()) {
                    return Err(StreamsError::config(key, value, "expected host:port"));
                }
                self.application_server = Some(value.to_string());
            }
            "replication.factor" => self.replication_factor = number(key, value)?,
            "poll.ms" => self.poll = Duration::from_millis(number(key, value)?),
            _ => self.client_properties.push((key.to_string(), value.to_string())),
        }
        Ok(self)
    }

    /// Sets several properties.
    pub fn set_all<'a>(&mut self, props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<&mut Self> {
        for (k, v) in props {
            self.set(k, v)?;
        }
        Ok(self)
    }

    /// Checks what can only be checked as a whole.
    pub fn validate(&self) -> Result<()> {
        validate_application_id(&self.application_id)?;
        if self.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2 {
            return Err(StreamsError::config(
                "processing.guarantee",
                "exactly_once_v2",
                "needs log transactions, which Freshet does not implement yet; use at_least_once",
            ));
        }
        Ok(())
    }
}

/// Kafka's rule for names that become topic-name prefixes: letters, digits, `.`, `_`, `-`.
fn validate_application_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 200 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        return Err(StreamsError::config(
            "application.id",
            id,
            "must be 1 to 200 characters of ASCII letters, digits, '.', '_' and '-' (it prefixes topic names)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_under_kafka_names_and_bad_values_say_which() {
        let mut c = StreamsConfig::new("app", "h:1");
        c.set_all([
            ("processing.guarantee", "at_least_once"),
            ("cache.max.bytes.buffering", "0"),
            (
                "default.deserialization.exception.handler",
                "org.apache.kafka.streams.errors.LogAndContinueExceptionHandler",
            ),
            ("application.server", "localhost:7070"),
            ("session.timeout.ms", "6000"),
        ])
        .unwrap();
        assert_eq!(c.cache_max_bytes, 0);
        assert_eq!(c.client_properties, vec![("session.timeout.ms".to_string(), "6000".to_string())]);
        c.validate().unwrap();
        for (k, v, why) in [
            ("num.stream.threads", "0", "at least 1"),
            ("application.id", "my app", "ASCII letters"),
            ("processing.guarantee", "exactly_once", "exactly_once_v2"),
            ("application.server", "localhost", "host:port"),
            ("default.deserialization.exception.handler", "com.Foo", "log-and-continue"),
        ] {
            let e = c.set(k, v).unwrap_err().to_string();
            assert!(e.contains(k) && e.contains(why), "{e}");
        }
        c.set("processing.guarantee", "exactly_once_v2").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("transactions"));
    }
}
