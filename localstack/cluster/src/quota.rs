//! ResourceQuota and LimitRange: quantities, validation, usage, and the admission step that runs
//! when an object is created (LimitRange defaults and bounds for pods, then quota checks).
//!
//! Enforced quota resources: `pods`, `services`, `configmaps`, `secrets`, `resourcequotas`,
//! `count/<resource>[.<group>]`, and the compute resources `requests.cpu`/`cpu`,
//! `requests.memory`/`memory`, `limits.cpu`, `limits.memory` summed over the containers of
//! pods that are neither terminating nor finished. Init containers, scopes and scope selectors,
//! extended resources and storage are not modelled. The check and the write are not one
//! transaction, so racing API clients can overshoot a quota by the objects created in between.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, Cause};
use crate::meta;
use crate::registry::Registry;
use crate::resources::{ResourceType, known};

/// A quantity in thousandths of its unit (`100m` → 100, `1Ki` → 1_024_000), rounded up.
pub fn parse_quantity(s: &str) -> Option<i128> {
    let s = s.trim();
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // Value as mantissa × 10^exp10 × 2^exp2, in thousandths.
    let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let mut exp10: i32 = 3 - fraction.len() as i32;
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        other => {
            let exp = other.strip_prefix(['e', 'E'])?;
            exp10 += exp.parse::<i32>().ok()?;
        }
    }
    let mut value = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    if exp10 >= 0 {
        value = value.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else {
        let div = 10i128.checked_pow(exp10.unsigned_abs())?;
        value = (value + div - 1) / div;
    }
    Some(if negative { -value } else { value })
}

/// The canonical text of a quantity for messages and status: `500m`, `2`, `128Mi`, `1500k`.
pub fn format_quantity(resource: &str, milli: i128) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if resource.ends_with("memory") && units != 0 {
        for (suffix, shift) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            if units % (1i128 << shift) == 0 {
                return format!("{}{suffix}", units >> shift);
            }
        }
    }
    units.to_string()
}

fn quantity_causes(list: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    for (name, v) in list.and_then(Value::as_object).into_iter().flatten() {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        match parse_quantity(&text) {
            None => causes.push(Cause::invalid(
                format!("{field}[{name}]"),
                v,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            )),
            Some(q) if q < 0 => causes.push(Cause::invalid(
                format!("{field}[{name}]"),
                v,
                "must be greater than or equal to 0",
            )),
            Some(_) => {}
        }
    }
}

pub fn validate_resource_quota(obj: &Value, causes: &mut Vec<Cause>) {
    quantity_causes(obj.pointer("/spec/hard"), "spec.hard", causes);
}

pub fn validate_limit_range(obj: &Value, causes: &mut Vec<Cause>) {
    let items = obj.pointer("/spec/limits").and_then(Value::as_array);
    if items.is_none() {
        causes.push(Cause::required("spec.limits"));
    }
    for (i, item) in items.into_iter().flatten().enumerate() {
        let at = format!("spec.limits[{i}]");
        match item.get("type").and_then(Value::as_str) {
            Some("Container" | "Pod" | "PersistentVolumeClaim") => {}
            None => causes.push(Cause::required(format!("{at}.type"))),
            Some(_) => causes.push(Cause::unsupported(
                format!("{at}.type"),
                &item["type"],
                &["Container", "Pod", "PersistentVolumeClaim"],
            )),
        }
        for part in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            quantity_causes(item.get(part), &format!("{at}.{part}"), causes);
        }
        let q = |part: &str, res: &str| {
            item.get(part)
                .and_then(|m| m.get(res))
                .and_then(quantity_text)
                .and_then(|t| parse_quantity(&t))
        };
        for res in item
            .get("max")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            if let (Some(min), Some(max)) = (q("min", res), q("max", res))
                && min > max
            {
                causes.push(Cause::invalid(
                    format!("{at}.min[{res}]"),
                    &json!(format_quantity(res, min)),
                    format!(
                        "min value {} is greater than max value {}",
                        format_quantity(res, min),
                        format_quantity(res, max)
                    ),
                ));
            }
            if let (Some(d), Some(max)) = (q("default", res), q("max", res))
                && d > max
            {
                causes.push(Cause::invalid(
                    format!("{at}.default[{res}]"),
                    &json!(format_quantity(res, d)),
                    format!(
                        "default value {} is greater than max value {}",
                        format_quantity(res, d),
                        format_quantity(res, max)
                    ),
                ));
            }
        }
    }
}

fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// `requests`/`limits` amount of one resource summed over a pod's containers, and the names of
/// containers that do not set it.
fn pod_amount(pod: &Value, part: &str, resource: &str) -> (i128, Vec<String>) {
    let mut total = 0;
    let mut missing = Vec::new();
    for c in containers(pod) {
        match c
            .pointer(&format!("/resources/{part}/{resource}"))
            .and_then(quantity_text)
            .and_then(|t| parse_quantity(&t))
        {
            Some(q) => total += q,
            None => missing.push(
                c.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
        }
    }
    (total, missing)
}

/// The `(requests|limits, cpu|memory)` a compute quota resource name stands for.
fn compute_resource(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "cpu" | "requests.cpu" => Some(("requests", "cpu")),
        "memory" | "requests.memory" => Some(("requests", "memory")),
        "limits.cpu" => Some(("limits", "cpu")),
        "limits.memory" => Some(("limits", "memory")),
        _ => None,
    }
}

/// Whether an object-count quota resource counts objects of `rt`.
fn counts(name: &str, rt: &ResourceType) -> bool {
    let qualified = if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    };
    name.strip_prefix("count/") == Some(qualified.as_str())
        || (rt.group.is_empty()
            && name == rt.plural
            && matches!(
                rt.plural,
                "pods" | "services" | "configmaps" | "secrets" | "resourcequotas"
            ))
}

fn charged_pod(pod: &Value) -> bool {
    !meta::is_deleting(pod)
        && !matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        )
}

/// Current usage of one quota resource in a namespace; None for resources the simulator does not track.
pub fn usage(registry: &Registry, ns: &str, name: &str) -> Option<i128> {
    if let Some((part, resource)) = compute_resource(name) {
        return Some(
            registry
                .select(known::pods(), Some(ns), None)
                .iter()
                .filter(|p| charged_pod(p))
                .map(|p| pod_amount(p, part, resource).0)
                .sum(),
        );
    }
    let rt = crate::resources::RESOURCES
        .iter()
        .find(|rt| rt.namespaced && counts(name, rt))?;
    let objects = registry.select(rt, Some(ns), None);
    let n = if rt.is("", "pods") {
        objects.iter().filter(|p| charged_pod(p)).count()
    } else {
        objects.len()
    };
    Some(n as i128 * 1000)
}

/// `status` of a ResourceQuota: its hard limits and what the namespace uses of each.
pub fn quota_status(registry: &Registry, quota: &Value) -> Value {
    let hard = quota
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut used = Map::new();
    for name in hard.keys() {
        if let Some(u) = usage(registry, meta::namespace(quota), name) {
            used.insert(name.clone(), json!(format_quantity(name, u)));
        }
    }
    json!({"hard": hard, "used": used})
}

/// LimitRange defaults for a new pod's containers (`default` → limits, `defaultRequest` →
/// requests), then the per-container `min`/`max` bounds.
fn limit_ranges(registry: &Registry, ns: &str, pod: &mut Value) -> Result<(), String> {
    let ranges = registry.select(known::limitranges(), Some(ns), None);
    let items: Vec<Value> = ranges
        .iter()
        .flat_map(|r| {
            r.pointer("/spec/limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|i| i.get("type").and_then(Value::as_str) == Some("Container"))
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let Some(list) = pod
        .pointer_mut("/spec/containers")
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    for c in list.iter_mut() {
        for item in &items {
            for (from, to) in [("default", "limits"), ("defaultRequest", "requests")] {
                for (res, q) in item
                    .get(from)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let Some(root) = c.as_object_mut() else {
                        continue;
                    };
                    let resources = meta::object_entry(root, "resources");
                    let target = meta::object_entry(resources, to);
                    target.entry(res.clone()).or_insert_with(|| q.clone());
                }
            }
        }
    }
    for c in list.iter() {
        for item in &items {
            let bound = |part: &str, res: &str| {
                item.get(part)
                    .and_then(|m| m.get(res))
                    .and_then(quantity_text)
                    .and_then(|t| parse_quantity(&t))
            };
            let amount = |part: &str, res: &str| {
                c.pointer(&format!("/resources/{part}/{res}"))
                    .and_then(quantity_text)
                    .and_then(|t| parse_quantity(&t))
            };
            for res in ["cpu", "memory"] {
                if let Some(max) = bound("max", res) {
                    match amount("limits", res) {
                        Some(l) if l > max => {
                            return Err(format!(
                                "maximum {res} usage per Container is {}, but limit is {}",
                                format_quantity(res, max),
                                format_quantity(res, l)
                            ));
                        }
                        None => {
                            return Err(format!(
                                "maximum {res} usage per Container is {}.  No limit is specified",
                                format_quantity(res, max)
                            ));
                        }
                        _ => {}
                    }
                }
                if let Some(min) = bound("min", res) {
                    match amount("requests", res) {
                        Some(r) if r < min => {
                            return Err(format!(
                                "minimum {res} usage per Container is {}, but request is {}",
                                format_quantity(res, min),
                                format_quantity(res, r)
                            ));
                        }
                        None => {
                            return Err(format!(
                                "minimum {res} usage per Container is {}.  No request is specified",
                                format_quantity(res, min)
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// One quota resource a create would push over its limit.
struct Exceeded {
    resource: String,
    requested: i128,
    used: i128,
    limit: i128,
}

/// Admission for a create: LimitRange for pods, then every ResourceQuota of the namespace.
/// Fails with 403 Forbidden and the API server's wording.
pub fn admit_create(
    registry: &Registry,
    rt: &ResourceType,
    ns: &str,
    obj: &mut Value,
) -> ApiResult<()> {
    if !rt.namespaced {
        return Ok(());
    }
    let name = meta::name(obj).to_string();
    let forbidden =
        |why: String| ApiError::forbidden(format!("{} {name:?} is forbidden: {why}", rt.plural));
    if rt.is("", "pods") {
        limit_ranges(registry, ns, obj).map_err(&forbidden)?;
    }
    let is_pod = rt.is("", "pods");
    for quota in registry.select(known::resourcequotas(), Some(ns), None) {
        let hard = quota
            .pointer("/spec/hard")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut missing: Vec<String> = Vec::new();
        let mut exceeded: Vec<Exceeded> = Vec::new();
        for (name, limit) in &hard {
            let requested = if let (true, Some((part, resource))) = (is_pod, compute_resource(name))
            {
                let (amount, unset) = pod_amount(obj, part, resource);
                if !unset.is_empty() {
                    missing.push(format!("{part}.{resource} for: {}", unset.join(",")));
                    continue;
                }
                amount
            } else if counts(name, rt) {
                1000
            } else {
                continue;
            };
            let Some(limit) = quantity_text(limit).and_then(|t| parse_quantity(&t)) else {
                continue;
            };
            let used = usage(registry, ns, name).unwrap_or(0);
            if used + requested > limit {
                exceeded.push(Exceeded {
                    resource: name.clone(),
                    requested,
                    used,
                    limit,
                });
            }
        }
        let quota_name = meta::name(&quota);
        if !missing.is_empty() {
            missing.sort();
            return Err(forbidden(format!(
                "failed quota: {quota_name}: must specify {}",
                missing.join("; ")
            )));
        }
        if !exceeded.is_empty() {
            let list = |pick: fn(&Exceeded) -> i128| {
                exceeded
                    .iter()
                    .map(|e| format!("{}={}", e.resource, format_quantity(&e.resource, pick(e))))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            return Err(forbidden(format!(
                "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                list(|e| e.requested),
                list(|e| e.used),
                list(|e| e.limit)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(100));
        assert_eq!(parse_quantity("2"), Some(2000));
        assert_eq!(parse_quantity("0.5"), Some(500));
        assert_eq!(parse_quantity("1Ki"), Some(1_024_000));
        assert_eq!(parse_quantity("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(parse_quantity("1e3"), Some(1_000_000));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Qi"), None);
        assert_eq!(format_quantity("requests.cpu", 500), "500m");
        assert_eq!(format_quantity("cpu", 2000), "2");
        assert_eq!(
            format_quantity("limits.memory", 64 * 1024 * 1024 * 1000),
            "64Mi"
        );
        assert_eq!(format_quantity("pods", 3000), "3");
    }

    #[test]
    fn limit_range_rules() {
        let lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}, "default": {"memory": "lots"}}, {"type": "Node"}]}});
        let mut causes = Vec::new();
        validate_limit_range(&lr, &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.limits[0].default[memory]",
                "spec.limits[0].min[cpu]",
                "spec.limits[1].type"
            ]
        );
    }
}
