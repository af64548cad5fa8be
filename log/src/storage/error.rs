//! Errors of the storage layer, each carrying the Kafka error code a broker answers with.

use std::path::PathBuf;

use crate::record::RecordError;

pub use crate::codes;

/// A storage failure or a rejected request.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A batch in an append request is invalid; nothing from the request was written.
    #[error("batch {batch_index} (byte {position} of the request) is invalid: {source}")]
    InvalidBatch {
        /// Index of the bad batch in the request.
        batch_index: usize,
        /// Byte position of the bad batch in the request.
        position: usize,
        /// What is wrong with it.
        source: RecordError,
    },
    /// A batch exceeds `max.message.bytes`.
    #[error("batch {batch_index} is {size_bytes} bytes, larger than max.message.bytes={max_bytes}")]
    MessageTooLarge {
        /// Index of the batch in the request.
        batch_index: usize,
        /// Its size.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The request is larger than a whole segment.
    #[error("append of {size_bytes} bytes is larger than segment.bytes={segment_bytes}")]
    RecordListTooLarge {
        /// The request size.
        size_bytes: usize,
        /// The limit.
        segment_bytes: u64,
    },
    /// A CreateTime timestamp outside what `message.timestamp.before.max.ms` and
    /// `message.timestamp.after.max.ms` allow (KIP-937).
    #[error(
        "timestamp {timestamp} of the record at offset delta {offset_delta} of batch {batch_index} is out of range: \
         it must lie within [{earliest}, {latest}] (message.timestamp.before.max.ms and message.timestamp.after.max.ms)"
    )]
    InvalidTimestamp {
        /// Index of the batch in the request.
        batch_index: usize,
        /// The record's offset delta in its batch.
        offset_delta: i32,
        /// Its timestamp.
        timestamp: i64,
        /// The earliest allowed.
        earliest: i64,
        /// The latest allowed.
        latest: i64,
    },
    /// An append request with no batches.
    #[error("append request holds no record batches")]
    EmptyAppend,
    /// A follower append would move offsets backwards.
    #[error("batch at offset {offset} is not after the log end offset {log_end_offset}")]
    NonMonotonicOffset {
        /// First offset of the offending batch.
        offset: i64,
        /// The log end offset.
        log_end_offset: i64,
    },
    /// Requested offset is outside `[log start, log end]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// The log start offset.
        log_start_offset: i64,
        /// The log end offset.
        log_end_offset: i64,
    },
    /// A config value is invalid.
    #[error("invalid value {value:?} for config {key}: {reason}")]
    InvalidConfig {
        /// Kafka property name.
        key: String,
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The data directory is in use by another process.
    #[error("data directory {path} is locked by another process")]
    DirectoryLocked {
        /// The directory.
        path: PathBuf,
    },
    /// A file on disk is damaged in a way that cannot be recovered automatically.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data directory that belongs to another node or cluster, or cannot be formatted.
    #[error("data directory {path}: {reason}")]
    DataDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error, with the file or directory it concerns.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An idempotent producer's batch is out of sequence or from a stale epoch.
    #[error("{0}")]
    Sequence(#[from] super::producer_state::SequenceError),
    /// The log was closed or deleted.
    #[error("log {0} is closed")]
    Closed(String),
    /// The controller quorum refused or failed a metadata change the broker needed.
    #[error("controller: {message}")]
    Controller {
        /// The Kafka error code.
        code: i16,
        /// What happened.
        message: String,
    },
}

impl LogError {
    /// The Kafka error code a broker should answer with.
    pub fn kafka_code(&self) -> i16 {
        use codes::*;
        match self {
            Self::InvalidBatch { source, .. } => match source {
                // Kafka: produce v3+ may only carry magic 2; anything else is INVALID_RECORD.
                RecordError::UnsupportedMagic(_)
                | RecordError::MissingKey { .. }
                | RecordError::InvalidOffsetDelta { .. }
                | RecordError::LastOffsetDeltaMismatch { .. }
                | RecordError::EmptyBatch
                | RecordError::ControlBatchFromClient => INVALID_RECORD,
                _ => CORRUPT_MESSAGE,
            },
            Self::MessageTooLarge { .. } => MESSAGE_TOO_LARGE,
            Self::RecordListTooLarge { .. } => RECORD_LIST_TOO_LARGE,
            Self::InvalidTimestamp { .. } => INVALID_TIMESTAMP,
            Self::EmptyAppend => CORRUPT_MESSAGE,
            Self::NonMonotonicOffset { .. } => UNKNOWN_SERVER_ERROR,
            Self::Sequence(e) => match e {
                super::producer_state::SequenceError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
                super::producer_state::SequenceError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
                super::producer_state::SequenceError::UnknownProducerId { .. } => UNKNOWN_PRODUCER_ID,
            },
            Self::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
            Self::InvalidConfig { .. } => INVALID_CONFIG,
            Self::Controller { code, .. } => *code,
            Self::DirectoryLocked { .. }
            | Self::Corrupt { .. }
            | Self::DataDirectory { .. }
            | Self::Io { .. }
            | Self::Closed(_) => KAFKA_STORAGE_ERROR,
        }
    }
}

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, LogError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, LogError> {
        self.map_err(|source| LogError::Io { path: path.into(), source })
    }
}

/// The storage layer's result type.
pub type Result<T, E = LogError> = std::result::Result<T, E>;
