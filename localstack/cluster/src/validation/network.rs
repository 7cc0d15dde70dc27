//! Rules for Services and Ingresses.

use crate::meta::Lookup;
use serde_json::Value;

use super::formats::{SUBDOMAIN_MSG, is_dns1123_subdomain, port_in_range};
use crate::error::Cause;

pub(super) fn validate_service(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let ports = obj.at("/spec/ports").and_then(Value::as_array);
    let service_type = obj
        .at("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if ports.is_none_or(Vec::is_empty)
        && service_type != "ExternalName"
        && obj.at("/spec/clusterIP").and_then(Value::as_str) != Some("None")
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
    if let Some(old_ip) = old.and_then(|o| o.at("/spec/clusterIP"))
        && let Some(new_ip) = obj.at("/spec/clusterIP")
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

pub(super) fn validate_ingress(obj: &Value, causes: &mut Vec<Cause>) {
    let rules = obj.at("/spec/rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        if let Some(host) = rule.get("host").and_then(Value::as_str) {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            // pkg/apis/networking/validation/validation.go validateIngressRules: an IP is refused
            // before the DNS-1123 check (an IPv4 address is a valid subdomain otherwise).
            if host.parse::<std::net::IpAddr>().is_ok() {
                causes.push(Cause::invalid(
                    format!("spec.rules[{i}].host"),
                    &Value::String(host.into()),
                    "must be a DNS name, not an IP address",
                ));
            } else if !is_dns1123_subdomain(bare) {
                causes.push(Cause::invalid(
                    format!("spec.rules[{i}].host"),
                    &Value::String(host.into()),
                    SUBDOMAIN_MSG,
                ));
            }
        }
        let paths = rule.at("/http/paths").and_then(Value::as_array);
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
                if let Some(n) = svc.at("/port/number")
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
