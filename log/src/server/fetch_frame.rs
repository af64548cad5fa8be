//! Fetch responses whose records stay in the segment files.
//!
//! A fetch answer is mostly record bytes that already sit, in wire format, in segment
//! files. Encoding it the ordinary way would copy them twice (file into a buffer, buffer
//! into the encoded frame) into freshly allocated memory. Instead the frame is cut into
//! [`Chunk`]s: the encoded fields around each partition's records as bytes, and the
//! records themselves as [`FileRange`]s that the connection sends with `sendfile(2)`.
//!
//! Everything but the records is still encoded by `kafka-protocol`: each partition is
//! encoded with null records, and the trailing null marker (and empty tagged-field
//! section) is replaced by the real length, the ranges, and the section again. The
//! surrounding arrays and strings are written here. A response using fields this does
//! not cover (tagged fields) falls back to the ordinary path; a test checks both give
//! the same bytes for every supported version.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

use super::Close;
use crate::broker::handlers::FetchReply;
use crate::storage::FileRange;

/// The first Fetch version with flexible (compact, tagged) encoding.
const FIRST_FLEXIBLE: i16 = 12;

/// Part of a response frame.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Encoded bytes.
    Bytes(Bytes),
    /// Record batches to send straight from a segment file.
    File(FileRange),
}

impl Chunk {
    fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) => b.len() as u64,
            Chunk::File(r) => r.length,
        }
    }
}

/// Encodes the whole frame (size prefix included) as chunks, or `None` if the response
/// uses a field this encoder does not cover; then use [`FetchReply::into_response`].
pub(crate) fn encode(version: i16, correlation_id: i32, reply: &FetchReply) -> Result<Option<Vec<Chunk>>, Close> {
    let response = &reply.response;
    let flexible = version >= FIRST_FLEXIBLE;
    if !response.unknown_tagged_fields.is_empty() || !response.node_endpoints.is_empty() {
        return Ok(None);
    }
    let mut chunks = Vec::new();
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0); // the frame size, filled in at the end
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, ApiKey::Fetch.response_header_version(version))
        .map_err(encode_error)?;
    if version >= 1 {
        out.put_i32(response.throttle_time_ms);
    }
    if version >= 7 {
        out.put_i16(response.error_code);
        out.put_i32(response.session_id);
    }
    put_array_len(&mut out, response.responses.len(), flexible);
    let mut records = reply.records.iter();
    for topic in &response.responses {
        if !topic.unknown_tagged_fields.is_empty() {
            return Ok(None);
        }
        let name = topic.topic.0.as_bytes();
        if flexible {
            put_uvarint(&mut out, name.len() as u64 + 1);
        } else {
            out.put_i16(i16::try_from(name.len()).map_err(|_| encode_error("topic name too long"))?);
        }
        out.put_slice(name);
        put_array_len(&mut out, topic.partitions.len(), flexible);
        for partition in &topic.partitions {
            let plain_tags = partition.diverging_epoch == Default::default()
                && partition.current_leader == Default::default()
                && partition.snapshot_id == Default::default()
                && partition.unknown_tagged_fields.is_empty();
            if !plain_tags || partition.records.is_some() {
                return Ok(None);
            }
            partition.encode(&mut out, version).map_err(encode_error)?;
            let Some(Some(ranges)) = records.next() else {
                continue; // null records: the encoding above is already right
            };
            // Replace the null marker (and, when flexible, the empty tagged section).
            let length: u64 = ranges.iter().map(|r| r.length).sum();
            if flexible {
                debug_assert_eq!(&out[out.len() - 2..], &[0, 0]);
                out.truncate(out.len() - 2);
                put_uvarint(&mut out, length + 1);
            } else {
                debug_assert_eq!(&out[out.len() - 4..], &[0xff; 4]);
                out.truncate(out.len() - 4);
                out.put_i32(i32::try_from(length).map_err(|_| encode_error("records over 2 GiB"))?);
            }
            for range in ranges.iter().filter(|r| r.length > 0) {
                chunks.push(Chunk::Bytes(out.split().freeze()));
                chunks.push(Chunk::File(range.clone()));
            }
            if flexible {
                out.put_u8(0);
            }
        }
        if flexible {
            out.put_u8(0);
        }
    }
    if flexible {
        out.put_u8(0);
    }
    chunks.push(Chunk::Bytes(out.freeze()));
    let size = chunks.iter().map(Chunk::len).sum::<u64>() - 4;
    let size = i32::try_from(size).map_err(|_| encode_error("fetch response over 2 GiB"))?;
    if let Some(Chunk::Bytes(first)) = chunks.first_mut() {
        let mut patched = BytesMut::from(first.as_ref());
        patched[..4].copy_from_slice(&size.to_be_bytes());
        *first = patched.freeze();
    }
    Ok(Some(chunks))
}

fn put_array_len(out: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_uvarint(out, len as u64 + 1);
    } else {
        out.put_i32(len as i32);
    }
}

fn put_uvarint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn encode_error(e: impl std::fmt::Display) -> Close {
    tracing::error!(error = %e, "could not encode a fetch response");
    Close::Protocol(format!("fetch response encoding failed: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Arc;

    use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, ProducerId, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn range(file: &Arc<std::fs::File>, position: u64, length: u64) -> FileRange {
        FileRange { file: file.clone(), path: PathBuf::from("test"), position, length, first_offset: 0, next_offset: 0 }
    }

    fn materialize(chunks: &[Chunk]) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in chunks {
            match chunk {
                Chunk::Bytes(b) => out.extend_from_slice(b),
                Chunk::File(r) => out.extend_from_slice(&r.read_to_vec().unwrap()),
            }
        }
        out
    }

    fn reply(file: &Arc<std::fs::File>, version: i16) -> FetchReply {
        let partition = |index: i32| {
            PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(100 + i64::from(index))
                .with_last_stable_offset(90)
                .with_log_start_offset(3)
                .with_aborted_transactions(None)
                .with_records(None)
        };
        let response = FetchResponse::default().with_throttle_time_ms(7).with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("alpha")))
                .with_partitions(vec![
                    partition(0),
                    partition(1).with_aborted_transactions(Some(vec![
                        AbortedTransaction::default().with_producer_id(ProducerId(9)).with_first_offset(4),
                    ])),
                    partition(2).with_error_code(1),
                ]),
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("b")))
                .with_partitions(vec![partition(5).with_aborted_transactions(Some(vec![])), partition(6)]),
        ]);
        let records = vec![
            Some(vec![range(file, 0, 10), range(file, 10, 0), range(file, 20, 30)]),
            Some(vec![]),
            None,
            Some(vec![range(file, 50, 200)]),
            Some(vec![range(file, 250, 6)]),
        ];
        // Sessions exist from v7; the ordinary encoder refuses a session id before.
        let response = if version >= 7 { response.with_session_id(42) } else { response };
        FetchReply { response, records }
    }

    #[test]
    fn chunked_frames_equal_the_ordinary_encoding_in_every_version() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(&(0..=255u8).cycle().take(1000).collect::<Vec<_>>()).unwrap();
        let file = Arc::new(tmp);
        for version in 4..=FIRST_FLEXIBLE {
            let chunks = encode(version, 1234, &reply(&file, version)).unwrap().expect("covered");
            let ordinary = ResponseKind::Fetch(reply(&file, version).into_response().unwrap());
            let expected = super::super::encode_response(ApiKey::Fetch as i16, version, 1234, &ordinary).unwrap();
            assert_eq!(materialize(&chunks), expected.as_ref(), "v{version}");
            assert_eq!(chunks.iter().filter(|c| matches!(c, Chunk::File(_))).count(), 4, "empty ranges are skipped");
        }
    }

    #[test]
    fn tagged_fields_fall_back_to_the_ordinary_encoder() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let mut reply = reply(&file, 12);
        reply.response.responses[0].partitions[0].diverging_epoch.epoch = 3;
        assert!(encode(12, 1, &reply).unwrap().is_none());
    }
}
