//! The one error type of the AWS layer: the operation, AWS's own error code (so callers match on
//! `DependencyViolation` or `NoSuchEntity` rather than search text) and its message.

use std::fmt;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// An AWS call that failed, or answered without an identifier the next call needs.
#[derive(Debug, thiserror::Error)]
pub struct AwsError {
    pub operation: &'static str,
    code: Option<String>,
    message: String,
    /// Set when AWS said yes but left out a required field: naming it here beats passing `""`
    /// to the next call.
    missing: Option<&'static str>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.missing, &self.code) {
            (Some(field), _) => write!(f, "{} returned no {field}", self.operation),
            (None, Some(code)) => write!(f, "{} failed: {code}: {}", self.operation, self.message),
            (None, None) => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl AwsError {
    /// AWS's error code (`DependencyViolation`, `NoSuchEntity`, ...), empty when the call never got
    /// an answer from AWS (connection, timeout) or the answer lacked a field.
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is(&self, code: &str) -> bool {
        self.code() == code
    }

    /// The codes AWS uses for "no such resource", across the services we call.
    pub fn is_not_found(&self) -> bool {
        let code = self.code();
        code.ends_with(".NotFound")
            || code.ends_with("NotFoundException")
            || code.ends_with("NotFound")
            || code == "NoSuchEntity"
            || (code == "ValidationError" && self.message.contains("not found"))
    }

    /// For tests and fakes: an error as AWS would return it.
    pub fn new(operation: &'static str, code: &str, message: &str) -> Self {
        Self {
            operation,
            code: Some(code.to_owned()),
            message: message.to_owned(),
            missing: None,
        }
    }

    /// AWS answered `operation` without `field`, which the stack needs.
    pub fn missing(operation: &'static str, field: &'static str) -> Self {
        Self {
            operation,
            code: None,
            message: String::new(),
            missing: Some(field),
        }
    }
}

/// A field AWS must return: its absence is an error naming the call, checked once, here.
pub(crate) fn required<T>(
    value: Option<T>,
    operation: &'static str,
    field: &'static str,
) -> Result<T, AwsError> {
    value.ok_or_else(|| AwsError::missing(operation, field))
}

/// Same as [`required`] for the SDK's borrowed strings.
pub(crate) fn required_str(
    value: Option<&str>,
    operation: &'static str,
    field: &'static str,
) -> Result<String, AwsError> {
    required(value, operation, field).map(str::to_owned)
}

/// Turns an SDK result into one with [`AwsError`], naming the operation; used only inside the
/// AWS layer, one call per operation.
pub(crate) trait SdkResultExt<T> {
    fn op(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E> SdkResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn op(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|err| {
            let code = err.code().map(str::to_owned);
            let message = match (&err, err.message()) {
                (SdkError::ServiceError(_), Some(message)) => message.to_owned(),
                _ => error_chain(&err),
            };
            AwsError {
                operation,
                code,
                message,
                missing: None,
            }
        })
    }
}

/// Lookups where "no such resource" is an answer, not a failure.
pub(crate) trait NotFoundExt<T> {
    fn found(self) -> Result<Option<T>, AwsError>;
}

impl<T> NotFoundExt<T> for Result<T, AwsError> {
    fn found(self) -> Result<Option<T>, AwsError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// "dispatch failure: io error: ... Connection refused": each cause once, without Debug dumps.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_codes_across_services() {
        for code in [
            "InvalidVpcID.NotFound",
            "ResourceNotFoundException",
            "LoadBalancerNotFound",
            "NoSuchEntity",
        ] {
            assert!(AwsError::new("x", code, "").is_not_found(), "{code}");
        }
        assert!(!AwsError::new("x", "DependencyViolation", "").is_not_found());
    }

    #[test]
    fn a_missing_identifier_names_the_call() {
        let err = required::<String>(None, "ec2:CreateVpc", "VpcId").unwrap_err();
        assert_eq!(err.to_string(), "ec2:CreateVpc returned no VpcId");
        assert!(!err.is_not_found());
    }
}
