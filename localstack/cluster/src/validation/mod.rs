//! Validation rules of the real API server for the kinds the simulator serves (a subset per kind).

mod formats;
mod network;
mod quotas;
mod workloads;

use crate::meta::Lookup;
use serde_json::Value;

use crate::error::Cause;
use crate::resources::ResourceType;
use formats::{DNS1035_MSG, LABEL_MSG, SUBDOMAIN_MSG, validate_labels};
pub use formats::{is_dns1035_label, is_dns1123_label, is_dns1123_subdomain};

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
    validate_labels(obj.at("/metadata/labels"), "metadata.labels", causes);
}

/// All problems with `obj` (and, on update, with the change from `old`); empty when valid.
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    validate_metadata(rt, obj, &mut causes);
    match (rt.group, rt.plural) {
        ("", "pods") => workloads::validate_pod_spec(obj.get("spec"), "spec", &mut causes),
        ("apps", "deployments") | ("apps", "replicasets") => {
            workloads::validate_workload(obj, old, &mut causes)
        }
        ("", "services") => network::validate_service(obj, old, &mut causes),
        ("networking.k8s.io", "ingresses") => network::validate_ingress(obj, &mut causes),
        ("", "resourcequotas") => quotas::validate_resource_quota(obj, &mut causes),
        ("", "limitranges") => quotas::validate_limit_range(obj, &mut causes),
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

    /// validation.go validateSleepAction (1.34): 0..=terminationGracePeriodSeconds.
    #[test]
    fn pre_stop_sleep_must_fit_in_the_grace_period_per_validate_sleep_action() {
        let pod = |sleep: i64| json!({"metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 30, "containers": [{"name": "c", "image": "i", "lifecycle": {"preStop": {"sleep": {"seconds": sleep}}}}]}});
        assert!(validate(known::pods(), &pod(5), None).is_empty());
        assert!(validate(known::pods(), &pod(0), None).is_empty());
        let causes = validate(known::pods(), &pod(31), None);
        assert_eq!(
            format!("{}: {}", causes[0].field, causes[0].message),
            "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 31: must be non-negative and less than terminationGracePeriodSeconds (30)"
        );
        let none = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "lifecycle": {"preStop": {}}}]}});
        assert_eq!(
            validate(known::pods(), &none, None)[0].message,
            "Required value: must specify a handler type"
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
