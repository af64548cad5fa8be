//! Settings shared by the producer, consumer and admin client, under Kafka's names.

use std::time::Duration;

use super::connection::ConnectionConfig;
use super::error::{ClientError, Result};

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` entries tried in order to find the cluster.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`.
    pub client_id: String,
    /// `socket.connection.setup.timeout.ms`: connecting and negotiating versions.
    pub connect_timeout: Duration,
    /// `request.timeout.ms`: how long one request may wait for its answer.
    pub request_timeout: Duration,
    /// `metadata.max.age.ms`: metadata older than this is refreshed.
    pub metadata_max_age: Duration,
    /// `retry.backoff.ms`: the pause before a retry.
    pub retry_backoff: Duration,
    /// `allow.auto.create.topics`: whether asking for a topic's metadata may create it.
    pub allow_auto_create_topics: bool,
}

impl ClientConfig {
    /// Defaults (Kafka's) for a cluster reached through `bootstrap` (comma-separated).
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap_servers: split_servers(bootstrap),
            client_id: "freshet".to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
            allow_auto_create_topics: true,
        }
    }

    /// Applies one `key=value` property if it is one of the shared settings; returns
    /// whether it was.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "bootstrap.servers" => {
                self.bootstrap_servers = split_servers(value);
                if self.bootstrap_servers.is_empty() {
                    return Err(ClientError::config(key, value, "no servers given"));
                }
            }
            "client.id" => self.client_id = value.to_string(),
            "socket.connection.setup.timeout.ms" => self.connect_timeout = parse_ms(key, value)?,
            "request.timeout.ms" => self.request_timeout = parse_ms(key, value)?,
            "metadata.max.age.ms" => self.metadata_max_age = parse_ms(key, value)?,
            "retry.backoff.ms" => self.retry_backoff = parse_ms(key, value)?,
            "allow.auto.create.topics" => self.allow_auto_create_topics = parse_bool(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(crate) fn connection(&self) -> ConnectionConfig {
        ConnectionConfig {
            client_id: self.client_id.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            local_address: None,
        }
    }
}

fn split_servers(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A duration in milliseconds.
pub(crate) fn parse_ms(key: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ClientError::config(key, value, "expected a whole number of milliseconds"))
}

/// `true` or `false`.
pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ClientError::config(key, value, "expected true or false")),
    }
}

/// A number in `min..=max`.
pub(crate) fn parse_in<T>(key: &str, value: &str, min: T, max: T) -> Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match value.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(ClientError::config(key, value, format!("expected a number from {min} to {max}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_settings_parse_and_refuse_bad_values_by_name() {
        let mut config = ClientConfig::new("a:1, b:2,");
        assert_eq!(config.bootstrap_servers, ["a:1", "b:2"]);
        assert!(config.set("request.timeout.ms", "1500").unwrap());
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert!(!config.set("acks", "all").unwrap());
        let e = config.set("retry.backoff.ms", "soon").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid client config retry.backoff.ms=\"soon\": expected a whole number of milliseconds"
        );
        assert!(config.set("bootstrap.servers", " , ").is_err());
        assert!(config.set("allow.auto.create.topics", "yes").is_err());
        assert_eq!(parse_in("batch.size", "7", 0usize, 10).unwrap(), 7);
        assert!(parse_in("batch.size", "11", 0usize, 10).is_err());
    }
}
