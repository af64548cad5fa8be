//! Helpers shared by the storage integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use freshet_log::record::{Compression, Header, RecordBatch, RecordBatchBuilder, RecordIter};
use freshet_log::storage::{Log, LogConfig, LogOpenOptions};

pub const T0: i64 = 1_700_000_000_000;

/// A decoded record as read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Builds a batch of `values` (keyed by `keys` if given) with timestamps from `ts`.
/// A key and value, either possibly null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

pub fn batch(codec: Compression, ts: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    let mut b = RecordBatchBuilder::new(codec);
    for (i, (k, v)) in records.iter().enumerate() {
        b.append(ts + i as i64, *k, *v, &[Header { key: b"h", value: Some(b"1") }]);
    }
    b.build()
}

/// A batch of `n` unkeyed records of `size` bytes each.
pub fn sized_batch(n: usize, size: usize, ts: i64) -> Vec<u8> {
    let value = vec![b'x'; size];
    let mut b = RecordBatchBuilder::new(Compression::None);
    for i in 0..n {
        b.append(ts + i as i64, None, Some(&value), &[]);
    }
    b.build()
}

/// Every record in `bytes` (a sequence of batches).
pub fn decode(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (batch, tail) = RecordBatch::parse(rest).expect("stored batches parse");
        batch.check_integrity().expect("stored batches pass their CRC");
        let payload = batch.records_payload(1 << 30).unwrap();
        for r in RecordIter::new(&payload, batch.header().records_count) {
            let r = r.unwrap();
            out.push(Rec {
                offset: batch.header().base_offset + i64::from(r.offset_delta),
                timestamp: batch.record_timestamp(&r),
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
            });
        }
        rest = tail;
    }
    out
}

/// Reads every record from the log start.
pub fn read_all(log: &Log) -> Vec<Rec> {
    let start = log.log_start_offset();
    if start == log.log_end_offset() {
        return Vec::new();
    }
    let info = log.read(start, u64::MAX / 2, None, true).unwrap();
    decode(&info.read_to_vec().unwrap())
}

pub fn open(dir: &Path, config: LogConfig) -> Log {
    Log::open(dir, config, LogOpenOptions::new(T0)).unwrap().0
}

pub fn small_segments(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, index_interval_bytes: 128, ..LogConfig::default() }
}
