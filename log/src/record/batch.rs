//! Reading, validating and patching RecordBatch v2 bytes.
//!
//! Layout (big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! 0  baseOffset i64      | 8  batchLength i32  | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 (CRC32C of bytes 21..end)         | 21 attributes i16
//! 23 lastOffsetDelta i32 | 27 baseTimestamp i64 | 35 maxTimestamp i64
//! 43 producerId i64      | 51 producerEpoch i16 | 53 baseSequence i32 | 57 recordCount i32
//! 61 records...
//! ```
//!
//! The CRC does not cover the base offset or the leader epoch, so the broker can assign
//! both without recomputing it.

use super::varint::Reader;
use super::{Compression, RecordError};

/// Bytes before the batch length field's coverage starts: base offset and length.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the full v2 batch header.
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// The only magic value Freshet stores.
pub const MAGIC_V2: i8 = 2;
/// The timestamp of a record that has none (Kafka's `RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

const LENGTH_OFFSET: usize = 8;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORDS_COUNT_OFFSET: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const COMPRESSION_MASK: i16 = 0x07;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const DELETE_HORIZON_BIT: i16 = 0x40;

/// Timestamp meaning, from attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer.
    #[default]
    CreateTime,
    /// Set by the broker when it appends.
    LogAppendTime,
}

impl TimestampType {
    /// Kafka's `message.timestamp.type` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateTime => "CreateTime",
            Self::LogAppendTime => "LogAppendTime",
        }
    }
}

pub(crate) fn read_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
pub(crate) fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub(crate) fn read_i64(b: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(raw)
}

/// The fixed 61-byte header of a batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field (total size minus [`LOG_OVERHEAD`]).
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; 2 for everything Freshet stores.
    pub magic: i8,
    /// CRC32C of bytes 21..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional, control and delete-horizon bits.
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record, or the delete horizon when that bit is set.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Decodes the header at the start of `bytes`, checking only that 61 bytes are present.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() < RECORD_BATCH_OVERHEAD {
            return Err(RecordError::Truncated { needed: RECORD_BATCH_OVERHEAD, available: bytes.len() });
        }
        Ok(Self {
            base_offset: read_i64(bytes, 0),
            batch_length: read_i32(bytes, LENGTH_OFFSET),
            partition_leader_epoch: read_i32(bytes, PARTITION_LEADER_EPOCH_OFFSET),
            magic: bytes[MAGIC_OFFSET] as i8,
            crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
            attributes: read_i16(bytes, ATTRIBUTES_OFFSET),
            last_offset_delta: read_i32(bytes, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP_OFFSET),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_OFFSET),
            producer_id: read_i64(bytes, PRODUCER_ID_OFFSET),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH_OFFSET),
            base_sequence: read_i32(bytes, BASE_SEQUENCE_OFFSET),
            records_count: read_i32(bytes, RECORDS_COUNT_OFFSET),
        })
    }

    /// Size of the whole batch on disk.
    pub fn size_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The compression codec.
    pub fn compression(&self) -> Result<Compression, RecordError> {
        Compression::from_attributes(self.attributes)
    }

    /// The timestamp type.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 { TimestampType::LogAppendTime } else { TimestampType::CreateTime }
    }

    /// Part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// A control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The delete horizon (KIP-534): after this time the cleaner may drop the batch's
    /// tombstones. Stored in the base timestamp field.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }

    /// Whether the batch came from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Sets or clears attribute bits when building or patching a batch.
pub(crate) fn attributes(
    compression: Compression,
    timestamp_type: TimestampType,
    transactional: bool,
    control: bool,
    delete_horizon: bool,
) -> i16 {
    let mut a = i16::from(compression.id());
    if timestamp_type == TimestampType::LogAppendTime {
        a |= TIMESTAMP_TYPE_BIT;
    }
    if transactional {
        a |= TRANSACTIONAL_BIT;
    }
    if control {
        a |= CONTROL_BIT;
    }
    if delete_horizon {
        a |= DELETE_HORIZON_BIT;
    }
    a
}

/// Splits the first batch off `bytes`, checking only its framing (header present,
/// length plausible and complete). Use [`RecordBatch::validate`] for the contents.
pub fn split_batch(bytes: &[u8]) -> Result<(&[u8], &[u8]), RecordError> {
    if bytes.len() < LOG_OVERHEAD {
        return Err(RecordError::Truncated { needed: LOG_OVERHEAD, available: bytes.len() });
    }
    let length = read_i32(bytes, LENGTH_OFFSET);
    let min = (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32;
    if length < min {
        return Err(RecordError::InvalidLength { length: i64::from(length), reason: "shorter than a v2 batch header" });
    }
    let size = length as usize + LOG_OVERHEAD;
    if bytes.len() < size {
        return Err(RecordError::Truncated { needed: size, available: bytes.len() });
    }
    Ok(bytes.split_at(size))
}

/// The rules a batch is checked against. The defaults suit a client's produce request.
#[derive(Debug, Clone, Copy)]
pub struct BatchRules {
    /// Offset deltas must be exactly 0, 1, 2, ... with no gaps (true for fresh client
    /// batches; false for batches that the log cleaner has thinned).
    pub consecutive_offsets: bool,
    /// Every record must have a key (compacted topics).
    pub require_keys: bool,
    /// Refuse control batches (a client may not write transaction markers).
    pub reject_control: bool,
    /// Upper bound on the decompressed records section.
    pub max_decompressed_bytes: usize,
}

impl Default for BatchRules {
    fn default() -> Self {
        Self { consecutive_offsets: true, require_keys: false, reject_control: true, max_decompressed_bytes: 64 << 20 }
    }
}

/// Facts learned while validating a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    /// Records actually present.
    pub records: i32,
    /// Largest record timestamp (CreateTime), or -1 for an empty batch.
    pub max_timestamp: i64,
    /// Offset delta of the first record carrying `max_timestamp`.
    pub offset_delta_of_max_timestamp: i32,
    /// Smallest record timestamp (CreateTime) other than [`NO_TIMESTAMP`], or `i64::MAX`
    /// when there is none.
    pub min_timestamp: i64,
    /// Offset delta of the first record carrying `min_timestamp`.
    pub offset_delta_of_min_timestamp: i32,
}

/// A view of one complete batch.
#[derive(Debug, Clone, Copy)]
pub struct RecordBatch<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl<'a> RecordBatch<'a> {
    /// Views the first batch in `bytes` and returns the rest.
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, &'a [u8]), RecordError> {
        let (batch, rest) = split_batch(bytes)?;
        let header = BatchHeader::parse(batch)?;
        Ok((Self { bytes: batch, header }, rest))
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The raw batch bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Computes the CRC32C over attributes..end.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(&self.bytes[ATTRIBUTES_OFFSET..])
    }

    /// Checks magic and CRC: the cheap checks every stored batch passes.
    pub fn check_integrity(&self) -> Result<(), RecordError> {
        if self.header.magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic(self.header.magic));
        }
        let computed = self.compute_crc();
        if computed != self.header.crc {
            return Err(RecordError::CrcMismatch { stored: self.header.crc, computed });
        }
        Ok(())
    }

    /// The records section, decompressed if needed.
    pub fn records_payload(&self, max_decompressed_bytes: usize) -> Result<std::borrow::Cow<'a, [u8]>, RecordError> {
        let raw = &self.bytes[RECORD_BATCH_OVERHEAD..];
        match self.header.compression()? {
            Compression::None => Ok(std::borrow::Cow::Borrowed(raw)),
            codec => codec.decompress(raw, max_decompressed_bytes).map(std::borrow::Cow::Owned),
        }
    }

    /// This batch re-encoded with `codec`: the same header (offsets, timestamps, producer
    /// fields, transactional and control bits) over the same records, compressed anew,
    /// with its length and CRC updated. What a broker does for a topic whose
    /// `compression.type` differs from the producer's codec.
    pub fn recompressed(&self, codec: Compression, max_decompressed_bytes: usize) -> Result<Vec<u8>, RecordError> {
        let records = self.records_payload(max_decompressed_bytes)?;
        let body = codec.compress(&records);
        let mut out = Vec::with_capacity(RECORD_BATCH_OVERHEAD + body.len());
        out.extend_from_slice(&self.bytes[..RECORD_BATCH_OVERHEAD]);
        out.extend_from_slice(&body);
        let length = i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| RecordError::InvalidLength {
            length: (out.len() - LOG_OVERHEAD) as i64,
            reason: "the recompressed batch would not fit a 32-bit length",
        })?;
        out[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&length.to_be_bytes());
        let attrs = (read_i16(&out, ATTRIBUTES_OFFSET) & !COMPRESSION_MASK) | i16::from(codec.id());
        out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
        let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    /// Full validation: integrity, then every record's structure, the record count, the
    /// offset deltas and the rules' extra constraints.
    pub fn validate(&self, rules: &BatchRules) -> Result<BatchSummary, RecordError> {
        self.check_integrity()?;
        let h = &self.header;
        if h.is_control() && rules.reject_control {
            return Err(RecordError::ControlBatchFromClient);
        }
        if h.records_count < 0 {
            return Err(RecordError::RecordCountMismatch { declared: h.records_count, actual: 0 });
        }
        if h.last_offset_delta < 0 {
            return Err(RecordError::LastOffsetDeltaMismatch { header: h.last_offset_delta, records: -1 });
        }
        let payload = self.records_payload(rules.max_decompressed_bytes)?;
        let mut summary = BatchSummary {
            records: 0,
            max_timestamp: -1,
            offset_delta_of_max_timestamp: 0,
            min_timestamp: i64::MAX,
            offset_delta_of_min_timestamp: 0,
        };
        let mut last_delta = -1i32;
        for record in RecordIter::new(&payload, h.records_count) {
            let record = record?;
            let index = summary.records;
            let valid_delta =
                if rules.consecutive_offsets { record.offset_delta == index } else { record.offset_delta > last_delta };
            if !valid_delta {
                return Err(RecordError::InvalidOffsetDelta {
                    index,
                    found: record.offset_delta,
                    expected: if rules.consecutive_offsets {
                        index.to_string()
                    } else {
                        format!("more than {last_delta}")
                    },
                });
            }
            if rules.require_keys && record.key.is_none() {
                return Err(RecordError::MissingKey { index });
            }
            let ts = self.record_timestamp(&record);
            if ts > summary.max_timestamp {
                summary.max_timestamp = ts;
                summary.offset_delta_of_max_timestamp = record.offset_delta;
            }
            if ts != NO_TIMESTAMP && ts < summary.min_timestamp {
                summary.min_timestamp = ts;
                summary.offset_delta_of_min_timestamp = record.offset_delta;
            }
            last_delta = record.offset_delta;
            summary.records += 1;
        }
        if rules.consecutive_offsets && summary.records == 0 {
            return Err(RecordError::EmptyBatch);
        }
        if summary.records > 0 && last_delta > h.last_offset_delta {
            return Err(RecordError::LastOffsetDeltaMismatch { header: h.last_offset_delta, records: last_delta });
        }
        if rules.consecutive_offsets && summary.records > 0 && last_delta != h.last_offset_delta {
            return Err(RecordError::LastOffsetDeltaMismatch { header: h.last_offset_delta, records: last_delta });
        }
        Ok(summary)
    }

    /// A record's absolute timestamp. The delete horizon, when set, replaces the base
    /// timestamp as the base the deltas are relative to (KIP-534).
    pub fn record_timestamp(&self, record: &Record<'_>) -> i64 {
        self.header.base_timestamp.wrapping_add(record.timestamp_delta)
    }
}

/// One record inside a batch, borrowing from the (decompressed) records section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Record attributes (unused by Kafka today).
    pub attributes: i8,
    /// Timestamp minus the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// Key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Value, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// The encoded header list (count already consumed); walk it with [`Record::headers`].
    headers_raw: &'a [u8],
    headers_count: i32,
    /// The whole encoded record, including its length prefix.
    pub raw: &'a [u8],
}

/// One record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header key (UTF-8 by convention).
    pub key: &'a [u8],
    /// Header value, possibly null.
    pub value: Option<&'a [u8]>,
}

impl<'a> Record<'a> {
    /// The record's headers, already validated when the record was parsed.
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let mut reader = Reader::new(self.headers_raw);
        (0..self.headers_count).map_while(move |_| {
            let key = reader.nullable_bytes().ok()??;
            let value = reader.nullable_bytes().ok()?;
            Some(Header { key, value })
        })
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.headers_count as usize
    }
}

/// Iterates the records of a records section, validating each record's framing.
#[derive(Debug)]
pub struct RecordIter<'a> {
    payload: &'a [u8],
    reader: Reader<'a>,
    remaining: i32,
    declared: i32,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates `count` records from `payload`; it is an error for bytes to be left over.
    pub fn new(payload: &'a [u8], count: i32) -> Self {
        Self { payload, reader: Reader::new(payload), remaining: count, declared: count, failed: false }
    }

    fn next_record(&mut self) -> Result<Record<'a>, RecordError> {
        let start = self.reader.position();
        let length = self.reader.varint()?;
        if length < 0 {
            return Err(RecordError::Malformed { position: start, reason: "negative record length" });
        }
        let body_start = self.reader.position();
        let mut body = Reader::new(self.reader.bytes(length as usize)?);
        let raw_end = self.reader.position();
        let at = |r: &Reader<'_>| body_start + r.position();
        let attributes = body.i8()?;
        let timestamp_delta = body.varlong()?;
        let offset_delta = body.varint()?;
        let key = body.nullable_bytes()?;
        let value = body.nullable_bytes()?;
        let headers_count = body.varint()?;
        if headers_count < 0 {
            return Err(RecordError::Malformed { position: at(&body), reason: "negative header count" });
        }
        let headers_start = body.position();
        for _ in 0..headers_count {
            if body.nullable_bytes()?.is_none() {
                return Err(RecordError::Malformed { position: at(&body), reason: "null header key" });
            }
            body.nullable_bytes()?;
        }
        if body.remaining() != 0 {
            return Err(RecordError::Malformed {
                position: at(&body),
                reason: "record length does not match its fields",
            });
        }
        let body_bytes = &self.payload[body_start..raw_end];
        Ok(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers_raw: &body_bytes[headers_start..],
            headers_count,
            raw: &self.payload[start..raw_end],
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.reader.remaining() != 0 {
                self.failed = true;
                return Some(Err(RecordError::TrailingBytes(self.reader.remaining())));
            }
            return None;
        }
        if self.reader.remaining() == 0 {
            self.failed = true;
            return Some(Err(RecordError::RecordCountMismatch {
                declared: self.declared,
                actual: self.declared - self.remaining,
            }));
        }
        self.remaining -= 1;
        let result = self.next_record();
        self.failed = result.is_err();
        Some(result)
    }
}

/// Patches the broker-owned fields of a batch in place.
#[derive(Debug)]
pub struct BatchMut<'a> {
    bytes: &'a mut [u8],
}

impl<'a> BatchMut<'a> {
    /// Wraps one complete batch. The caller has validated it.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        debug_assert!(bytes.len() >= RECORD_BATCH_OVERHEAD);
        Self { bytes }
    }

    /// Sets the base offset. Not covered by the CRC.
    pub fn set_base_offset(&mut self, offset: i64) {
        self.bytes[..8].copy_from_slice(&offset.to_be_bytes());
    }

    /// Sets the partition leader epoch. Not covered by the CRC.
    pub fn set_partition_leader_epoch(&mut self, epoch: i32) {
        self.bytes[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
            .copy_from_slice(&epoch.to_be_bytes());
    }

    /// Sets the producer id, epoch and base sequence, then recomputes the CRC they are part
    /// of. A producer re-sequences a batch it resends after a failed one before it.
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        self.bytes[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8].copy_from_slice(&producer_id.to_be_bytes());
        self.bytes[PRODUCER_EPOCH_OFFSET..PRODUCER_EPOCH_OFFSET + 2].copy_from_slice(&producer_epoch.to_be_bytes());
        self.bytes[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = crc32c::crc32c(&self.bytes[ATTRIBUTES_OFFSET..]);
        self.bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// Sets the timestamp type and max timestamp, then recomputes the CRC they are part of.
    pub fn set_max_timestamp(&mut self, timestamp_type: TimestampType, max_timestamp: i64) {
        let mut attrs = read_i16(self.bytes, ATTRIBUTES_OFFSET);
        match timestamp_type {
            TimestampType::LogAppendTime => attrs |= TIMESTAMP_TYPE_BIT,
            TimestampType::CreateTime => attrs &= !TIMESTAMP_TYPE_BIT,
        }
        self.bytes[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
        self.bytes[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&max_timestamp.to_be_bytes());
        let crc = crc32c::crc32c(&self.bytes[ATTRIBUTES_OFFSET..]);
        self.bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
}
