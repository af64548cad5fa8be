//! ApiVersions: tells clients exactly which APIs and versions are implemented.

use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::SUPPORTED_APIS;
use crate::codes;

pub(super) fn handle(base: ApiVersionsResponse) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max)
        })
        .collect();
    base.with_error_code(codes::NONE).with_api_keys(api_keys)
}

/// KIP-511: a client asking for a newer ApiVersions than we know gets UNSUPPORTED_VERSION
/// (encoded as v0) together with our list, so it can retry with a version we support.
pub(crate) fn unsupported_version_response() -> ApiVersionsResponse {
    handle(ApiVersionsResponse::default()).with_error_code(codes::UNSUPPORTED_VERSION)
}
