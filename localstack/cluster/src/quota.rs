//! Admission for creates, ResourceQuota usage and status: LimitRange defaults and bounds for new
//! pods, then the quota checks. The object rules of both kinds live in [`crate::validation`].
//!
//! Enforced quota resources: `pods`, `services`, `configmaps`, `secrets`, `resourcequotas`,
//! `count/<resource>[.<group>]`, and the compute resources `requests.cpu`/`cpu`,
//! `requests.memory`/`memory`, `limits.cpu`, `limits.memory` summed over the containers of
//! pods that are neither terminating nor finished. Init containers, scopes and scope selectors,
//! extended resources and storage are not modelled. The check and the write are not one
//! transaction, so racing API clients can overshoot a quota by the objects created in between.

use crate::meta::Lookup;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::quantity::{format_quantity, parse_value};
use crate::resources::{RESOURCES, ResourceType, known};

/// What admission and usage read of the cluster: the stored objects of one type in one namespace.
/// The registry provides it; admission runs inside the registry's create.
pub trait NamespaceObjects {
    fn objects(&self, rt: &ResourceType, ns: &str) -> Vec<Value>;
}

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.at("/spec/containers")
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
            .at(&format!("/resources/{part}/{resource}"))
            .and_then(parse_value)
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
    name.strip_prefix("count/") == Some(rt.qualified().as_str())
        || (rt.group.is_empty()
            && name == rt.plural
            && matches!(
                rt.plural,
                "pods" | "services" | "configmaps" | "secrets" | "resourcequotas"
            ))
}

fn charged_pod(pod: &Value) -> bool {
    !meta::is_deleting(pod) && !meta::is_terminal_pod(pod)
}

/// Current usage of one quota resource in a namespace; None for resources the simulator does not track.
pub fn usage(cluster: &dyn NamespaceObjects, ns: &str, name: &str) -> Option<i128> {
    if let Some((part, resource)) = compute_resource(name) {
        return Some(
            cluster
                .objects(known::pods(), ns)
                .iter()
                .filter(|p| charged_pod(p))
                .map(|p| pod_amount(p, part, resource).0)
                .sum(),
        );
    }
    let rt = RESOURCES
        .iter()
        .find(|rt| rt.namespaced && counts(name, rt))?;
    let objects = cluster.objects(rt, ns);
    let n = if rt.is("", "pods") {
        objects.iter().filter(|p| charged_pod(p)).count()
    } else {
        objects.len()
    };
    Some(n as i128 * 1000)
}

/// `status` of a ResourceQuota: its hard limits and what the namespace uses of each.
pub fn quota_status(cluster: &dyn NamespaceObjects, quota: &Value) -> Value {
    let hard = quota
        .at("/spec/hard")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut used = Map::new();
    for name in hard.keys() {
        if let Some(u) = usage(cluster, meta::namespace(quota), name) {
            used.insert(name.clone(), json!(format_quantity(name, u)));
        }
    }
    json!({"hard": hard, "used": used})
}

/// LimitRange defaults for a new pod's containers (`default` → limits, `defaultRequest` →
/// requests), then the per-container `min`/`max` bounds.
fn limit_ranges(cluster: &dyn NamespaceObjects, ns: &str, pod: &mut Value) -> Result<(), String> {
    let ranges = cluster.objects(known::limitranges(), ns);
    let items: Vec<Value> = ranges
        .iter()
        .flat_map(|r| {
            r.at("/spec/limits")
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
                    .and_then(parse_value)
            };
            let amount = |part: &str, res: &str| {
                c.at(&format!("/resources/{part}/{res}"))
                    .and_then(parse_value)
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
    cluster: &dyn NamespaceObjects,
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
        limit_ranges(cluster, ns, obj).map_err(&forbidden)?;
    }
    let is_pod = rt.is("", "pods");
    for quota in cluster.objects(known::resourcequotas(), ns) {
        let hard = quota
            .at("/spec/hard")
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
            let Some(limit) = parse_value(limit) else {
                continue;
            };
            let used = usage(cluster, ns, name).unwrap_or(0);
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
