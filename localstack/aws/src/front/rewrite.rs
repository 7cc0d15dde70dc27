//! Rewrites of moto's answers so that resources show the states AWS shows while they are still
//! starting or going away.

/// Replaces `<state_tag>from</state_tag>` with `to` for every object whose id (the nearest
/// `<id_tag>` before it, as in moto's and AWS's XML) is still `pending`.
pub fn rewrite_states(
    xml: &str,
    id_tag: &str,
    state_tag: &str,
    from: &str,
    to: &str,
    mut pending: impl FnMut(&str) -> bool,
) -> String {
    let (id_open, id_close) = (format!("<{id_tag}>"), format!("</{id_tag}>"));
    let state = format!("<{state_tag}>{from}</{state_tag}>");
    let replacement = format!("<{state_tag}>{to}</{state_tag}>");
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    let mut current: Option<String> = None;
    loop {
        let next_id = rest.find(&id_open);
        let next_state = rest.find(&state);
        match (next_id, next_state) {
            (Some(i), s) if s.is_none_or(|s| i < s) => {
                let start = i + id_open.len();
                let end = rest[start..]
                    .find(&id_close)
                    .map(|e| start + e)
                    .unwrap_or(start);
                current = Some(rest[start..end].to_owned());
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            (_, Some(s)) => {
                out.push_str(&rest[..s]);
                let still_pending = current.as_deref().is_some_and(&mut pending);
                out.push_str(if still_pending { &replacement } else { &state });
                rest = &rest[s + state.len()..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Every value of `<tag>` in the document, in order.
pub fn values<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let start = i + open.len();
        let Some(end) = rest[start..].find(&close) else {
            break;
        };
        found.push(&rest[start..start + end]);
        rest = &rest[start + end..];
    }
    found
}

/// An EKS DescribeCluster body with another status; while creating, EKS has no endpoint or CA yet.
pub fn cluster_status(body: &[u8], status: &str) -> Option<Vec<u8>> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let cluster = doc.get_mut("cluster")?.as_object_mut()?;
    cluster.insert(
        "status".into(),
        serde_json::Value::String(status.to_owned()),
    );
    if status == "CREATING" {
        cluster.remove("endpoint");
        cluster.insert("certificateAuthority".into(), serde_json::json!({}));
    }
    serde_json::to_vec(&doc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASG: &str = "<Instances><member><InstanceId>i-1</InstanceId><LifecycleState>InService</LifecycleState></member>\
                       <member><InstanceId>i-2</InstanceId><LifecycleState>InService</LifecycleState></member></Instances>";

    #[test]
    fn only_pending_objects_change_state() {
        let out = rewrite_states(
            ASG,
            "InstanceId",
            "LifecycleState",
            "InService",
            "Pending",
            |id| id == "i-2",
        );
        assert!(
            out.contains("<InstanceId>i-1</InstanceId><LifecycleState>InService</LifecycleState>")
        );
        assert!(
            out.contains("<InstanceId>i-2</InstanceId><LifecycleState>Pending</LifecycleState>")
        );
        assert_eq!(out.len(), ASG.len() - 2);
    }

    #[test]
    fn nested_members_do_not_confuse_the_owner() {
        let lb = "<member><LoadBalancerArn>arn:1</LoadBalancerArn><State><Code>active</Code></State>\
                  <AvailabilityZones><member><ZoneName>a</ZoneName></member></AvailabilityZones></member>";
        let out = rewrite_states(
            lb,
            "LoadBalancerArn",
            "Code",
            "active",
            "provisioning",
            |arn| arn == "arn:1",
        );
        assert!(out.contains("<Code>provisioning</Code>"));
        assert!(out.contains("<ZoneName>a</ZoneName>"));
    }

    #[test]
    fn values_are_listed_in_order() {
        assert_eq!(values(ASG, "InstanceId"), ["i-1", "i-2"]);
    }

    #[test]
    fn a_creating_cluster_has_no_endpoint() {
        let body = br#"{"cluster":{"name":"c","status":"ACTIVE","endpoint":"https://x","certificateAuthority":{"data":"Q0E="}}}"#;
        let out: serde_json::Value =
            serde_json::from_slice(&cluster_status(body, "CREATING").unwrap()).unwrap();
        assert_eq!(out["cluster"]["status"], "CREATING");
        assert!(out["cluster"].get("endpoint").is_none());
    }
}
