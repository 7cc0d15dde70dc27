//! Label and field selectors, in both the query-string form and the `LabelSelector` object form.

use crate::meta::Lookup;
use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

/// A conjunction of label requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside a `( ... )` value set.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = |part: &str| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {part:?}: invalid label selector"
            ))
        };
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad(part));
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::DoesNotExist(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, set)) = part.split_once(" notin ") {
                Requirement::NotIn(
                    k.trim().to_string(),
                    parse_set(set).ok_or_else(|| bad(part))?,
                )
            } else if let Some((k, set)) = part.split_once(" in ") {
                Requirement::In(
                    k.trim().to_string(),
                    parse_set(set).ok_or_else(|| bad(part))?,
                )
            } else if part.contains(' ') || part.contains('(') {
                return Err(bad(part));
            } else {
                Requirement::Exists(part.to_string())
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// Builds a selector from a `metav1.LabelSelector` object (`matchLabels` + `matchExpressions`).
    pub fn from_object(selector: &Value) -> Result<Self, String> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                requirements.push(Requirement::Equals(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let req = match e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => {
                        return Err(format!("{other:?} is not a valid label selector operator"));
                    }
                };
                requirements.push(req);
            }
        }
        Ok(Self { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(&crate::meta::labels(obj))
    }
}

/// `fieldSelector`: only equality on the fields the real server indexes for each type.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub fn parse(s: &str, kind: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {part:?}; can't understand {part:?}"
                )));
            };
            let field = field.trim();
            if !supported_field(kind, field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push((field.to_string(), value.trim().to_string(), equal));
        }
        Ok(Self { terms })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(field, value, equal)| {
            let actual = selectable_field(obj, field);
            (actual == value) == *equal
        })
    }
}

/// The value of a selectable field. Events map two of theirs (pkg/registry/core/event/strategy.go
/// ToSelectableFields): `source` is `source.component`, else `reportingController`, and
/// `reportingComponent` is `reportingController` (JSON `reportingComponent`).
fn selectable_field<'a>(obj: &'a Value, field: &str) -> &'a str {
    let at = |pointer: &str| obj.at(pointer).and_then(Value::as_str).unwrap_or("");
    match field {
        "source" if obj.get("involvedObject").is_some() => match at("/source/component") {
            "" => at("/reportingComponent"),
            component => component,
        },
        _ => at(&format!("/{}", field.replace('.', "/"))),
    }
}

/// pkg/registry/core/event/strategy.go ToSelectableFields: the Event fields the server indexes.
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

fn supported_field(kind: &str, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    match kind {
        "Pod" => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        "Event" => EVENT_FIELDS.contains(&field),
        "Secret" => field == "type",
        "Namespace" => field == "status.phase",
        "Node" => field == "spec.unschedulable",
        "ReplicaSet" => field == "status.replicas",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        for (sel, expected) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("missing notin (x)", true),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                expected,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in web").is_err());
    }

    #[test]
    fn field_selector_rejects_unindexed_fields() {
        assert!(FieldSelector::parse("spec.foo=1", "ConfigMap").is_err());
        let sel =
            FieldSelector::parse("metadata.name=a,metadata.namespace!=b", "ConfigMap").unwrap();
        assert!(sel.matches(&json!({"metadata": {"name": "a", "namespace": "c"}})));
        assert!(!sel.matches(&json!({"metadata": {"name": "a", "namespace": "b"}})));
    }

    /// event/strategy.go ToSelectableFields: `source` falls back to reportingController.
    #[test]
    fn event_field_selectors_follow_to_selectable_fields() {
        let event = json!({"involvedObject": {"kind": "Ingress", "uid": "u"}, "source": {"component": "nginx-ingress-controller"}, "reportingComponent": "nginx-ingress-controller", "reason": "Rejected", "type": "Warning"});
        for sel in [
            "source=nginx-ingress-controller,involvedObject.uid=u",
            "reason=Rejected,type=Warning,involvedObject.kind=Ingress",
            "reportingComponent=nginx-ingress-controller",
        ] {
            assert!(
                FieldSelector::parse(sel, "Event").unwrap().matches(&event),
                "{sel}"
            );
        }
        let reported_only = json!({"involvedObject": {}, "reportingComponent": "kubelet"});
        assert!(
            FieldSelector::parse("source=kubelet", "Event")
                .unwrap()
                .matches(&reported_only)
        );
        assert!(FieldSelector::parse("involvedObject.color=red", "Event").is_err());
    }

    #[test]
    fn object_selector() {
        let sel = LabelSelector::from_object(&json!({"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["a"]}]})).unwrap();
        assert!(sel.matches(&labels(json!({"app": "x", "env": "a"}))));
        assert!(!sel.matches(&labels(json!({"app": "x"}))));
    }
}
