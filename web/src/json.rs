//! Typed JSON request bodies (their lenient field types are in `json_fields`): decoded with serde, refused as `{field, message}` when a key is
//! unknown, a value has the wrong type, or the body is larger than the site accepts.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::{AppError, FieldError};

/// Largest JSON body the API reads; larger ones are refused before decoding.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body decoded into `T`; an empty body reads as `{}`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(request.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| AppError::BodyTooLarge {
                limit_kib: BODY_LIMIT / 1024,
            })?;
        decode(&bytes).map(Self)
    }
}

/// Decodes a JSON body, naming the key at fault in the error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    // serde reads a struct from an array too (by position); a body must name its keys.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AppError::Invalid(vec![FieldError::new(
            "body",
            "Send a JSON object.",
        )]));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let error = e.into_inner();
        let message = error.to_string();
        // serde_json appends the position, which says nothing to someone who built the body in code.
        let message = message
            .split_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_string();
        let field = if error.is_syntax() || error.is_eof() {
            "body".to_string()
        } else if let Some(unknown) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            unknown.to_string()
        } else {
            key_of(&path)
        };
        let message = if error.is_syntax() || error.is_eof() {
            format!("Send a JSON object: {message}.")
        } else if path == "." && message.starts_with("invalid type") {
            "Send a JSON object.".to_string()
        } else {
            format!("{}{}.", message[..1].to_uppercase(), &message[1..])
        };
        AppError::Invalid(vec![FieldError::new(&field, message)])
    })
}

/// An error of [`decode`] for a body that carries secrets: a message that quotes what was sent
/// (serde's "invalid type: string \"…\"") is replaced by `instead`, so no value comes back.
pub fn redact_quoted(error: AppError, instead: &str) -> AppError {
    match error {
        AppError::Invalid(errors) => AppError::Invalid(
            errors
                .into_iter()
                .map(|e| {
                    if e.message.contains('"') {
                        FieldError::new(&e.field, instead)
                    } else {
                        e
                    }
                })
                .collect(),
        ),
        other => other,
    }
}

/// The top-level key of a serde path such as `headers[0].name`.
fn key_of(path: &str) -> String {
    let key = path.split(['.', '[']).next().unwrap_or_default();
    if key.is_empty() { "body" } else { key }.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::json_fields::text;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        #[serde(default, deserialize_with = "text")]
        port: String,
        #[serde(default)]
        ids: Vec<String>,
    }

    fn field(body: &str) -> String {
        match decode::<Sample>(body.as_bytes()) {
            Err(AppError::Invalid(e)) => e[0].field.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numbers_read_as_text_and_faults_name_their_key() {
        assert_eq!(decode::<Sample>(br#"{"port": 80}"#).unwrap().port, "80");
        assert_eq!(decode::<Sample>(b"").unwrap().port, "");
        assert_eq!(field(r#"{"port": 80, "colour": 1}"#), "colour");
        assert_eq!(field(r#"{"ids": "x"}"#), "ids");
        assert_eq!(field(r#"{"ids": [1]}"#), "ids");
        assert_eq!(field("[1]"), "body");
        assert_eq!(field("{"), "body");
    }
}
