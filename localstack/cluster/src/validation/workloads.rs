//! Rules for pods and for the workloads that stamp pods out of a template.

use crate::meta::Lookup;
use serde_json::Value;

use super::formats::{LABEL_MSG, is_dns1123_label, port_in_range, validate_labels};
use crate::error::Cause;
use crate::selectors::LabelSelector;

pub(super) fn validate_pod_spec(spec: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
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
    let grace = spec
        .and_then(|s| s.get("terminationGracePeriodSeconds"))
        .and_then(Value::as_i64);
    for (i, c) in containers.iter().enumerate() {
        for hook in ["postStart", "preStop"] {
            if let Some(handler) = c.at(&format!("/lifecycle/{hook}")) {
                let at = format!("{field}.containers[{i}].lifecycle.{hook}");
                validate_handler(handler, grace, &at, causes);
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

/// pkg/apis/core/validation/validation.go validateHandler (Kubernetes 1.34): exactly one handler
/// type; a `sleep` must fit in the grace period (validateSleepAction, with
/// PodLifecycleSleepActionAllowZero GA: zero allowed).
fn validate_handler(handler: &Value, grace: Option<i64>, at: &str, causes: &mut Vec<Cause>) {
    let mut handlers = 0;
    for kind in ["exec", "httpGet", "tcpSocket"] {
        if handler.get(kind).is_some_and(|h| !h.is_null()) {
            handlers += 1;
        }
    }
    if let Some(sleep) = handler.get("sleep").filter(|s| !s.is_null()) {
        if handlers > 0 {
            causes.push(Cause {
                field: format!("{at}.sleep"),
                reason: "FieldValueForbidden",
                message: "Forbidden: may not specify more than 1 handler type".into(),
            });
        } else {
            handlers += 1;
            let seconds = sleep.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            if let Some(grace) = grace
                && (seconds < 0 || seconds > grace)
            {
                causes.push(Cause::invalid(
                    format!("{at}.sleep"),
                    &Value::from(seconds),
                    format!(
                        "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                    ),
                ));
            }
        }
    }
    if handlers == 0 {
        causes.push(Cause {
            field: at.to_string(),
            reason: "FieldValueRequired",
            message: "Required value: must specify a handler type".into(),
        });
    }
}

pub(super) fn validate_workload(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    let selector = obj.at("/spec/selector");
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
                    .at("/spec/template/metadata/labels")
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
    if let (Some(old_sel), Some(new_sel)) = (old.and_then(|o| o.at("/spec/selector")), selector)
        && old_sel != new_sel
    {
        causes.push(Cause::invalid(
            "spec.selector",
            new_sel,
            "field is immutable",
        ));
    }
    if let Some(r) = obj.at("/spec/replicas")
        && r.as_i64().is_none_or(|r| r < 0)
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    validate_labels(
        obj.at("/spec/template/metadata/labels"),
        "spec.template.metadata.labels",
        causes,
    );
    validate_pod_spec(obj.at("/spec/template/spec"), "spec.template.spec", causes);
    if let Some(t) = obj.at("/spec/strategy/type") {
        let allowed = ["Recreate", "RollingUpdate"];
        if !t.as_str().is_some_and(|s| allowed.contains(&s)) {
            causes.push(Cause::unsupported("spec.strategy.type", t, &allowed));
        }
    }
}
