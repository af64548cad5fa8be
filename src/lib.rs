//! # freshet
//!
//! Freshet is an event-streaming platform in Rust. This facade crate re-exports the
//! workspace's crates and holds the `freshet` command-line binary.
//!
//! - [`log`]: the partitioned commit log's storage engine (`freshet-log`).
//! - [`streams`]: the Streams library: DSL, Processor API, state stores (`freshet-streams`).
//!
//! ```
//! use freshet::log::record::{Compression, RecordBatchBuilder};
//! use freshet::log::storage::{AppendOrigin, Log, LogConfig, LogOpenOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (mut log, _) = Log::open(dir.path().join("events-0"), LogConfig::default(), LogOpenOptions::new(0)).unwrap();
//! let mut batch = RecordBatchBuilder::new(Compression::Zstd);
//! batch.append(0, Some(b"k"), Some(b"v"), &[]);
//! log.append_as_leader(&mut batch.build(), 0, AppendOrigin::Client, 0).unwrap();
//! assert_eq!(log.log_end_offset(), 1);
//! ```

pub use freshet_log as log;
pub use freshet_log::broker::{Broker, BrokerConfig};
pub use freshet_log::client;
pub use freshet_log::server::RunningBroker;
pub use freshet_streams as streams;
