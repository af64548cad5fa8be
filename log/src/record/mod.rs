//! Kafka's RecordBatch v2 (magic 2): the unit that producers send, the log stores and
//! consumers fetch, byte for byte.
//!
//! - [`batch`] reads and validates batch headers and the records inside them, and rewrites the
//!   few header fields the broker owns (base offset, leader epoch, LogAppendTime).
//! - [`builder`] encodes records into a batch, for clients, tests and the log cleaner.
//! - [`compression`] holds the gzip, snappy, LZ4 and zstd codecs.
//! - [`varint`] holds the zig-zag varints used inside records.

pub mod batch;
pub mod builder;
pub mod compression;
pub mod varint;

pub use batch::{
    BatchHeader, BatchRules, BatchSummary, Header, LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD, Record, RecordBatch,
    RecordIter, TimestampType,
};
pub use builder::RecordBatchBuilder;
pub use compression::Compression;

/// What is wrong with a batch's bytes. Each variant says where, so a client or an operator
/// reading a log can find the damage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("batch is truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The batch length field is impossible.
    #[error("batch length field {length} is invalid: {reason}")]
    InvalidLength {
        /// The stored length field.
        length: i64,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Not a v2 batch.
    #[error("unsupported magic byte {0}: only RecordBatch v2 (magic 2) is supported")]
    UnsupportedMagic(i8),
    /// The CRC32C stored in the header does not match the bytes.
    #[error("CRC32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over attributes..end.
        computed: u32,
    },
    /// Compression bits name no codec.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
    /// The codec rejected the payload.
    #[error("{codec} decompression failed: {reason}")]
    Decompression {
        /// Codec name.
        codec: &'static str,
        /// What the codec said.
        reason: String,
    },
    /// The payload inflates past the allowed size.
    #[error("{codec} payload inflates past the limit of {max_bytes} bytes")]
    DecompressedTooLarge {
        /// Codec name.
        codec: &'static str,
        /// The limit.
        max_bytes: usize,
    },
    /// A record's fields do not parse.
    #[error("malformed record data at byte {position} of the records section: {reason}")]
    Malformed {
        /// Byte position inside the (decompressed) records section.
        position: usize,
        /// What failed.
        reason: &'static str,
    },
    /// The header's record count disagrees with the records present.
    #[error("header declares {declared} records but {actual} were found")]
    RecordCountMismatch {
        /// Count in the header.
        declared: i32,
        /// Records parsed.
        actual: i32,
    },
    /// Records' offset deltas are out of order or not consecutive.
    #[error("record {index} has offset delta {found}, expected {expected}")]
    InvalidOffsetDelta {
        /// Record index in the batch.
        index: i32,
        /// Delta found.
        found: i32,
        /// Delta expected.
        expected: String,
    },
    /// The header's last offset delta disagrees with the records.
    #[error("header's last offset delta {header} does not match the records' last delta {records}")]
    LastOffsetDeltaMismatch {
        /// Value in the header.
        header: i32,
        /// Last delta among the records.
        records: i32,
    },
    /// A client batch with no records.
    #[error("batch holds no records")]
    EmptyBatch,
    /// Bytes remain after the declared records.
    #[error("{0} unexpected bytes after the last record")]
    TrailingBytes(usize),
    /// A compacted topic received a record without a key.
    #[error("record {index} has no key, but a compacted topic requires one")]
    MissingKey {
        /// Record index in the batch.
        index: i32,
    },
    /// The bytes could not be read from their file.
    #[error("could not read batch bytes: {0}")]
    Unreadable(String),
    /// A control batch arrived from a client.
    #[error("control batches can only be written by the broker's coordinators")]
    ControlBatchFromClient,
}
