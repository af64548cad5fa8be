//! Freshet's Kafka client: it speaks the Kafka protocol, so it works against Freshet and
//! any Kafka broker. Streams, SQL, Connect and the command-line tools build on it.
//!
//! - [`Connection`]: one broker connection. Requests are pipelined: many may be in flight,
//!   and answers are matched to them in order, by correlation id. API versions are
//!   negotiated with ApiVersions when the connection opens.
//! - [`partitioner`]: Kafka's default partitioner (murmur2 of the key, sticky partitions
//!   for records without a key), byte-compatible with the Java client and librdkafka's
//!   `murmur2_random`.
//! - [`serde`]: the `Serializer` and `Deserializer` traits with Kafka's encodings.
//!
//! The producer, consumer and admin client come next (issue 4).

mod connection;
mod error;
pub mod partitioner;
pub mod serde;

pub use connection::{CLIENT_API_VERSIONS, Connection, ConnectionConfig};
pub use error::{ClientError, Result};
