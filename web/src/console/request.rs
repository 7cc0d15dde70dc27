//! What a checked request becomes on the wire: the filled path, the public address, the body
//! bytes, and the same request as a `curl` command line.

use super::model::{BodyKind, Pair, RequestParts, lines_to_pairs};
use crate::field_error::FieldError;

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
    use crate::console::rules::check_path;

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
