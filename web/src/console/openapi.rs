//! Endpoints from an OpenAPI 3 document (JSON or YAML): one per path and method.

use serde_json::Value;

use super::model::{BodyKind, EndpointInput};
use super::rules::METHODS;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    #[error("this is neither JSON nor YAML: {0}")]
    Unreadable(String),
    #[error("this is not an OpenAPI 3 document: it has no `openapi: 3.x` field")]
    NotOpenApi3,
    #[error("the document lists no paths")]
    NoPaths,
}

fn parse(document: &str) -> Result<Value, ImportError> {
    match serde_json::from_str::<Value>(document) {
        Ok(v) => Ok(v),
        Err(_) => serde_yaml::from_str::<Value>(document)
            .map_err(|e| ImportError::Unreadable(e.to_string())),
    }
}

/// Follows local `$ref`s (`#/components/...`), a few levels deep, so shared parameters and
/// schemas count as if written in place.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match v
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| doc.pointer(pointer))
        {
            Some(target) => v = target,
            None => break,
        }
    }
    v
}

fn example_of(doc: &Value, schema: &Value) -> Option<Value> {
    let schema = resolve(doc, schema);
    if let Some(e) = schema.get("example") {
        return Some(e.clone());
    }
    if let Some(d) = schema.get("default") {
        return Some(d.clone());
    }
    match schema.get("type").and_then(Value::as_str)? {
        "object" => {
            let props = schema.get("properties").and_then(Value::as_object)?;
            let mut out = serde_json::Map::new();
            for (k, v) in props {
                out.insert(k.clone(), example_of(doc, v).unwrap_or(Value::Null));
            }
            Some(Value::Object(out))
        }
        "array" => Some(Value::Array(
            schema
                .get("items")
                .and_then(|i| example_of(doc, i))
                .into_iter()
                .collect(),
        )),
        "string" => Some(Value::String(String::new())),
        "integer" | "number" => Some(Value::from(0)),
        "boolean" => Some(Value::Bool(false)),
        _ => None,
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Endpoint inputs (to be validated like typed ones) for every operation of the document.
pub fn endpoints_from(document: &str) -> Result<Vec<EndpointInput>, ImportError> {
    let doc = parse(document)?;
    let version = doc.get("openapi").map(scalar_text).unwrap_or_default();
    if !version.starts_with('3') {
        return Err(ImportError::NotOpenApi3);
    }
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or(ImportError::NoPaths)?;
    let mut out = Vec::new();
    for (path, item) in paths {
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(method.to_ascii_lowercase()) else {
                continue;
            };
            let mut params = shared.clone();
            params.extend(
                op.get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            let mut query = Vec::new();
            let mut headers = Vec::new();
            for p in params.iter().map(|p| resolve(&doc, p)) {
                let Some(name) = p.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let value = p
                    .get("example")
                    .or_else(|| p.pointer("/schema/example"))
                    .or_else(|| p.pointer("/schema/default"))
                    .map(scalar_text)
                    .unwrap_or_default();
                match p.get("in").and_then(Value::as_str) {
                    Some("query") => query.push(format!("{name}={value}")),
                    Some("header") => headers.push(format!("{name}: {value}")),
                    _ => {}
                }
            }
            let content = op
                .pointer("/requestBody/content")
                .and_then(Value::as_object);
            let (body_kind, body) = match content {
                Some(c) if c.contains_key("application/json") => {
                    let media = &c["application/json"];
                    let example = media
                        .get("example")
                        .cloned()
                        .or_else(|| media.get("schema").and_then(|s| example_of(&doc, s)))
                        .unwrap_or(Value::Object(serde_json::Map::new()));
                    (
                        BodyKind::Json,
                        serde_json::to_string_pretty(&example).unwrap_or_default(),
                    )
                }
                Some(c) if c.contains_key("application/x-www-form-urlencoded") => {
                    (BodyKind::Form, String::new())
                }
                Some(c) if !c.is_empty() => (BodyKind::Raw, String::new()),
                _ => (BodyKind::None, String::new()),
            };
            let summary = op
                .get("summary")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = op
                .get("operationId")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(
                    || {
                        if summary.is_empty() {
                            format!("{method} {path}")
                        } else {
                            summary.to_string()
                        }
                    },
                    str::to_string,
                );
            let description = op
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or(summary)
                .to_string();
            out.push(EndpointInput {
                name: name.chars().take(80).collect(),
                method: (*method).to_string(),
                path: path.clone(),
                query: query.join("\n"),
                headers: headers.join("\n"),
                body_kind: body_kind.as_str().into(),
                body,
                description: description.chars().take(2000).collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_become_endpoints() {
        let doc = r#"
openapi: 3.0.3
info: {title: pets, version: "1"}
paths:
  /pets:
    get:
      operationId: listPets
      parameters:
        - {name: limit, in: query, schema: {type: integer, default: 10}}
        - {name: X-Trace, in: header, example: abc}
    post:
      summary: Add a pet
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                name: {type: string, example: Rex}
                age: {type: integer}
  /pets/{id}:
    parameters:
      - {name: id, in: path, required: true}
    delete: {}
"#;
        let e = endpoints_from(doc).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].name, "listPets");
        assert_eq!(e[0].query, "limit=10");
        assert_eq!(e[0].headers, "X-Trace: abc");
        assert_eq!(e[1].name, "Add a pet");
        assert_eq!(e[1].body_kind, "json");
        let body: Value = serde_json::from_str(&e[1].body).unwrap();
        assert_eq!(body, serde_json::json!({"name": "Rex", "age": 0}));
        assert_eq!(e[2].name, "DELETE /pets/{id}");
        assert_eq!(e[2].path, "/pets/{id}");
    }

    #[test]
    fn imports_the_sites_own_yaml_document() {
        let e = endpoints_from(include_str!("../../static/openapi.yaml")).unwrap();
        assert!(e.len() >= 15, "{}", e.len());
        let send = e
            .iter()
            .find(|e| e.path == "/repos/{name}/endpoints/{id}/send")
            .unwrap();
        assert_eq!(send.method, "POST");
        assert_eq!(send.headers, "X-CSRF-Token: ");
    }

    #[test]
    fn refuses_what_is_not_openapi_3() {
        assert_eq!(
            endpoints_from(r#"{"swagger": "2.0", "paths": {}}"#),
            Err(ImportError::NotOpenApi3)
        );
        assert_eq!(
            endpoints_from(r#"{"openapi": "3.1.0", "paths": {}}"#),
            Err(ImportError::NoPaths)
        );
        assert!(matches!(
            endpoints_from("{: ["),
            Err(ImportError::Unreadable(_))
        ));
    }
}
