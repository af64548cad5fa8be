//! Kafka's two sparse per-segment indexes.
//!
//! - [`OffsetIndex`] (`.index`): relative offset → file position, one entry every
//!   `index.interval.bytes` of log.
//! - [`TimeIndex`] (`.timeindex`): largest timestamp so far → relative offset.
//!
//! Both keep their entries in memory (8 or 12 bytes each, at most `segment.index.bytes`),
//! append in O(1) and search by binary search in O(log n). They are written to disk on
//! flush and roll; after an unclean shutdown the log rebuilds them from the segment, so
//! the index files never need to be more current than the recovery point.

mod file;
mod offset_index;
mod time_index;

pub use offset_index::{OffsetIndex, OffsetPosition};
pub use time_index::{TimeIndex, TimestampOffset};
