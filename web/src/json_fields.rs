//! Field types shared by forms and JSON bodies: text that may come as a JSON number, and a body
//! that may come as JSON itself.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A text field that also takes a JSON number or boolean, so `"80"` and `80` read alike.
pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(optional_text(deserializer)?.unwrap_or_default())
}

/// Like [`text`]; absent or `null` stays `None`.
pub fn optional_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        v @ (Value::Number(_) | Value::Bool(_)) => Ok(Some(v.to_string())),
        _ => Err(D::Error::custom("expected a string or a number")),
    }
}

/// A request body given as text, or as JSON itself (kept as formatted JSON text).
pub fn optional_body_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => serde_json::to_string_pretty(&other)
            .map(Some)
            .map_err(D::Error::custom),
    }
}

/// Like [`optional_body_text`]; absent or `null` is empty.
pub fn body_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(optional_body_text(deserializer)?.unwrap_or_default())
}
