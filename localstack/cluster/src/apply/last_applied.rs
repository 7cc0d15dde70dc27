//! The client-side apply annotation as server-side apply with kubectl's own field manager treats
//! it (apimachinery `pkg/util/managedfields/internal/lastappliedmanager.go` and
//! `lastappliedupdater.go`), which is what lets `kubectl apply --server-side` take over an object
//! that `kubectl apply` managed.

use crate::meta::Lookup;
use serde_json::Value;

use super::fields::{FieldSet, fields_of, is_item, value_at};

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The field manager of `kubectl apply --server-side`; only it gets the annotation's help.
pub const KUBECTL: &str = "kubectl";

fn annotation(obj: &Value) -> Option<&str> {
    obj.at("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// lastappliedmanager.go `allowedConflictsFromLastApplied`: the fields of the annotation whose
/// live value is still the one client-side apply set (no longer the same, added or removed since
/// means someone else changed them). None when there is no annotation, it does not parse, or it is
/// of another API version.
pub(super) fn fields_set_by_client_side_apply(live: &Value, api_version: &str) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let unchanged = |p: &Vec<String>| {
        if is_item(p) {
            value_at(live, p).is_some()
        } else {
            value_at(live, p).is_some() && value_at(live, p) == value_at(&last, p)
        }
    };
    Some(
        fields_of(&last, false)
            .into_iter()
            .filter(|p| unchanged(p))
            .collect(),
    )
}

/// lastappliedupdater.go: after kubectl's server-side apply, an annotation the object already has
/// becomes the applied configuration (without the annotation itself), encoded as client-go's
/// `runtime.Encode(unstructured.UnstructuredJSONScheme, ...)` does, so that a later client-side
/// apply computes its three-way merge from what was applied last.
pub(super) fn sync_annotation(result: &mut Value, config: &Value) {
    if annotation(result).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    let encoded = go_json(&applied);
    if let Some(annotations) = result
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.insert(LAST_APPLIED.into(), Value::String(encoded));
    }
}

/// JSON as Go's `json.Encoder` writes it: map keys sorted (encoding/json sorts them; serde_json's
/// map keeps insertion order when any crate of the build enables its `preserve_order` feature, so
/// the keys are sorted here), HTML characters and the line/paragraph separators escaped, and a
/// trailing newline.
fn go_json(v: &Value) -> String {
    let mut out = String::new();
    for c in sorted(v).to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

/// `v` with every object's keys in sorted order, whatever order its map keeps.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_annotation_is_encoded_like_client_go() {
        assert_eq!(
            go_json(&json!({"b": "<&>", "a": 1})),
            "{\"a\":1,\"b\":\"\\u003c\\u0026\\u003e\"}\n"
        );
    }

    #[test]
    fn only_fields_still_as_client_side_apply_left_them_are_its_own() {
        let last = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1", "b": "2", "gone": "x"}})
        .to_string();
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {LAST_APPLIED: last}},
            "data": {"a": "1", "b": "changed", "new": "y"}});
        let fields = fields_set_by_client_side_apply(&live, "v1").unwrap();
        assert_eq!(
            fields,
            [vec!["f:data".to_string(), "f:a".to_string()]].into()
        );
        assert!(fields_set_by_client_side_apply(&live, "v2").is_none());
    }
}
