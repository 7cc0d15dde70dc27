//! One rejected field: the unit of every validation error, below every feature.

use serde::Serialize;

/// One rejected field, as shown next to the field and returned by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
