//! Validation of an append request before anything is written (Kafka's `LogValidator`):
//! every batch parses, fits the size limits and passes its CRC and record checks; CreateTime
//! timestamps lie within `message.timestamp.before.max.ms` / `after.max.ms` of now; and a
//! topic with a `compression.type` of its own gets its batches recompressed to that codec.
//!
//! The checks are pure functions of the request bytes, the topic config and the time, so
//! [`super::Log`] calls them under its lock without touching the disk.

use super::config::{LogConfig, TopicCompression};
use super::error::{LogError, Result};
use crate::record::{BatchRules, Compression, RecordBatch, TimestampType};

/// A batch of an append request that passed validation.
#[derive(Debug, Clone, Copy)]
pub(super) struct ValidatedBatch {
    pub position: usize,
    pub size: usize,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub partition_leader_epoch: i32,
    pub records: i32,
    pub max_timestamp: i64,
    pub offset_delta_of_max_timestamp: i32,
    pub min_timestamp: i64,
    pub offset_delta_of_min_timestamp: i32,
    pub header_max_timestamp: i64,
    pub header_log_append_time: bool,
    pub compression: Compression,
    pub control: bool,
}

impl ValidatedBatch {
    /// The batch's header, re-read from the request (offsets may have been assigned).
    pub fn header(&self, records: &[u8]) -> crate::record::BatchHeader {
        crate::record::BatchHeader::parse(&records[self.position..self.position + self.size])
            .expect("validated batches have a full header")
    }
}

/// Parses and checks every batch of `records`. Any failure refuses the whole request.
pub(super) fn validate_request(records: &[u8], config: &LogConfig, rules: &BatchRules) -> Result<Vec<ValidatedBatch>> {
    if records.is_empty() {
        return Err(LogError::EmptyAppend);
    }
    if records.len() as u64 > config.segment_bytes {
        return Err(LogError::RecordListTooLarge { size_bytes: records.len(), segment_bytes: config.segment_bytes });
    }
    let mut out = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let batch_index = out.len();
        let invalid = |source| LogError::InvalidBatch { batch_index, position, source };
        let (batch, _) = RecordBatch::parse(&records[position..]).map_err(invalid)?;
        let size = batch.bytes().len();
        if size > config.max_message_bytes {
            return Err(LogError::MessageTooLarge {
                batch_index,
                size_bytes: size,
                max_bytes: config.max_message_bytes,
            });
        }
        let summary = batch.validate(rules).map_err(invalid)?;
        let h = batch.header();
        out.push(ValidatedBatch {
            position,
            size,
            base_offset: h.base_offset,
            last_offset_delta: h.last_offset_delta,
            partition_leader_epoch: h.partition_leader_epoch,
            records: summary.records,
            max_timestamp: summary.max_timestamp,
            offset_delta_of_max_timestamp: summary.offset_delta_of_max_timestamp,
            min_timestamp: summary.min_timestamp,
            offset_delta_of_min_timestamp: summary.offset_delta_of_min_timestamp,
            header_max_timestamp: h.max_timestamp,
            header_log_append_time: h.timestamp_type() == TimestampType::LogAppendTime,
            compression: h.compression().map_err(invalid)?,
            control: h.is_control(),
        });
        position += size;
    }
    Ok(out)
}

/// Refuses a request whose CreateTime timestamps are too far from `now_ms` (KIP-937).
/// Records without a timestamp, control batches and LogAppendTime topics are exempt.
pub(super) fn check_timestamps(validated: &[ValidatedBatch], config: &LogConfig, now_ms: i64) -> Result<()> {
    if config.message_timestamp_type != TimestampType::CreateTime {
        return Ok(());
    }
    let earliest = now_ms.saturating_sub(config.message_timestamp_before_max_ms);
    let latest = now_ms.saturating_add(config.message_timestamp_after_max_ms);
    for (batch_index, v) in validated.iter().enumerate().filter(|(_, v)| !v.control && v.records > 0) {
        let out_of_range = if v.min_timestamp < earliest {
            Some((v.min_timestamp, v.offset_delta_of_min_timestamp))
        } else if v.max_timestamp > latest {
            Some((v.max_timestamp, v.offset_delta_of_max_timestamp))
        } else {
            None
        };
        if let Some((timestamp, offset_delta)) = out_of_range {
            return Err(LogError::InvalidTimestamp { batch_index, offset_delta, timestamp, earliest, latest });
        }
    }
    Ok(())
}

/// The codec batches must be stored with, if any batch of the request has another.
fn target_codec(validated: &[ValidatedBatch], config: &LogConfig) -> Option<Compression> {
    let TopicCompression::Codec(codec) = config.compression_type else {
        return None;
    };
    validated.iter().any(|v| !v.control && v.compression != codec).then_some(codec)
}

/// Rewrites the request with every data batch in the topic's codec, when the topic names
/// one and some batch uses another; `None` when the request can be stored as it is. The
/// rewritten request is validated again (it must still fit `max.message.bytes`).
pub(super) fn recompress(
    records: &[u8],
    validated: &[ValidatedBatch],
    config: &LogConfig,
    rules: &BatchRules,
) -> Result<Option<(Vec<u8>, Vec<ValidatedBatch>)>> {
    let Some(codec) = target_codec(validated, config) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(records.len());
    for (batch_index, v) in validated.iter().enumerate() {
        let bytes = &records[v.position..v.position + v.size];
        if v.control || v.compression == codec {
            out.extend_from_slice(bytes);
            continue;
        }
        let invalid = |source| LogError::InvalidBatch { batch_index, position: v.position, source };
        let (batch, _) = RecordBatch::parse(bytes).map_err(invalid)?;
        out.extend_from_slice(&batch.recompressed(codec, rules.max_decompressed_bytes).map_err(invalid)?);
    }
    let revalidated = validate_request(&out, config, rules)?;
    Ok(Some((out, revalidated)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordBatchBuilder;

    const NOW: i64 = 1_700_000_000_000;

    fn config(props: &[(&str, &str)]) -> LogConfig {
        let map = props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LogConfig::default().with_overrides(&map).unwrap()
    }

    fn batch(codec: Compression, timestamps: &[i64]) -> Vec<u8> {
        let mut b = RecordBatchBuilder::new(codec);
        for (i, ts) in timestamps.iter().enumerate() {
            b.append(*ts, Some(format!("k{i}").as_bytes()), Some(b"a value that compresses well well well"), &[]);
        }
        b.build()
    }

    fn validate(records: &[u8], config: &LogConfig) -> Vec<ValidatedBatch> {
        validate_request(records, config, &BatchRules::default()).unwrap()
    }

    #[test]
    fn timestamps_outside_the_allowed_window_are_refused_with_the_offending_record() {
        let config = config(&[("message.timestamp.before.max.ms", "1000"), ("message.timestamp.after.max.ms", "500")]);
        let ok = batch(Compression::None, &[NOW - 1000, NOW, NOW + 500]);
        check_timestamps(&validate(&ok, &config), &config, NOW).unwrap();

        let early = batch(Compression::None, &[NOW, NOW - 1001]);
        match check_timestamps(&validate(&early, &config), &config, NOW) {
            Err(LogError::InvalidTimestamp { batch_index: 0, offset_delta: 1, timestamp, earliest, latest }) => {
                assert_eq!((timestamp, earliest, latest), (NOW - 1001, NOW - 1000, NOW + 500));
            }
            other => panic!("expected InvalidTimestamp, got {other:?}"),
        }
        let mut two = ok.clone();
        two.extend(batch(Compression::None, &[NOW + 501]));
        let err = check_timestamps(&validate(&two, &config), &config, NOW).unwrap_err();
        assert!(matches!(err, LogError::InvalidTimestamp { batch_index: 1, offset_delta: 0, .. }), "{err:?}");
        assert_eq!(err.kafka_code(), crate::codes::INVALID_TIMESTAMP);
        assert!(err.to_string().contains("message.timestamp.before.max.ms"), "{err}");
    }

    #[test]
    fn records_without_a_timestamp_and_log_append_time_topics_are_not_checked() {
        let strict = config(&[("message.timestamp.before.max.ms", "0"), ("message.timestamp.after.max.ms", "0")]);
        let none = batch(Compression::None, &[crate::record::batch::NO_TIMESTAMP, NOW]);
        check_timestamps(&validate(&none, &strict), &strict, NOW).unwrap();
        let append_time =
            config(&[("message.timestamp.before.max.ms", "0"), ("message.timestamp.type", "LogAppendTime")]);
        let old = batch(Compression::None, &[0]);
        check_timestamps(&validate(&old, &append_time), &append_time, NOW).unwrap();
    }

    #[test]
    fn a_topic_codec_recompresses_batches_sent_with_another() {
        let config = config(&[("compression.type", "zstd")]);
        let mut request = batch(Compression::Gzip, &[NOW, NOW + 1]);
        request.extend(batch(Compression::Zstd, &[NOW + 2]));
        request.extend(batch(Compression::None, &[NOW + 3]));
        let rules = BatchRules::default();
        let validated = validate(&request, &config);
        let (rewritten, revalidated) = recompress(&request, &validated, &config, &rules).unwrap().unwrap();
        assert_eq!(revalidated.len(), 3);
        for (before, after) in validated.iter().zip(&revalidated) {
            assert_eq!(after.compression, Compression::Zstd);
            assert_eq!((after.records, after.max_timestamp), (before.records, before.max_timestamp));
        }
        let payload = |records: &[u8], v: &ValidatedBatch| {
            let (b, _) = RecordBatch::parse(&records[v.position..v.position + v.size]).unwrap();
            b.records_payload(1 << 20).unwrap().into_owned()
        };
        for (before, after) in validated.iter().zip(&revalidated) {
            assert_eq!(payload(&request, before), payload(&rewritten, after));
        }
    }

    #[test]
    fn producer_compression_and_matching_codecs_are_stored_as_sent() {
        let rules = BatchRules::default();
        let request = batch(Compression::Lz4, &[NOW]);
        let producer = config(&[]);
        assert!(recompress(&request, &validate(&request, &producer), &producer, &rules).unwrap().is_none());
        let lz4 = config(&[("compression.type", "lz4")]);
        assert!(recompress(&request, &validate(&request, &lz4), &lz4, &rules).unwrap().is_none());
        let uncompressed = config(&[("compression.type", "uncompressed")]);
        let (_, v) = recompress(&request, &validate(&request, &uncompressed), &uncompressed, &rules).unwrap().unwrap();
        assert_eq!(v[0].compression, Compression::None);
    }

    #[test]
    fn a_recompressed_batch_that_no_longer_fits_is_refused() {
        // Incompressible values grow a little under gzip's framing.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        };
        let values: Vec<Vec<u8>> = (0..8).map(|_| (0..200).map(|_| noise()).collect()).collect();
        let mut b = RecordBatchBuilder::new(Compression::None);
        for v in &values {
            b.append(NOW, None, Some(v), &[]);
        }
        let request = b.build();
        let limit = request.len().to_string();
        let config = config(&[("compression.type", "gzip"), ("max.message.bytes", limit.as_str())]);
        let rules = BatchRules::default();
        let err = recompress(&request, &validate(&request, &config), &config, &rules).unwrap_err();
        assert!(matches!(err, LogError::MessageTooLarge { .. }), "{err:?}");
    }
}
