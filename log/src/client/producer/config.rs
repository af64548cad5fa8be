//! Producer settings, under Kafka's names and with Kafka's defaults and rules.

use std::time::Duration;

use crate::client::config::{ClientConfig, parse_bool, parse_in, parse_ms};
use crate::client::error::{ClientError, Result};
use crate::record::Compression;

/// `acks`: how many replicas must have a batch before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: the broker does not answer; offsets are unknown (-1).
    None,
    /// `acks=1`: the leader has written it.
    Leader,
    /// `acks=all` (or -1): every in-sync replica has it.
    All,
}

impl Acks {
    /// The wire value.
    pub fn code(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Everything a [`super::Producer`] can be told.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The settings every client shares.
    pub client: ClientConfig,
    /// `acks` (default all).
    pub acks: Acks,
    /// `batch.size`: bytes per partition batch (default 16384).
    pub batch_size: usize,
    /// `linger.ms`: how long a batch waits for more records (default 5 ms, as Kafka 4).
    pub linger: Duration,
    /// `buffer.memory`: bytes of records waiting to be sent (default 32 MiB).
    pub buffer_memory: usize,
    /// `max.block.ms`: how long `send` waits for metadata and buffer space (default 60 s).
    pub max_block: Duration,
    /// `compression.type` (default none).
    pub compression: Compression,
    /// `retries` (default i32::MAX: bounded by `delivery.timeout.ms`).
    pub retries: u32,
    /// `delivery.timeout.ms`: the limit from `send` to success or failure (default 120 s).
    pub delivery_timeout: Duration,
    /// `enable.idempotence`: `None` is Kafka's default (on unless `acks`, `retries` or
    /// `max.in.flight.requests.per.connection` rule it out).
    pub enable_idempotence: Option<bool>,
    /// `max.in.flight.requests.per.connection` (default 5).
    pub max_in_flight: usize,
    /// `max.request.size`: the largest request, and so the largest record (default 1 MiB).
    pub max_request_size: usize,
}

impl ProducerConfig {
    /// Kafka's defaults, for the cluster at `bootstrap`.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            acks: Acks::All,
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            buffer_memory: 32 * 1024 * 1024,
            max_block: Duration::from_secs(60),
            compression: Compression::None,
            retries: i32::MAX as u32,
            delivery_timeout: Duration::from_secs(120),
            enable_idempotence: None,
            max_in_flight: 5,
            max_request_size: 1024 * 1024,
        }
    }

    /// Applies one property by its Kafka name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        if self.client.set(key, value)? {
            return Ok(self);
        }
        match key {
            "acks" => {
                self.acks = match value.trim() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(ClientError::config(key, value, "expected 0, 1, all or -1")),
                }
            }
            "batch.size" => self.batch_size = parse_in(key, value, 0, i32::MAX as usize)?,
            "linger.ms" => self.linger = parse_ms(key, value)?,
            "buffer.memory" => self.buffer_memory = parse_in(key, value, 1, 1 << 40)?,
            "max.block.ms" => self.max_block = parse_ms(key, value)?,
            "compression.type" => {
                self.compression = Compression::from_name(value.trim())
                    .ok_or_else(|| ClientError::config(key, value, "expected none, gzip, snappy, lz4 or zstd"))?
            }
            "retries" => self.retries = parse_in(key, value, 0, i32::MAX as u32)?,
            "delivery.timeout.ms" => self.delivery_timeout = parse_ms(key, value)?,
            "enable.idempotence" => self.enable_idempotence = Some(parse_bool(key, value)?),
            "max.in.flight.requests.per.connection" => self.max_in_flight = parse_in(key, value, 1, 1000)?,
            "max.request.size" => self.max_request_size = parse_in(key, value, 1, i32::MAX as usize)?,
            // Accepted for compatibility; this client has one way to do these.
            "key.serializer" | "value.serializer" | "partitioner.class" => {}
            _ => return Err(ClientError::config(key, value, "unknown producer property")),
        }
        Ok(self)
    }

    /// Applies `key=value` properties in order.
    pub fn set_all<'a>(&mut self, props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<&mut Self> {
        for (key, value) in props {
            self.set(key, value)?;
        }
        Ok(self)
    }

    /// Checks the settings together and says whether the producer is idempotent, by
    /// Kafka's rules: idempotence needs `acks=all`, `retries` > 0 and at most 5 requests
    /// in flight; asked for explicitly with those unmet it is an error, left at its
    /// default it is quietly off.
    pub fn validate(&self) -> Result<bool> {
        let minimum = self.linger + self.client.request_timeout;
        if self.delivery_timeout < minimum {
            return Err(ClientError::config(
                "delivery.timeout.ms",
                self.delivery_timeout.as_millis().to_string(),
                format!("must be at least linger.ms + request.timeout.ms ({} ms)", minimum.as_millis()),
            ));
        }
        let conflict = if self.acks != Acks::All {
            Some(("acks", format!("{}", self.acks.code())))
        } else if self.retries == 0 {
            Some(("retries", "0".to_string()))
        } else if self.max_in_flight > 5 {
            Some(("max.in.flight.requests.per.connection", self.max_in_flight.to_string()))
        } else {
            None
        };
        match (self.enable_idempotence, conflict) {
            (Some(true), Some((key, value))) => Err(ClientError::config(
                key,
                value,
                "enable.idempotence=true needs acks=all, retries > 0 and max.in.flight.requests.per.connection <= 5",
            )),
            (Some(false), _) | (None, Some(_)) => Ok(false),
            (_, None) => Ok(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotence_follows_kafkas_rules() {
        let mut config = ProducerConfig::new("localhost:9092");
        assert!(config.validate().unwrap(), "on by default");
        config.set("acks", "1").unwrap();
        assert!(!config.validate().unwrap(), "quietly off when acks=1 and not asked for");
        config.set("enable.idempotence", "true").unwrap();
        let e = config.validate().unwrap_err();
        assert!(e.to_string().contains("acks=\"1\""), "{e}");
        config.set("acks", "all").unwrap().set("max.in.flight.requests.per.connection", "6").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn bad_values_name_the_property() {
        let mut config = ProducerConfig::new("localhost:9092");
        for (key, value) in [
            ("acks", "2"),
            ("compression.type", "brotli"),
            ("batch.size", "-1"),
            ("linger.ms", "1.5"),
            ("no.such.thing", "1"),
        ] {
            let e = config.set(key, value).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        config.set("delivery.timeout.ms", "1000").unwrap();
        let e = config.validate().unwrap_err();
        assert!(e.to_string().contains("linger.ms + request.timeout.ms"), "{e}");
        config.set_all([("compression.type", "zstd"), ("linger.ms", "0")]).unwrap();
        assert_eq!(config.compression, Compression::Zstd);
    }
}
