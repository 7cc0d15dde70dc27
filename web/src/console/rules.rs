//! The rules for an endpoint and for any request the console sends: a request can never leave
//! the repository's own route. Pure, so the safety rules are tested without a network.

use super::model::{BodyKind, Endpoint, EndpointInput, Pair, RequestParts, lines_to_pairs};
use crate::field_error::FieldError;

pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
pub const PATH_RULE: &str = "Starts with '/', is appended after /<namespace>/<repository>; {name} marks a parameter. No '..', no full URLs.";
pub const QUERY_RULE: &str = "One name=value per line.";
pub const HEADERS_RULE: &str = "One Name: value per line. Host, Content-Length, Connection and Transfer-Encoding are set by the site.";
pub const BODY_RULE: &str =
    "JSON must be valid JSON; form is name=value lines; raw is sent as typed.";
/// Headers the site sets itself; letting a user choose them would let a request leave its route.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
];
const MAX_PATH: usize = 2048;
const MAX_BODY: usize = 64 * 1024;
const MAX_PAIRS: usize = 50;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// The path rule: relative to the repository's route, never able to leave it.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("Enter a path, for example / or /users/{id}.".into());
    }
    if !path.starts_with('/') {
        return Err("Start the path with '/'.".into());
    }
    if path.len() > MAX_PATH {
        return Err(format!("Use at most {MAX_PATH} characters."));
    }
    if path.starts_with("//") || path.contains("://") {
        return Err(
            "Enter a path only: the host is always your repository's public address.".into(),
        );
    }
    if has_control(path) || path.contains(' ') {
        return Err("Remove spaces and line breaks from the path.".into());
    }
    if path.contains('?') || path.contains('#') {
        return Err("Put query parameters in the query field, not in the path.".into());
    }
    if path.contains('\\') {
        return Err("Use '/' to separate path segments.".into());
    }
    if has_dot_segment(path) {
        return Err(
            "'.' and '..' segments are not allowed: the path stays inside your repository.".into(),
        );
    }
    Ok(())
}

/// True when any segment is `.` or `..`, also once percent-decoded (proxies decode before
/// normalising, so `%2e%2e` or `%2F..` would climb out just the same).
pub fn has_dot_segment(path: &str) -> bool {
    let once = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(&once).collect();
    decoded
        .split(|b| *b == b'/' || *b == b'\\')
        .any(|seg| seg == b"." || seg == b"..")
}

fn check_header(p: &Pair) -> Result<(), String> {
    if p.name.is_empty()
        || !p
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(format!(
            "'{}' is not a header name: use letters, digits and '-'.",
            p.name
        ));
    }
    if RESERVED_HEADERS.contains(&p.name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{} is set by the site and cannot be changed here.",
            p.name
        ));
    }
    if has_control(&p.value) {
        return Err(format!("The value of {} contains a line break.", p.name));
    }
    Ok(())
}

fn check_query(p: &Pair) -> Result<(), String> {
    if p.name.is_empty() {
        return Err("A query parameter needs a name before '='.".into());
    }
    if has_control(&p.name) || has_control(&p.value) {
        return Err("Query parameters cannot contain line breaks.".into());
    }
    Ok(())
}

/// Checks the travelling parts; every problem is reported with its field.
pub fn check_request(parts: &RequestParts) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !METHODS.contains(&parts.method.as_str()) {
        errors.push(FieldError::new(
            "method",
            format!("Choose one of {}.", METHODS.join(", ")),
        ));
    }
    if let Err(m) = check_path(&parts.path) {
        errors.push(FieldError::new("path", m));
    }
    if parts.query.len() > MAX_PAIRS {
        errors.push(FieldError::new(
            "query",
            format!("Use at most {MAX_PAIRS} parameters."),
        ));
    }
    if let Some(m) = parts.query.iter().find_map(|p| check_query(p).err()) {
        errors.push(FieldError::new("query", m));
    }
    if parts.headers.len() > MAX_PAIRS {
        errors.push(FieldError::new(
            "headers",
            format!("Use at most {MAX_PAIRS} headers."),
        ));
    }
    if let Some(m) = parts.headers.iter().find_map(|p| check_header(p).err()) {
        errors.push(FieldError::new("headers", m));
    }
    if parts.body.len() > MAX_BODY {
        errors.push(FieldError::new(
            "body",
            format!(
                "The body is larger than the site's limit of {} KiB.",
                MAX_BODY / 1024
            ),
        ));
    } else if parts.body_kind == BodyKind::Json
        && !parts.body.trim().is_empty()
        && let Err(e) = serde_json::from_str::<serde_json::Value>(&parts.body)
    {
        errors.push(FieldError::new(
            "body",
            format!("This is not valid JSON: {e}."),
        ));
    }
    errors
}

/// Validates an endpoint as typed; `id` is kept (or given by the caller for a new one).
pub fn validate_endpoint(input: &EndpointInput, id: String) -> Result<Endpoint, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = input.name.trim().to_string();
    if name.is_empty() {
        errors.push(FieldError::new(
            "name",
            "Enter a name, for example List users.",
        ));
    } else if name.chars().count() > 80 || has_control(&name) {
        errors.push(FieldError::new(
            "name",
            "Use at most 80 characters on one line.",
        ));
    }
    let body_kind = BodyKind::parse(&input.body_kind);
    if body_kind.is_none() {
        errors.push(FieldError::new(
            "body_kind",
            "Choose none, JSON, form or raw.",
        ));
    }
    let parts = RequestParts {
        method: input.method.trim().to_ascii_uppercase(),
        path: input.path.trim().to_string(),
        query: lines_to_pairs(&input.query, '='),
        headers: lines_to_pairs(&input.headers, ':'),
        body_kind: body_kind.unwrap_or_default(),
        body: input.body.clone(),
    };
    errors.extend(check_request(&parts));
    if input.description.len() > 2000 {
        errors.push(FieldError::new(
            "description",
            "Use at most 2000 characters.",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Endpoint {
        id,
        name,
        method: parts.method,
        path: parts.path,
        query: parts.query,
        headers: parts.headers,
        body_kind: parts.body_kind,
        body: parts.body,
        description: input.description.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(method: &str, path: &str) -> EndpointInput {
        EndpointInput {
            name: "Users".into(),
            method: method.into(),
            path: path.into(),
            ..EndpointInput::default()
        }
    }

    fn field_of(r: Result<Endpoint, Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn path_table() {
        for ok in ["/", "/users", "/users/{id}", "/a.b/c..d", "/%41"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "users",
            "//evil.com/x",
            "/http://evil",
            "/../bob/x",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E%2e",
            "/a%2F..%2Fb",
            "/a/%252e%252e/b",
            "/a\\..\\b",
            "/a b",
            "/a\r\nHost: x",
            "/a?x=1",
            "/a#f",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers_cannot_override_host_or_smuggle_lines() {
        let mut i = input("GET", "/");
        i.headers = "Host: evil.com".into();
        assert_eq!(field_of(validate_endpoint(&i, "x".into())), ["headers"]);
        i.headers = "X-Forwarded-Host: evil".into();
        assert_eq!(field_of(validate_endpoint(&i, "x".into())), ["headers"]);
        i.headers = "Bad Name: v".into();
        assert_eq!(field_of(validate_endpoint(&i, "x".into())), ["headers"]);
        // A CR inside one line (LF splits lines) is refused.
        i.headers = "X-A: a\rInjected: b".into();
        assert_eq!(field_of(validate_endpoint(&i, "x".into())), ["headers"]);
        i.headers = "X-Trace: 1\nAccept: application/json".into();
        let e = validate_endpoint(&i, "x".into()).unwrap();
        assert_eq!(e.headers.len(), 2);
        assert_eq!(e.headers[1].value, "application/json");
    }

    #[test]
    fn method_body_and_name_are_checked() {
        assert_eq!(
            field_of(validate_endpoint(&input("FETCH", "/"), "x".into())),
            ["method"]
        );
        let mut i = input("post", "/users");
        i.body_kind = "json".into();
        i.body = "{not json".into();
        assert_eq!(field_of(validate_endpoint(&i, "x".into())), ["body"]);
        i.body = r#"{"a": 1}"#.into();
        let e = validate_endpoint(&i, "x".into()).unwrap();
        assert_eq!(e.method, "POST");
        i.name = " ".into();
        assert_eq!(field_of(validate_endpoint(&i, "x".into())), ["name"]);
    }
}
