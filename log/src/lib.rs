//! # freshet-log
//!
//! Freshet's partitioned commit log. This crate stores Kafka RecordBatch v2 bytes exactly
//! as producers send them, in segment files named by base offset, with Kafka's sparse
//! offset and time indexes beside them.
//!
//! - [`record`]: the batch codec (validation, CRC32C, compression, building batches).
//! - [`storage`]: segments, indexes, the partition [`storage::Log`], crash recovery,
//!   retention, compaction and the [`storage::LogManager`] that owns a data directory.
//!
//! ```
//! use freshet_log::record::{Compression, RecordBatchBuilder};
//! use freshet_log::storage::{AppendOrigin, Log, LogConfig, LogOpenOptions};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (mut log, _report) = Log::open(dir.path().join("orders-0"), LogConfig::default(), LogOpenOptions::new(0)).unwrap();
//!
//! let mut batch = RecordBatchBuilder::new(Compression::None);
//! batch.append(1_700_000_000_000, Some(b"order-17"), Some(b"paid"), &[]);
//! let mut bytes = batch.build();
//! let info = log.append_as_leader(&mut bytes, 0, AppendOrigin::Client, 1_700_000_000_500).unwrap();
//! assert_eq!(info.first_offset, 0);
//!
//! let read = log.read(0, 1 << 20, None, true).unwrap();
//! assert_eq!(read.total_bytes(), bytes.len() as u64);
//! ```

pub mod alloc;
pub mod broker;
pub mod client;
pub mod codes;
pub mod controller;
pub mod record;
pub mod replication;
pub mod server;
pub mod storage;
pub mod time;
pub mod topic_partition;

pub use topic_partition::TopicPartition;
