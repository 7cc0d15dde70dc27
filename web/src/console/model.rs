//! An API endpoint a developer registered for a repository, the rules for it, and the request it
//! becomes: everything here is pure so the safety rules are tested without a network.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::field_error::FieldError;
use crate::json_fields::{body_text, text};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    #[default]
    None,
    Json,
    Form,
    Raw,
}

impl BodyKind {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Some(Self::None),
            "json" => Some(Self::Json),
            "form" => Some(Self::Form),
            "raw" | "text" => Some(Self::Raw),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Json => "json",
            Self::Form => "form",
            Self::Raw => "raw",
        }
    }

    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Json => Some("application/json"),
            Self::Form => Some("application/x-www-form-urlencoded"),
            Self::Raw => Some("text/plain; charset=utf-8"),
        }
    }
}

/// A registered endpoint of a repository's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub name: String,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Vec<Pair>,
    #[serde(default)]
    pub headers: Vec<Pair>,
    #[serde(default)]
    pub body_kind: BodyKind,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub description: String,
}

/// What the endpoint form and API accept, as typed; query and headers as lines or pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInput {
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    #[serde(default, deserialize_with = "text")]
    pub method: String,
    #[serde(default, deserialize_with = "text")]
    pub path: String,
    #[serde(default, deserialize_with = "query_lines")]
    pub query: String,
    #[serde(default, deserialize_with = "header_lines")]
    pub headers: String,
    #[serde(default, deserialize_with = "text")]
    pub body_kind: String,
    #[serde(default, deserialize_with = "body_text")]
    pub body: String,
    #[serde(default, deserialize_with = "text")]
    pub description: String,
}

const PAIRS_EXPECTED: &str =
    "expected lines of text or a list of {\"name\": ..., \"value\": ...} objects";

/// Pairs given as a list of `{name, value}` or as the form's lines.
fn pairs_or_lines<'de, D: Deserializer<'de>>(
    deserializer: D,
    sep: char,
) -> Result<Option<Vec<Pair>>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(lines_to_pairs(&s, sep))),
        v @ Value::Array(_) => serde_json::from_value(v)
            .map(Some)
            .map_err(|_| D::Error::custom(PAIRS_EXPECTED)),
        _ => Err(D::Error::custom(PAIRS_EXPECTED)),
    }
}

/// Pairs as the form's lines, refusing names or values that would split into more lines.
fn as_lines<E: serde::de::Error>(pairs: Option<Vec<Pair>>, sep: char) -> Result<Option<String>, E> {
    let Some(pairs) = pairs else {
        return Ok(None);
    };
    if pairs
        .iter()
        .any(|p| p.name.contains(['\r', '\n']) || p.value.contains(['\r', '\n']))
    {
        return Err(E::custom("names and values cannot contain line breaks"));
    }
    Ok(Some(pairs_to_lines(&pairs, sep)))
}

/// `name=value` lines, given as lines or as `{name, value}` pairs.
pub fn optional_query_lines<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    as_lines(pairs_or_lines(d, '=')?, '=')
}

/// `Name: value` lines, given as lines or as `{name, value}` pairs.
pub fn optional_header_lines<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    as_lines(pairs_or_lines(d, ':')?, ':')
}

pub fn query_lines<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(optional_query_lines(d)?.unwrap_or_default())
}

pub fn header_lines<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(optional_header_lines(d)?.unwrap_or_default())
}

/// Query parameters as pairs, given as pairs or as lines.
pub fn query_pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pair>, D::Error> {
    Ok(pairs_or_lines(d, '=')?.unwrap_or_default())
}

/// Headers as pairs, given as pairs or as lines.
pub fn header_pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pair>, D::Error> {
    Ok(pairs_or_lines(d, ':')?.unwrap_or_default())
}

impl EndpointInput {
    pub fn from_endpoint(e: &Endpoint) -> Self {
        Self {
            name: e.name.clone(),
            method: e.method.clone(),
            path: e.path.clone(),
            query: pairs_to_lines(&e.query, '='),
            headers: pairs_to_lines(&e.headers, ':'),
            body_kind: e.body_kind.as_str().into(),
            body: e.body.clone(),
            description: e.description.clone(),
        }
    }
}

pub fn pairs_to_lines(pairs: &[Pair], sep: char) -> String {
    pairs
        .iter()
        .map(|p| {
            if sep == ':' {
                format!("{}: {}", p.name, p.value)
            } else {
                format!("{}={}", p.name, p.value)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `name=value` (or `Name: value`) lines; blank lines are skipped.
pub fn lines_to_pairs(text: &str, sep: char) -> Vec<Pair> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(sep) {
            Some((n, v)) => Pair {
                name: n.trim().to_string(),
                value: v.trim().to_string(),
            },
            None => Pair {
                name: l.to_string(),
                value: String::new(),
            },
        })
        .collect()
}

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

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// True when any segment is `.` or `..`, also once percent-decoded (proxies decode before
/// normalising, so `%2e%2e` or `%2F..` would climb out just the same).
pub fn has_dot_segment(path: &str) -> bool {
    let decoded = percent_decode(&String::from_utf8_lossy(&percent_decode(path)));
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

/// The parts of a request that travel: shared by registered endpoints and ad-hoc sends.
pub struct RequestParts {
    pub method: String,
    pub path: String,
    pub query: Vec<Pair>,
    pub headers: Vec<Pair>,
    pub body_kind: BodyKind,
    pub body: String,
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

/// `{name}` placeholders of a path, in order, without repeats.
pub fn path_params(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
        rest = &rest[start + len + 1..];
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986), dots included, so a value
/// can never become a separator or a dot segment.
pub fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fills `{name}` placeholders with encoded values; a missing value is an error for that parameter.
pub fn fill_path(path: &str, values: &[Pair]) -> Result<String, FieldError> {
    let mut out = path.to_string();
    for name in path_params(path) {
        let value = values
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
            .unwrap_or_default();
        if value.is_empty() {
            return Err(FieldError::new(
                "params",
                format!("Enter a value for the path parameter {{{name}}}."),
            ));
        }
        out = out.replace(&format!("{{{name}}}"), &encode_component(value));
    }
    Ok(out)
}

pub fn query_string(query: &[Pair]) -> String {
    query
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                encode_component(&p.name),
                encode_component(&p.value)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The path on the public host: the repository's route, then the endpoint's own path.
pub fn public_path(namespace: &str, repo: &str, path: &str, query: &[Pair]) -> String {
    let q = query_string(query);
    let path = path.trim_start_matches('/');
    if q.is_empty() {
        format!("/{namespace}/{repo}/{path}")
    } else {
        format!("/{namespace}/{repo}/{path}?{q}")
    }
}

/// The body bytes as sent (form lines become an urlencoded body).
pub fn body_bytes(kind: BodyKind, body: &str) -> Vec<u8> {
    match kind {
        BodyKind::None => Vec::new(),
        BodyKind::Form => query_string(&lines_to_pairs(body, '=')).into_bytes(),
        BodyKind::Json | BodyKind::Raw => body.as_bytes().to_vec(),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A `curl` command line for the same request against the public address.
pub fn curl(public_url: &str, parts: &RequestParts) -> String {
    let mut cmd = format!("curl -i -X {} {}", parts.method, shell_quote(public_url));
    if let Some(ct) = parts.body_kind.content_type()
        && !parts
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-type"))
    {
        cmd.push_str(&format!(
            " -H {}",
            shell_quote(&format!("Content-Type: {ct}"))
        ));
    }
    for h in &parts.headers {
        cmd.push_str(&format!(
            " -H {}",
            shell_quote(&format!("{}: {}", h.name, h.value))
        ));
    }
    if parts.body_kind != BodyKind::None {
        let body = String::from_utf8_lossy(&body_bytes(parts.body_kind, &parts.body)).to_string();
        cmd.push_str(&format!(" --data-raw {}", shell_quote(&body)));
    }
    cmd
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

    #[test]
    fn path_parameters_are_encoded_and_required() {
        assert_eq!(path_params("/u/{id}/p/{pid}/{id}"), ["id", "pid"]);
        let values = vec![
            Pair {
                name: "id".into(),
                value: "../../bob".into(),
            },
            Pair {
                name: "pid".into(),
                value: "a b".into(),
            },
        ];
        let filled = fill_path("/u/{id}/p/{pid}", &values).unwrap();
        assert_eq!(filled, "/u/%2E%2E%2F%2E%2E%2Fbob/p/a%20b");
        // Encoded dots are still dot segments to a proxy, so the filled path is refused.
        assert!(check_path(&filled).is_err());
        assert!(check_path("/u/a%20b").is_ok());
        let dots = vec![Pair {
            name: "id".into(),
            value: "..".into(),
        }];
        assert!(check_path(&fill_path("/u/{id}", &dots).unwrap()).is_err());
        assert_eq!(fill_path("/u/{id}", &[]).unwrap_err().field, "params");
    }

    #[test]
    fn public_path_and_curl() {
        let q = vec![Pair {
            name: "q".into(),
            value: "a&b=c".into(),
        }];
        assert_eq!(
            public_path("alice", "hello", "/search", &q),
            "/alice/hello/search?q=a%26b%3Dc"
        );
        assert_eq!(public_path("alice", "hello", "/", &[]), "/alice/hello/");
        let parts = RequestParts {
            method: "POST".into(),
            path: "/x".into(),
            query: vec![],
            headers: vec![Pair {
                name: "X-Note".into(),
                value: "it's".into(),
            }],
            body_kind: BodyKind::Json,
            body: r#"{"a":"b"}"#.into(),
        };
        let c = curl("http://lb/alice/hello/x", &parts);
        assert_eq!(
            c,
            r#"curl -i -X POST 'http://lb/alice/hello/x' -H 'Content-Type: application/json' -H 'X-Note: it'\''s' --data-raw '{"a":"b"}'"#
        );
        assert_eq!(body_bytes(BodyKind::Form, "a=1\nb=x y"), b"a=1&b=x%20y");
    }
}
