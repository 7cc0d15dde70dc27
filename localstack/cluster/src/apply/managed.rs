//! `metadata.managedFields` as the API server reads and writes it (apimachinery
//! `pkg/util/managedfields/internal/managedfields.go` and `fieldmanager.go`): the checks an entry
//! must pass, the order entries are stored in, and which entries a write starts from — the live
//! object's, or the ones the request itself sets.

use crate::meta::Lookup;
use serde_json::{Map, Value, json};

use super::fields::{FieldSet, decode_fields_v1, to_fields_v1};
use crate::meta;

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    /// RFC 3339 in UTC, or empty when the entry has no time.
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// Whether both entries name the same manager (managedfields.go `BuildManagerIdentifier`: the
    /// manager, operation and subresource, and for updates the API version; an applier is one
    /// manager whatever version it applied).
    fn same_manager(&self, other: &ManagedEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == "Apply" || self.api_version == other.api_version)
    }
}

/// The entries of a stored object; undecodable ones count as none (fieldmanager.go
/// `emptyManagedFieldsOnErr`).
pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    match obj.at("/metadata/managedFields") {
        Some(Value::Array(list)) => decode(list).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Writes the entries that own something, in the order of managedfields.go
/// `sortEncodedManagedFields` (operation, time, manager, API version, subresource); none at all
/// removes the field.
pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let mut kept: Vec<&ManagedEntry> = entries.iter().filter(|e| !e.fields.is_empty()).collect();
    kept.sort_by(|p, q| {
        let seconds = |e: &ManagedEntry| parse_time(&e.time).unwrap_or(0);
        (p.operation.as_str(), seconds(p), p.manager.as_str())
            .cmp(&(q.operation.as_str(), seconds(q), q.manager.as_str()))
            .then_with(|| p.api_version.cmp(&q.api_version))
            .then_with(|| p.subresource.cmp(&q.subresource))
    });
    let list: Vec<Value> = kept
        .into_iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.time.is_empty() {
                v["time"] = json!(e.time);
            }
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let metadata = meta::metadata_mut(obj);
    if list.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}

/// The entries a write starts its bookkeeping from (fieldmanager.go `decodeLiveOrNew`): a request
/// to a subresource cannot set managedFields; a request that sets them to `[]` (or to one empty
/// entry) resets them; a request whose managedFields decode to at least one entry replaces them;
/// otherwise (none sent, or undecodable) the live object's stay.
pub fn decode_live_or_new(
    live: Option<&Value>,
    new: &Value,
    to_subresource: bool,
) -> Vec<ManagedEntry> {
    let live_entries = || live.map(read_managed).unwrap_or_default();
    if to_subresource {
        return live_entries();
    }
    match new.at("/metadata/managedFields") {
        Some(Value::Array(list)) if is_reset(list) => Vec::new(),
        Some(Value::Array(list)) => match decode(list) {
            Ok(entries) if !entries.is_empty() => entries,
            _ => live_entries(),
        },
        _ => live_entries(),
    }
}

/// fieldmanager.go `isResetManagedFields`: an empty list, or a list of one empty entry.
fn is_reset(list: &[Value]) -> bool {
    match list {
        [] => true,
        [only] => match only {
            Value::Null => true,
            Value::Object(m) => m.iter().all(|(k, v)| match k.as_str() {
                "manager" | "operation" | "apiVersion" | "fieldsType" | "subresource" => {
                    v.is_null() || v == ""
                }
                "time" | "fieldsV1" => v.is_null(),
                // Not a field of ManagedFieldsEntry: decoding drops it.
                _ => true,
            }),
            _ => false,
        },
        _ => false,
    }
}

/// managedfields.go `DecodeManagedFields`: each entry needs operation `Apply` or `Update`, an
/// API version, fieldsType `FieldsV1` and a readable `fieldsV1`; a later entry of the same manager
/// replaces an earlier one.
fn decode(list: &[Value]) -> Result<Vec<ManagedEntry>, String> {
    let mut entries: Vec<ManagedEntry> = Vec::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let text = |key: &str| raw.get(key).and_then(Value::as_str).unwrap_or_default();
        let operation = text("operation");
        if operation != "Apply" && operation != "Update" {
            return Err("operation must be `Apply` or `Update`".into());
        }
        if text("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".into());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {other:?} in managed fields entry {i}"
                ));
            }
        }
        let fields = match raw.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => decode_fields_v1(v)
                .map_err(|e| format!("error decoding versioned set of entry {i}: {e}"))?,
        };
        let entry = ManagedEntry {
            manager: text("manager").to_string(),
            operation: operation.to_string(),
            api_version: text("apiVersion").to_string(),
            time: parse_time(text("time"))
                .map(meta::format_rfc3339)
                .unwrap_or_default(),
            subresource: Some(text("subresource"))
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            fields,
        };
        match entries.iter_mut().find(|e| e.same_manager(&entry)) {
            Some(earlier) => *earlier = entry,
            None => entries.push(entry),
        }
    }
    Ok(entries)
}

/// Whether a request's `metadata.managedFields` decodes into `[]metav1.ManagedFieldsEntry` at all
/// (the strings are strings, `time` is RFC 3339); the API server refuses a body that does not.
pub fn check_shape(obj: &Value) -> Result<(), String> {
    let field = "metadata.managedFields";
    let list = match obj.at("/metadata/managedFields") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field ObjectMeta.{field} of type []v1.ManagedFieldsEntry",
                json_type(other)
            ));
        }
    };
    for item in list {
        let entry: &Map<String, Value> = match item {
            Value::Null => continue,
            Value::Object(m) => m,
            other => {
                return Err(format!(
                    "json: cannot unmarshal {} into Go struct field ObjectMeta.{field} of type v1.ManagedFieldsEntry",
                    json_type(other)
                ));
            }
        };
        for key in [
            "manager",
            "operation",
            "apiVersion",
            "fieldsType",
            "subresource",
        ] {
            match entry.get(key) {
                None | Some(Value::Null | Value::String(_)) => {}
                Some(other) => {
                    return Err(format!(
                        "json: cannot unmarshal {} into Go struct field ManagedFieldsEntry.{field}.{key} of type string",
                        json_type(other)
                    ));
                }
            }
        }
        match entry.get("time") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if parse_time(t).is_some() => {}
            Some(other) => {
                return Err(format!(
                    "{field}.time: {other} is not an RFC 3339 time (2006-01-02T15:04:05Z07:00)"
                ));
            }
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Seconds since the epoch of an RFC 3339 time (`metav1.Time` parses `time.RFC3339`: an optional
/// fraction, then `Z` or a `±hh:mm` offset).
fn parse_time(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !shape {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        rest = &fraction[end..];
    }
    let local = i64::try_from(meta::parse_rfc3339(&s[..19])?).ok()?;
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
        {
            let hours = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'+' { seconds } else { -seconds }
        }
        _ => return None,
    };
    u64::try_from(local - offset).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_metav1_time_does() {
        assert_eq!(parse_time("1970-01-01T00:00:10Z"), Some(10));
        assert_eq!(parse_time("1970-01-01T01:00:10.5+01:00"), Some(10));
        assert_eq!(parse_time("1970-01-01T00:00:10"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    /// fieldmanager.go isResetManagedFields.
    #[test]
    fn an_empty_list_or_one_empty_entry_resets() {
        assert!(is_reset(&[]));
        assert!(is_reset(&[json!({})]));
        assert!(is_reset(&[json!({"manager": "", "fieldsV1": null})]));
        assert!(!is_reset(&[json!({"fieldsV1": {}})]));
        assert!(!is_reset(&[json!({}), json!({})]));
    }

    #[test]
    fn entries_are_stored_appliers_first_then_oldest_first() {
        let entry = |manager: &str, operation: &str, time: &str| ManagedEntry {
            manager: manager.into(),
            operation: operation.into(),
            api_version: "v1".into(),
            time: time.into(),
            subresource: None,
            fields: [vec!["f:data".to_string(), format!("f:{manager}")]].into(),
        };
        let mut obj = json!({"metadata": {}});
        write_managed(
            &mut obj,
            &[
                entry("c", "Update", "2024-01-01T00:00:00Z"),
                entry("b", "Apply", "2024-01-02T00:00:00Z"),
                entry("a", "Update", "2024-01-03T00:00:00Z"),
                entry("d", "Apply", "2024-01-01T00:00:00Z"),
            ],
        );
        let order: Vec<&str> = obj["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["d", "b", "c", "a"]);
    }
}
