//! Validation rules of the real API server for the kinds the simulator serves (a subset per kind).

use serde_json::Value;

use crate::error::Cause;
use crate::resources::ResourceType;
use crate::selectors::LabelSelector;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_qualified_name_part(s: &str) -> bool {
    let edge = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(edge)
        && s.ends_with(edge)
}

/// Label (and annotation) keys: optional DNS subdomain prefix, `/`, qualified name.
fn label_key_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Some(format!("prefix part {SUBDOMAIN_MSG}"));
    }
    if !is_qualified_name_part(name) {
        return Some(QUALIFIED_MSG.to_string());
    }
    None
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty() || is_qualified_name_part(v)
}

/// Which naming rule a resource type uses for `metadata.name`.
fn name_error(rt: &ResourceType, name: &str) -> Option<&'static str> {
    match (rt.group, rt.plural) {
        ("", "namespaces") => (!is_dns1123_label(name)).then_some(LABEL_MSG),
        ("", "services") => (!is_dns1035_label(name)).then_some(DNS1035_MSG),
        ("rbac.authorization.k8s.io", _) => {
            (name.contains('/') || name.contains('%') || name == "." || name == "..")
                .then_some("may not contain '/' or '%'")
        }
        _ => (!is_dns1123_subdomain(name)).then_some(SUBDOMAIN_MSG),
    }
}

fn validate_metadata(rt: &ResourceType, obj: &Value, causes: &mut Vec<Cause>) {
    let name = crate::meta::name(obj);
    if name.is_empty() {
        causes.push(Cause {
            field: "metadata.name".into(),
            reason: "FieldValueRequired",
            message: "Required value: name or generateName is required".into(),
        });
    } else if let Some(msg) = name_error(rt, name) {
        causes.push(Cause::invalid(
            "metadata.name",
            &Value::String(name.into()),
            msg,
        ));
    }
    validate_labels(obj.pointer("/metadata/labels"), "metadata.labels", causes);
}

fn validate_labels(labels: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        if let Some(msg) = label_key_error(k) {
            causes.push(Cause::invalid(field, &Value::String(k.clone()), msg));
        }
        let value = v.as_str().unwrap_or_default();
        if !label_value_ok(value) {
            causes.push(Cause::invalid(field, &Value::String(value.into()), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
        }
    }
}

fn port_in_range(v: &Value) -> bool {
    v.as_i64().is_some_and(|p| (1..=65535).contains(&p))
}

fn validate_pod_spec(spec: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(Cause::required(format!("{field}.containers")));
        return;
    };
    for (i, c) in containers.iter().enumerate() {
        let at = format!("{field}.containers[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{at}.name"))),
            Some(n) if !is_dns1123_label(n) => causes.push(Cause::invalid(
                format!("{at}.name"),
                &Value::String(n.into()),
                LABEL_MSG,
            )),
            Some(_) => {}
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|s| s.trim().is_empty())
        {
            causes.push(Cause::required(format!("{at}.image")));
        }
        for (j, p) in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            match p.get("containerPort") {
                None => causes.push(Cause::required(format!("{at}.ports[{j}].containerPort"))),
                Some(v) if !port_in_range(v) => causes.push(Cause::invalid(
                    format!("{at}.ports[{j}].containerPort"),
                    v,
                    "must be between 1 and 65535, inclusive",
                )),
                Some(_) => {}
            }
        }
    }
    if let Some(policy) = spec.and_then(|s| s.get("restartPolicy")) {
        let allowed = ["Always", "OnFailure", "Never"];
        if !policy.as_str().is_some_and(|p| allowed.contains(&p)) {
            causes.push(Cause::unsupported(
                format!("{field}.restartPolicy"),
                policy,
                &allowed,
            ));
        }
    }
}

fn validate_workload(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let selector = obj.pointer("/spec/selector");
    match selector {
        None | Some(Value::Null) => causes.push(Cause::required("spec.selector")),
        Some(sel) => match LabelSelector::from_object(sel) {
            Err(e) => causes.push(Cause::invalid("spec.selector", sel, e)),
            Ok(s) if s.is_empty() => causes.push(Cause::invalid(
                "spec.selector",
                sel,
                "empty selector is invalid for deployment",
            )),
            Ok(s) => {
                let template_labels = obj
                    .pointer("/spec/template/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if !s.matches(&template_labels) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &Value::Object(template_labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        },
    }
    if let (Some(old_sel), Some(new_sel)) =
        (old.and_then(|o| o.pointer("/spec/selector")), selector)
        && old_sel != new_sel
    {
        causes.push(Cause::invalid(
            "spec.selector",
            new_sel,
            "field is immutable",
        ));
    }
    if let Some(r) = obj.pointer("/spec/replicas")
        && r.as_i64().is_none_or(|r| r < 0)
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    validate_labels(
        obj.pointer("/spec/template/metadata/labels"),
        "spec.template.metadata.labels",
        causes,
    );
    validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
    if let Some(t) = obj.pointer("/spec/strategy/type") {
        let allowed = ["Recreate", "RollingUpdate"];
        if !t.as_str().is_some_and(|s| allowed.contains(&s)) {
            causes.push(Cause::unsupported("spec.strategy.type", t, &allowed));
        }
    }
}

fn validate_service(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
    let service_type = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if ports.is_none_or(Vec::is_empty)
        && service_type != "ExternalName"
        && obj.pointer("/spec/clusterIP").and_then(Value::as_str) != Some("None")
    {
        causes.push(Cause::required("spec.ports"));
    }
    let multiple = ports.is_some_and(|p| p.len() > 1);
    for (i, p) in ports.into_iter().flatten().enumerate() {
        match p.get("port") {
            None => causes.push(Cause::required(format!("spec.ports[{i}].port"))),
            Some(v) if !port_in_range(v) => causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                v,
                "must be between 1 and 65535, inclusive",
            )),
            Some(_) => {}
        }
        if let Some(t) = p.get("targetPort")
            && t.is_number()
            && !port_in_range(t)
        {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].targetPort"),
                t,
                "must be between 1 and 65535, inclusive",
            ));
        }
        if multiple
            && p.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("spec.ports[{i}].name")));
        }
        if let Some(proto) = p.get("protocol") {
            let allowed = ["SCTP", "TCP", "UDP"];
            if !proto.as_str().is_some_and(|s| allowed.contains(&s)) {
                causes.push(Cause::unsupported(
                    format!("spec.ports[{i}].protocol"),
                    proto,
                    &allowed,
                ));
            }
        }
    }
    let allowed_types = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !allowed_types.contains(&service_type) {
        causes.push(Cause::unsupported(
            "spec.type",
            &Value::String(service_type.into()),
            &allowed_types,
        ));
    }
    if let Some(old_ip) = old.and_then(|o| o.pointer("/spec/clusterIP"))
        && let Some(new_ip) = obj.pointer("/spec/clusterIP")
        && old_ip != new_ip
        && !new_ip.as_str().is_some_and(str::is_empty)
    {
        causes.push(Cause {
            field: "spec.clusterIPs[0]".into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: may not change once set", new_ip),
        });
    }
}

fn validate_ingress(obj: &Value, causes: &mut Vec<Cause>) {
    let rules = obj.pointer("/spec/rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        if let Some(host) = rule.get("host").and_then(Value::as_str) {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if !is_dns1123_subdomain(bare) {
                causes.push(Cause::invalid(
                    format!("spec.rules[{i}].host"),
                    &Value::String(host.into()),
                    SUBDOMAIN_MSG,
                ));
            }
        }
        let paths = rule.pointer("/http/paths").and_then(Value::as_array);
        for (j, path) in paths.into_iter().flatten().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            let p = path.get("path").and_then(Value::as_str).unwrap_or("");
            match path.get("pathType").and_then(Value::as_str) {
                None => causes.push(Cause::required(format!("{at}.pathType"))),
                Some(t @ ("Exact" | "Prefix")) => {
                    if !p.starts_with('/') {
                        causes.push(Cause::invalid(
                            format!("{at}.path"),
                            &Value::String(p.into()),
                            "must be an absolute path",
                        ));
                    }
                    let _ = t;
                }
                Some("ImplementationSpecific") => {
                    if !p.is_empty() && !p.starts_with('/') {
                        causes.push(Cause::invalid(
                            format!("{at}.path"),
                            &Value::String(p.into()),
                            "must be an absolute path",
                        ));
                    }
                }
                Some(other) => causes.push(Cause::unsupported(
                    format!("{at}.pathType"),
                    &Value::String(other.into()),
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            let backend = path.get("backend");
            let svc = backend.and_then(|b| b.get("service"));
            let res = backend.and_then(|b| b.get("resource"));
            if svc.is_none() && res.is_none() {
                causes.push(Cause {
                    field: format!("{at}.backend"),
                    reason: "FieldValueInvalid",
                    message:
                        "Invalid value: \"\": one backend (service or resource) must be specified"
                            .into(),
                });
            }
            if let Some(svc) = svc {
                if svc
                    .get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    causes.push(Cause::required(format!("{at}.backend.service.name")));
                }
                if let Some(n) = svc.pointer("/port/number")
                    && !port_in_range(n)
                {
                    causes.push(Cause::invalid(
                        format!("{at}.backend.service.port.number"),
                        n,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
}

/// All problems with `obj` (and, on update, with the change from `old`); empty when valid.
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_metadata(rt, obj, &mut causes);
    match (rt.group, rt.plural) {
        ("", "pods") => validate_pod_spec(obj.get("spec"), "spec", &mut causes),
        ("apps", "deployments") | ("apps", "replicasets") => {
            validate_workload(obj, old, &mut causes)
        }
        ("", "services") => validate_service(obj, old, &mut causes),
        ("networking.k8s.io", "ingresses") => validate_ingress(obj, &mut causes),
        ("", "resourcequotas") => crate::quota::validate_resource_quota(obj, &mut causes),
        ("", "limitranges") => crate::quota::validate_limit_range(obj, &mut causes),
        ("", "configmaps") | ("", "secrets") => {
            for field in ["data", "binaryData", "stringData"] {
                for key in obj
                    .get(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|m| m.keys())
                {
                    let ok = !key.is_empty()
                        && key.len() <= 253
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                    if !ok {
                        causes.push(Cause::invalid(format!("{field}[{key}]"), &Value::String(key.clone()), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
                    }
                }
            }
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::known;
    use serde_json::json;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("A"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1035_label("1abc"));
        assert!(label_key_error("app.kubernetes.io/name").is_none());
        assert!(label_key_error("-bad").is_some());
    }

    #[test]
    fn deployment_rules() {
        let d = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 70000}]}]}}}});
        let fields: Vec<String> = validate(known::deployments(), &d, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.template.metadata.labels",
                "spec.template.spec.containers[0].image",
                "spec.template.spec.containers[0].ports[0].containerPort"
            ]
        );
    }

    #[test]
    fn ingress_paths() {
        let i = json!({"metadata": {"name": "i"}, "spec": {"rules": [{"http": {"paths": [{"path": "x", "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}, {"path": "/", "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}]}});
        let fields: Vec<String> = validate(known::ingresses(), &i, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.rules[0].http.paths[0].path",
                "spec.rules[0].http.paths[1].pathType"
            ]
        );
    }
}
