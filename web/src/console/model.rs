//! An API endpoint a developer registered for a repository and the request it becomes, with the
//! two ways its query and headers are written (form lines or `{name, value}` pairs).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::json_fields::{body_text, text};

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

/// The parts of a request that travel: shared by registered endpoints and ad-hoc sends.
pub struct RequestParts {
    pub method: String,
    pub path: String,
    pub query: Vec<Pair>,
    pub headers: Vec<Pair>,
    pub body_kind: BodyKind,
    pub body: String,
}
