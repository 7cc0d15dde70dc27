//! What the API server's Status says about a failed call, so stores match outcomes instead of text.

/// True when the cluster said the object already exists (the atomic duplicate check).
pub fn is_already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.is_already_exists())
}

pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.is_not_found())
}

/// True when a write lost a race on resourceVersion: read again and retry.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.is_conflict())
}
