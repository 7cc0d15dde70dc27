//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`) sent by kubectl's typed commands.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;

pub(super) fn decode(_body: &[u8], _rt: &ResourceType) -> ApiResult<Value> {
    Err(ApiError::unsupported_media_type(
        "application/vnd.kubernetes.protobuf",
    ))
}

pub(super) fn decode_delete_options(_body: &[u8]) -> ApiResult<Value> {
    Err(ApiError::unsupported_media_type(
        "application/vnd.kubernetes.protobuf",
    ))
}
