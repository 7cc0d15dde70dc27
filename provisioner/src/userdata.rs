//! Worker node user data for AL2023: a MIME multi-part document whose `application/node.eks.aws`
//! part is a nodeadm `NodeConfig`. AL2023 nodes do not call DescribeCluster at boot, so the
//! cluster's name, endpoint, CA and service CIDR must all be in it.

use base64::Engine;

const BOUNDARY: &str = "//kdeploy-nodeadm//";

/// The cluster facts a node needs to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeJoin<'a> {
    pub cluster_name: &'a str,
    pub api_server_endpoint: &'a str,
    /// Base64 CA bundle exactly as DescribeCluster returns it.
    pub certificate_authority: &'a str,
    pub service_cidr: &'a str,
    /// Labels set on the Node object by kubelet.
    pub node_labels: &'a [(&'a str, &'a str)],
}

/// A YAML double-quoted scalar; JSON string syntax is a subset of it, so serde_json escapes it.
fn quoted(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// The MIME document, as plain text (EC2 wants it base64-encoded: see [`encoded`]).
pub fn render(join: &NodeJoin<'_>) -> String {
    let mut config = format!(
        "---\n\
         apiVersion: node.eks.aws/v1alpha1\n\
         kind: NodeConfig\n\
         spec:\n\
         \x20 cluster:\n\
         \x20   name: {}\n\
         \x20   apiServerEndpoint: {}\n\
         \x20   certificateAuthority: {}\n\
         \x20   cidr: {}\n",
        quoted(join.cluster_name),
        quoted(join.api_server_endpoint),
        quoted(join.certificate_authority),
        quoted(join.service_cidr),
    );
    if !join.node_labels.is_empty() {
        let labels = join
            .node_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        config.push_str(&format!(
            "  kubelet:\n    flags:\n      - {}\n",
            quoted(&format!("--node-labels={labels}"))
        ));
    }
    format!(
        "MIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\
         \n\
         --{BOUNDARY}\n\
         Content-Type: application/node.eks.aws\n\
         \n\
         {config}\n\
         --{BOUNDARY}--\n"
    )
}

/// The user data as the launch template carries it.
pub fn encoded(join: &NodeJoin<'_>) -> String {
    base64::engine::general_purpose::STANDARD.encode(render(join))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        render(&NodeJoin {
            cluster_name: "kdeploy",
            api_server_endpoint: "https://ABCDEF.gr7.ap-northeast-2.eks.amazonaws.com",
            certificate_authority: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=",
            service_cidr: "10.100.0.0/16",
            node_labels: &[("kdeploy.io/stack", "kdeploy")],
        })
    }

    /// Splits a multipart/mixed document the way a MIME reader (cloud-init, nodeadm) does.
    fn parts(doc: &str) -> (String, Vec<(String, String)>) {
        let (head, body) = doc
            .split_once("\n\n")
            .expect("headers end with a blank line");
        let boundary = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: multipart/mixed; boundary="))
            .expect("multipart content type")
            .trim_matches('"')
            .to_owned();
        let closing = format!("--{boundary}--");
        assert!(
            body.trim_end().ends_with(&closing),
            "document is closed by the final boundary"
        );
        let body = body.trim_end().strip_suffix(&closing).unwrap();
        let mut out = Vec::new();
        for part in body.split(&format!("--{boundary}\n")).skip(1) {
            let (headers, content) = part.split_once("\n\n").expect("part headers");
            let ctype = headers
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .expect("part content type")
                .to_owned();
            out.push((ctype, content.to_owned()));
        }
        (head.to_owned(), out)
    }

    #[test]
    fn is_a_mime_multipart_document_with_a_nodeconfig_part() {
        let doc = sample();
        let (head, parts) = parts(&doc);
        assert!(head.starts_with("MIME-Version: 1.0\n"));
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].0, "application/node.eks.aws");
    }

    #[test]
    fn nodeconfig_carries_the_documented_cluster_fields() {
        let doc = sample();
        let (_, parts) = parts(&doc);
        let config: serde_yaml::Value = serde_yaml::from_str(&parts[0].1).unwrap();
        assert_eq!(config["apiVersion"], "node.eks.aws/v1alpha1");
        assert_eq!(config["kind"], "NodeConfig");
        let cluster = &config["spec"]["cluster"];
        assert_eq!(cluster["name"], "kdeploy");
        assert_eq!(
            cluster["apiServerEndpoint"],
            "https://ABCDEF.gr7.ap-northeast-2.eks.amazonaws.com"
        );
        assert_eq!(
            cluster["certificateAuthority"],
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM="
        );
        assert_eq!(cluster["cidr"], "10.100.0.0/16");
        assert_eq!(
            config["spec"]["kubelet"]["flags"][0],
            "--node-labels=kdeploy.io/stack=kdeploy"
        );
        // Only the fields NodeConfig defines: nodeadm rejects unknown ones.
        let keys: Vec<_> = cluster
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(|k| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["name", "apiServerEndpoint", "certificateAuthority", "cidr"]
        );
    }

    #[test]
    fn values_cannot_break_out_of_their_yaml_scalars() {
        let doc = render(&NodeJoin {
            cluster_name: "x\"\n  evil: true",
            api_server_endpoint: "https://e",
            certificate_authority: "Q0E=",
            service_cidr: "172.20.0.0/16",
            node_labels: &[],
        });
        let (_, parts) = parts(&doc);
        let config: serde_yaml::Value = serde_yaml::from_str(&parts[0].1).unwrap();
        assert_eq!(config["spec"]["cluster"]["name"], "x\"\n  evil: true");
        assert!(config["spec"]["cluster"]["evil"].is_null());
    }

    #[test]
    fn encoded_is_base64_of_the_document() {
        let join = NodeJoin {
            cluster_name: "c",
            api_server_endpoint: "https://e",
            certificate_authority: "Q0E=",
            service_cidr: "10.100.0.0/16",
            node_labels: &[],
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded(&join))
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), render(&join));
    }
}
