//! Decoding request frames and encoding response frames.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{Close, put_frame};
use crate::broker::handlers::{supported_versions, unsupported_version_response};

/// A decoded frame: a request to handle, or bytes to send back without handling.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A request the broker implements.
    Request { header: RequestHeader, request: Box<RequestKind> },
    /// An already-encoded answer (ApiVersions at an unsupported version).
    Immediate(Bytes),
}

/// The fixed start of every request header: api key, api version, correlation id.
const HEADER_PREFIX_BYTES: usize = 8;

/// Decodes one request frame (without its size prefix).
pub(crate) fn decode_request(mut frame: Bytes) -> Result<Decoded, Close> {
    if frame.len() < HEADER_PREFIX_BYTES {
        return Err(Close::Protocol(format!("{}-byte frame is too short for a request header", frame.len())));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| Close::Protocol(format!("unknown API key {raw_key}")))?;
    let Some((min, max)) = supported_versions(api_key) else {
        return Err(Close::Protocol(format!("API {api_key:?} (key {raw_key}) is not implemented")));
    };
    if !(min..=max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            tracing::info!(version, "ApiVersions at an unsupported version; answering with the supported range");
            let mut out = BytesMut::new();
            let response = unsupported_version_response();
            return put_frame(&mut out, |out| {
                ResponseHeader::default().with_correlation_id(correlation_id).encode(out, 0).map_err(encode_error)?;
                response.encode(out, 0).map_err(encode_error)
            })
            .map(Decoded::Immediate);
        }
        return Err(Close::Protocol(format!("{api_key:?} v{version} is not supported (supported: v{min}-v{max})")));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| Close::Protocol(format!("malformed {api_key:?} v{version} request header: {e}")))?;
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| Close::Protocol(format!("malformed {api_key:?} v{version} request: {e}")))?;
    if frame.has_remaining() {
        // Kafka ignores bytes past the schema, and real clients send them (librdkafka's
        // describe_cluster Metadata v12 carries 3), so this is not a reason to hang up.
        tracing::debug!(api = ?api_key, version, extra = frame.remaining(), "ignoring bytes after a request");
    }
    Ok(Decoded::Request { header, request: Box::new(request) })
}

/// Encodes a response frame.
pub(crate) fn encode_response(
    raw_key: i16,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, Close> {
    let api_key = ApiKey::try_from(raw_key).map_err(|()| Close::Protocol(format!("unknown API key {raw_key}")))?;
    let mut out = BytesMut::with_capacity(256);
    put_frame(&mut out, |out| {
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(out, api_key.response_header_version(version))
            .map_err(encode_error)?;
        response.encode(out, version).map_err(encode_error)
    })
}

fn encode_error(e: impl std::fmt::Display) -> Close {
    tracing::error!(error = %e, "could not encode a response");
    Close::Protocol(format!("response encoding failed: {e}"))
}
