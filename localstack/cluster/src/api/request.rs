//! What a request says besides its path: query parameters, content type, field manager, the body,
//! and the list and delete options they carry.

use crate::meta::Lookup;
use std::collections::HashMap;

use axum::extract::Query;
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};

use super::protobuf;
use crate::error::{ApiError, ApiResult};
use crate::registry::{DeleteOptions, ListOptions, Propagation};
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};

pub(super) type Params = HashMap<String, String>;

pub(super) fn params(uri: &Uri) -> Params {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0.into_iter().collect())
        .unwrap_or_default()
}

pub(super) fn flag(params: &Params, key: &str) -> bool {
    params
        .get(key)
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

pub(super) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The default field manager: the client's user agent up to the first `/`, as the real server derives it.
pub(super) fn field_manager(params: &Params, headers: &HeaderMap) -> String {
    if let Some(m) = params.get("fieldManager") {
        return m.clone();
    }
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

pub(super) fn decode_object(
    headers: &HeaderMap,
    body: &[u8],
    rt: &ResourceType,
) -> ApiResult<Value> {
    match content_type(headers).as_str() {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}"))),
        "application/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}"))),
        "application/vnd.kubernetes.protobuf" => protobuf::decode(body, rt),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub(super) fn list_options(params: &Params, rt: &ResourceType) -> ApiResult<ListOptions> {
    Ok(ListOptions {
        label_selector: params
            .get("labelSelector")
            .map(|s| LabelSelector::parse(s))
            .transpose()?,
        field_selector: params
            .get("fieldSelector")
            .map(|s| FieldSelector::parse(s, rt.kind))
            .transpose()?,
        limit: params.get("limit").and_then(|l| l.parse().ok()),
        continue_token: params.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

pub(super) fn delete_options(
    params: &Params,
    body: &[u8],
    rt: &ResourceType,
) -> ApiResult<DeleteOptions> {
    let body: Value = if body.is_empty() {
        json!({})
    } else if body.starts_with(b"k8s\0") {
        protobuf::decode_delete_options(body)?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let policy = params.get("propagationPolicy").cloned().or_else(|| {
        body.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let orphan = body
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| params.get("orphanDependents").map(|v| v == "true"));
    let propagation = match (policy.as_deref(), orphan) {
        (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
        (Some("Foreground"), _) => Propagation::Foreground,
        (Some("Background"), _) | (None, _) => Propagation::Background,
        (Some(other), _) => {
            let _ = rt;
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    };
    let dry_run = params.get("dryRun").is_some_and(|v| v == "All")
        || body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|d| d == "All"));
    Ok(DeleteOptions {
        propagation,
        dry_run,
        precondition_uid: body
            .at("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: body
            .at("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok()),
        grace_period_seconds: params
            .get("gracePeriodSeconds")
            .and_then(|v| v.parse().ok())
            .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64)),
    })
}
