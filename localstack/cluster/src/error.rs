//! API errors rendered as `metav1.Status`, the only error shape Kubernetes clients understand.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::resources::ResourceType;

/// One entry of `details.causes`, naming the field an `Invalid` error is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueRequired",
            message: "Required value".into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl AsRef<str>) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {shown}: {}", detail.as_ref()),
        }
    }

    pub fn unsupported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {}", detail.into()),
        }
    }

    pub fn immutable(field: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: "field is immutable".into(),
        }
    }

    fn describe(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// A failed API call; converts into the `Status` body and HTTP code the real API server would send.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// Name/group/kind triple used in `details` of most errors.
fn details(rt: &ResourceType, name: &str) -> Value {
    json!({"name": name, "group": rt.group, "kind": rt.plural})
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} {name:?} not found", rt.qualified()),
            )
        }
    }

    pub fn not_found_path(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        Self {
            details: Some(json!({"name": ns, "kind": "namespaces"})),
            ..Self::new(404, "NotFound", format!("namespaces {ns:?} not found"))
        }
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} {name:?} already exists", rt.qualified()),
            )
        }
    }

    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        Self {
            details: Some(details(rt, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                    rt.qualified()
                ),
            )
        }
    }

    /// Server-side apply conflicts: one cause per contested field, as `kubectl apply --server-side` prints them.
    pub fn apply_conflicts(rt: &ResourceType, name: &str, conflicts: &[(String, String)]) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager:?} using {}", rt.api_version()), "field": field})
            })
            .collect();
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(manager, field)| {
                format!(
                    "- conflict with {manager:?} using {}: {field}",
                    rt.api_version()
                )
            })
            .collect();
        let mut d = details(rt, name);
        d["causes"] = Value::Array(causes);
        Self {
            details: Some(d),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict{}:\n{}",
                    conflicts.len(),
                    if conflicts.len() == 1 { "" } else { "s" },
                    lines.join("\n")
                ),
            )
        }
    }

    pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> Self {
        Self::invalid_kind(rt.kind, rt.group, name, causes)
    }

    /// `Invalid` for a kind that is not a stored resource (the options of a request, such as
    /// `PodLogOptions`).
    pub fn invalid_kind(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let summary: Vec<String> = causes.iter().map(Cause::describe).collect();
        let message = if summary.len() == 1 {
            summary.join("")
        } else {
            format!("[{}]", summary.join(", "))
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self {
            details: Some(json!({"name": name, "group": group, "kind": kind, "causes": causes})),
            ..Self::new(
                422,
                "Invalid",
                format!("{qualified} {name:?} is invalid: {message}"),
            )
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"
            ),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn status_json(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            self.status_json().to_string(),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
