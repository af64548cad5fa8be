//! Encodes records into a RecordBatch v2, the way Kafka's `MemoryRecordsBuilder` does.
//!
//! ```
//! use freshet_log::record::{Compression, RecordBatch, RecordBatchBuilder, BatchRules};
//!
//! let mut builder = RecordBatchBuilder::new(Compression::Lz4);
//! builder.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]);
//! let bytes = builder.build();
//! let (batch, rest) = RecordBatch::parse(&bytes).unwrap();
//! assert!(rest.is_empty());
//! assert_eq!(batch.validate(&BatchRules::default()).unwrap().records, 1);
//! ```

use super::batch::{LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD, TimestampType, attributes};
use super::varint::{put_varint, put_varlong, varint_len, varlong_len};
use super::{Compression, Header};

/// Builds one batch. Records are encoded as they are appended; compression and the
/// header are applied by [`RecordBatchBuilder::build`].
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    compression: Compression,
    timestamp_type: TimestampType,
    base_offset: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    delete_horizon_ms: Option<i64>,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    last_offset_delta: Option<i32>,
    count: i32,
    records: Vec<u8>,
}

impl RecordBatchBuilder {
    /// A builder for a non-idempotent, non-transactional CreateTime batch at offset 0.
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            timestamp_type: TimestampType::CreateTime,
            base_offset: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            delete_horizon_ms: None,
            base_timestamp: None,
            max_timestamp: -1,
            last_offset_delta: None,
            count: 0,
            records: Vec::new(),
        }
    }

    /// Sets the base offset written into the header.
    pub fn base_offset(mut self, offset: i64) -> Self {
        self.base_offset = offset;
        self
    }

    /// Sets the timestamp type.
    pub fn timestamp_type(mut self, timestamp_type: TimestampType) -> Self {
        self.timestamp_type = timestamp_type;
        self
    }

    /// Sets the partition leader epoch.
    pub fn partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Marks the batch as coming from an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Marks the batch as transactional.
    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    /// Marks the batch as a control batch.
    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    /// Sets the KIP-534 delete horizon; it becomes the base timestamp. Call before appending.
    pub fn delete_horizon_ms(mut self, horizon_ms: i64) -> Self {
        debug_assert_eq!(self.count, 0, "the delete horizon must be set before records are appended");
        self.delete_horizon_ms = Some(horizon_ms);
        self.base_timestamp = Some(horizon_ms);
        self
    }

    /// Forces the header's last offset delta, for a cleaned batch whose last records were
    /// removed but whose producer sequence range must stay intact.
    pub fn last_offset_delta(mut self, delta: i32) -> Self {
        self.last_offset_delta = Some(delta);
        self
    }

    /// Forces the header's max timestamp (the cleaner keeps the original batch's).
    pub fn max_timestamp(mut self, max_timestamp: i64) -> Self {
        self.max_timestamp = max_timestamp;
        self
    }

    /// Reserves room for `additional` more bytes of encoded records.
    pub fn reserve(&mut self, additional: usize) {
        self.records.reserve(additional);
    }

    /// Records appended so far.
    pub fn len(&self) -> i32 {
        self.count
    }

    /// Whether no records were appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed size of the batch so far, for `batch.size` decisions.
    pub fn estimated_size_bytes(&self) -> usize {
        RECORD_BATCH_OVERHEAD + self.records.len()
    }

    /// Appends a record at the next offset delta.
    pub fn append(&mut self, timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header<'_>]) {
        self.append_with_offset_delta(self.count, timestamp, key, value, headers);
    }

    /// Appends a record at an explicit offset delta (greater than the previous one).
    pub fn append_with_offset_delta(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) {
        let base_timestamp = *self.base_timestamp.get_or_insert(timestamp);
        let timestamp_delta = timestamp.wrapping_sub(base_timestamp);
        let bytes_len = |b: Option<&[u8]>| b.map_or(varint_len(-1), |b| varint_len(b.len() as i32) + b.len());
        let mut body_len = 1 + varlong_len(timestamp_delta) + varint_len(offset_delta);
        body_len += bytes_len(key) + bytes_len(value) + varint_len(headers.len() as i32);
        for h in headers {
            body_len += bytes_len(Some(h.key)) + bytes_len(h.value);
        }
        let out = &mut self.records;
        put_varint(out, body_len as i32);
        out.push(0); // attributes
        put_varlong(out, timestamp_delta);
        put_varint(out, offset_delta);
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, headers.len() as i32);
        for h in headers {
            put_nullable(out, Some(h.key));
            put_nullable(out, h.value);
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        if self.last_offset_delta.is_none_or(|d| d < offset_delta) {
            self.last_offset_delta = Some(offset_delta);
        }
    }

    /// Appends an already-encoded record (from [`super::Record::raw`]) whose deltas are
    /// relative to the same base offset and base timestamp as this builder's.
    pub fn append_raw(&mut self, raw: &[u8], offset_delta: i32, timestamp: i64) {
        self.records.extend_from_slice(raw);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        if self.last_offset_delta.is_none_or(|d| d < offset_delta) {
            self.last_offset_delta = Some(offset_delta);
        }
    }

    /// Sets the base timestamp used by [`Self::append_raw`] deltas. Call before appending.
    pub fn base_timestamp(mut self, base_timestamp: i64) -> Self {
        self.base_timestamp = Some(base_timestamp);
        self
    }

    /// Encodes the batch: compresses the records and writes the header and CRC.
    pub fn build(self) -> Vec<u8> {
        let payload = match self.compression {
            Compression::None => self.records,
            codec => codec.compress(&self.records),
        };
        let mut out = Vec::with_capacity(RECORD_BATCH_OVERHEAD + payload.len());
        let length = (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + payload.len()) as i32;
        let attrs = attributes(
            self.compression,
            self.timestamp_type,
            self.transactional,
            self.control,
            self.delete_horizon_ms.is_some(),
        );
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&[0; 4]); // CRC, filled below
        out.extend_from_slice(&attrs.to_be_bytes());
        out.extend_from_slice(&self.last_offset_delta.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&out[21..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BatchRules, RecordBatch, RecordError};
    use proptest::prelude::*;

    type OwnedRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(Vec<u8>, Option<Vec<u8>>)>);

    fn arb_record() -> impl Strategy<Value = OwnedRecord> {
        let bytes = proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64));
        let header = (
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        );
        (0i64..4_000_000_000_000, bytes.clone(), bytes, proptest::collection::vec(header, 0..3))
    }

    fn arb_codec() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Gzip),
            Just(Compression::Snappy),
            Just(Compression::Lz4),
            Just(Compression::Zstd),
        ]
    }

    proptest! {
        #[test]
        fn built_batches_decode_to_what_went_in(codec in arb_codec(), records in proptest::collection::vec(arb_record(), 1..20)) {
            let mut b = RecordBatchBuilder::new(codec);
            for (ts, k, v, hs) in &records {
                let headers: Vec<Header<'_>> = hs.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
                b.append(*ts, k.as_deref(), v.as_deref(), &headers);
            }
            let bytes = b.build();
            let (batch, rest) = RecordBatch::parse(&bytes).unwrap();
            prop_assert!(rest.is_empty());
            let summary = batch.validate(&BatchRules::default()).unwrap();
            prop_assert_eq!(summary.records, records.len() as i32);
            prop_assert_eq!(summary.max_timestamp, records.iter().map(|r| r.0).max().unwrap());
            prop_assert_eq!(batch.header().max_timestamp, summary.max_timestamp);
            let payload = batch.records_payload(1 << 30).unwrap();
            for (decoded, (ts, k, v, hs)) in crate::record::RecordIter::new(&payload, summary.records).zip(&records) {
                let decoded = decoded.unwrap();
                prop_assert_eq!(batch.record_timestamp(&decoded), *ts);
                prop_assert_eq!(decoded.key, k.as_deref());
                prop_assert_eq!(decoded.value, v.as_deref());
                let got: Vec<_> = decoded.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
                prop_assert_eq!(&got, hs);
            }
        }

        #[test]
        fn any_single_bit_flip_is_detected(flip in 0usize..10_000) {
            let mut b = RecordBatchBuilder::new(Compression::None);
            for i in 0..10u8 {
                b.append(1000 + i64::from(i), Some(&[i]), Some(&[i; 20]), &[]);
            }
            let mut bytes = b.build();
            let bit = flip % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            // Base offset and leader epoch (bytes 0..8 and 12..16) are outside the CRC by design.
            let outside_crc = bit / 8 < 8 || (12..16).contains(&(bit / 8));
            let result = RecordBatch::parse(&bytes).and_then(|(b, _)| b.validate(&BatchRules::default()));
            prop_assert_eq!(result.is_err(), !outside_crc, "bit {} result {:?}", bit, result);
        }
    }

    #[test]
    fn a_record_missing_a_key_is_refused_when_keys_are_required() {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.append(1, Some(b"k"), Some(b"v"), &[]);
        b.append(2, None, Some(b"v"), &[]);
        let bytes = b.build();
        let (batch, _) = RecordBatch::parse(&bytes).unwrap();
        let rules = BatchRules { require_keys: true, ..BatchRules::default() };
        assert_eq!(batch.validate(&rules), Err(RecordError::MissingKey { index: 1 }));
    }

    #[test]
    fn gaps_in_offset_deltas_are_refused_from_clients_but_allowed_after_cleaning() {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.append_with_offset_delta(0, 1, Some(b"a"), Some(b"1"), &[]);
        b.append_with_offset_delta(3, 1, Some(b"b"), Some(b"2"), &[]);
        let bytes = b.build();
        let (batch, _) = RecordBatch::parse(&bytes).unwrap();
        assert!(matches!(
            batch.validate(&BatchRules::default()),
            Err(RecordError::InvalidOffsetDelta { index: 1, found: 3, .. })
        ));
        let cleaned = BatchRules { consecutive_offsets: false, ..BatchRules::default() };
        assert_eq!(batch.validate(&cleaned).unwrap().records, 2);
    }

    #[test]
    fn count_mismatch_is_reported() {
        let mut b = RecordBatchBuilder::new(Compression::None);
        b.append(1, None, Some(b"v"), &[]);
        let mut bytes = b.build();
        bytes[57..61].copy_from_slice(&2i32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let (batch, _) = RecordBatch::parse(&bytes).unwrap();
        assert_eq!(
            batch.validate(&BatchRules::default()),
            Err(RecordError::RecordCountMismatch { declared: 2, actual: 1 })
        );
    }
}
