//! Rules for ResourceQuota and LimitRange objects: well-formed quantities and consistent bounds.

use crate::meta::Lookup;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::quantity::{format_quantity, parse_value};

fn quantity_causes(list: Option<&Value>, field: &str, causes: &mut Vec<Cause>) {
    for (name, v) in list.and_then(Value::as_object).into_iter().flatten() {
        match parse_value(v) {
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

pub(super) fn validate_resource_quota(obj: &Value, causes: &mut Vec<Cause>) {
    quantity_causes(obj.at("/spec/hard"), "spec.hard", causes);
}

pub(super) fn validate_limit_range(obj: &Value, causes: &mut Vec<Cause>) {
    let items = obj.at("/spec/limits").and_then(Value::as_array);
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
                .and_then(parse_value)
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

#[cfg(test)]
mod tests {
    use super::*;

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
