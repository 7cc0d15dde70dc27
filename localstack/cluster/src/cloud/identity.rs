//! Who an EKS token's caller is to the cluster, as EKS's aws-iam-authenticator decides it: STS
//! GetCallerIdentity on the token's presigned URL (sent to the AWS emulator), the returned ARN
//! canonicalised, then mapped by the cluster's access entries, the cluster creator's mapping and
//! the `kube-system/aws-auth` ConfigMap, per the cluster's authentication mode.

use crate::meta::Lookup;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use serde_json::Value;

use super::{AwsJoin, Clients};
use crate::auth::{AccessPolicy, EksTokenRejected, PresignedCall, User};
use crate::registry::Registry;
use crate::resources::known;

/// What STS says about the caller (GetCallerIdentityResult).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub arn: String,
    pub account: String,
    pub user_id: String,
}

/// The caller's ARN as aws-iam-authenticator compares it with mappings (pkg/arn/arn.go
/// Canonicalize): an STS assumed-role ARN `arn:P:sts::A:assumed-role/ROLE/SESSION` becomes the
/// role's `arn:P:iam::A:role/ROLE` (no path: STS's ARN has none); IAM users, roles and the root
/// stay as they are, as do STS federated users; anything else is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub canonical_arn: String,
    /// The assumed-role session's name (`{{SessionName}}`).
    pub session_name: Option<String>,
    pub account: String,
    /// An assumed role rather than an IAM user (the default username of an access entry).
    pub is_role: bool,
}

impl Principal {
    pub fn canonicalize(arn: &str) -> Result<Self, EksTokenRejected> {
        let refused = |why: &str| EksTokenRejected::Arn(format!("arn {arn:?} {why}"));
        let fields: Vec<&str> = arn.splitn(6, ':').collect();
        let [prefix, partition, service, _region, account, resource] = fields[..] else {
            return Err(refused("is not an ARN"));
        };
        if prefix != "arn" {
            return Err(refused("is not an ARN"));
        }
        let parts: Vec<&str> = resource.split('/').collect();
        let principal = |canonical_arn: String, session_name: Option<String>, is_role: bool| Self {
            canonical_arn,
            session_name,
            account: account.to_string(),
            is_role,
        };
        match (service, parts[0]) {
            ("sts", "assumed-role") => {
                let [_, role, session] = parts[..] else {
                    return Err(refused(
                        "has an assumed-role resource without role and session",
                    ));
                };
                Ok(principal(
                    format!("arn:{partition}:iam::{account}:role/{role}"),
                    Some(session.to_string()),
                    true,
                ))
            }
            ("sts", "federated-user") => Ok(principal(arn.to_string(), None, false)),
            ("iam", "role") => Ok(principal(arn.to_string(), None, true)),
            ("iam", "user" | "root") => Ok(principal(arn.to_string(), None, false)),
            ("sts" | "iam", _) => Err(refused(&format!(
                "has an unrecognized resource {resource} for service {service}"
            ))),
            _ => Err(refused(&format!(
                "names service {service}, which is not a valid service for identities"
            ))),
        }
    }
}

/// The caller out of STS's answer: JSON when the `accept: application/json` the verifier sends
/// is honoured, else the query protocol's XML.
pub fn parse_caller_identity(body: &str) -> Option<CallerIdentity> {
    if let Ok(json) = serde_json::from_str::<Value>(body) {
        let result = json.at("/GetCallerIdentityResponse/GetCallerIdentityResult")?;
        let field = |name: &str| result.get(name).and_then(Value::as_str).map(str::to_string);
        return Some(CallerIdentity {
            arn: field("Arn")?,
            account: field("Account")?,
            user_id: field("UserId")?,
        });
    }
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].trim().to_string())
    };
    Some(CallerIdentity {
        arn: field("Arn")?,
        account: field("Account")?,
        user_id: field("UserId")?,
    })
}

/// One EKS access entry of the caller, as DescribeAccessEntry and ListAssociatedAccessPolicies
/// give it.
#[derive(Debug, Clone, Default)]
pub struct AccessEntry {
    pub kind: String,
    pub username: Option<String>,
    pub kubernetes_groups: Vec<String>,
    pub policies: Vec<AccessPolicy>,
}

/// One `mapRoles` or `mapUsers` entry of aws-auth (aws-iam-authenticator pkg/config RoleMapping,
/// UserMapping).
#[derive(Debug, Clone, Deserialize)]
pub struct Mapping {
    #[serde(default, alias = "userarn")]
    pub rolearn: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The entry of `mapRoles`/`mapUsers` (YAML text) for `canonical_arn`: pkg/mapper/configmap
/// mapper.go compares the keys and the canonical ARN lower-cased.
pub fn find_mapping(text: Option<&str>, canonical_arn: &str) -> Option<Mapping> {
    serde_yaml::from_str::<Vec<Mapping>>(text?)
        .ok()?
        .into_iter()
        .find(|m| m.rolearn.eq_ignore_ascii_case(canonical_arn))
}

/// The values of aws-iam-authenticator's username templates (pkg/server/server.go
/// renderTemplates): `{{AccountID}}`, `{{SessionName}}` (with `@` replaced by `-`),
/// `{{SessionNameRaw}}`, `{{AccessKeyID}}` and `{{EC2PrivateDNSName}}` (the private DNS name of
/// the instance whose id is the session name).
#[derive(Debug, Clone, Default)]
pub struct TemplateValues {
    pub account: String,
    pub session_name: String,
    pub access_key_id: String,
    pub ec2_private_dns_name: Option<String>,
}

/// A template filled in; None when it needs a value there is none of (the authenticator then
/// refuses the mapping).
pub fn render(template: &str, values: &TemplateValues) -> Option<String> {
    let mut out = template
        .replace("{{AccountID}}", &values.account)
        .replace("{{SessionNameRaw}}", &values.session_name)
        .replace("{{SessionName}}", &values.session_name.replace('@', "-"))
        .replace("{{AccessKeyID}}", &values.access_key_id);
    if out.contains("{{EC2PrivateDNSName}}") {
        out = out.replace(
            "{{EC2PrivateDNSName}}",
            values.ec2_private_dns_name.as_deref()?,
        );
    }
    Some(out)
}

/// The Kubernetes user of an access entry. Amazon EKS User Guide, "Create access entries": with
/// no username given, EKS uses the IAM user's ARN, or for a role
/// `arn:aws:sts::<account>:assumed-role/<role>/{{SessionName}}`; the groups are the entry's
/// `kubernetesGroups`; EC2_LINUX entries are `system:node:{{EC2PrivateDNSName}}` in
/// `system:nodes` whatever they say.
pub fn entry_user(
    entry: &AccessEntry,
    principal: &Principal,
    values: &TemplateValues,
) -> Option<User> {
    let (username, mut groups) = if entry.kind == "EC2_LINUX" {
        (
            "system:node:{{EC2PrivateDNSName}}".to_string(),
            vec!["system:nodes".to_string()],
        )
    } else {
        let default = if principal.is_role {
            let (head, role) = principal
                .canonical_arn
                .rsplit_once(":role/")
                .unwrap_or((&principal.canonical_arn, ""));
            let head = head.replacen(":iam:", ":sts:", 1);
            format!("{head}:assumed-role/{role}/{{{{SessionName}}}}")
        } else {
            principal.canonical_arn.clone()
        };
        (
            entry.username.clone().unwrap_or(default),
            entry.kubernetes_groups.clone(),
        )
    };
    groups.push("system:authenticated".into());
    Some(User {
        name: render(&username, values)?,
        groups,
        access_policies: entry.policies.clone(),
    })
}

/// The Kubernetes user of an aws-auth mapping.
pub fn mapping_user(mapping: &Mapping, values: &TemplateValues) -> Option<User> {
    let mut groups = mapping.groups.clone();
    groups.push("system:authenticated".into());
    Some(User {
        name: render(&mapping.username, values)?,
        groups,
        ..User::default()
    })
}

/// The cluster creator's hidden mapping (Amazon EKS User Guide, "Grant IAM users and roles
/// access to Kubernetes APIs": the creator "is automatically granted system:masters
/// permissions ... This principal doesn't appear in any visible configuration"); EKS audit logs
/// show it as `kubernetes-admin`.
pub fn creator_user() -> User {
    User {
        name: "kubernetes-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        ..User::default()
    }
}

/// The simulator's EKS authenticator: asks the AWS emulator, caches nothing (as
/// aws-iam-authenticator's verifier, which calls STS for every token).
pub struct EksAuth {
    join: AwsJoin,
    registry: Arc<Registry>,
    clients: Clients,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl EksAuth {
    pub async fn new(join: AwsJoin, registry: Arc<Registry>) -> Self {
        let clients = Clients::new(&join).await;
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Self {
            join,
            registry,
            clients,
            http,
        }
    }

    /// The token's caller as a Kubernetes user, or why not.
    pub async fn identify(&self, call: &PresignedCall) -> Result<User, EksTokenRejected> {
        let caller = self.get_caller_identity(call).await?;
        let principal = Principal::canonicalize(&caller.arn)?;
        let cluster = super::describe_cluster(&self.clients.eks, &self.join.cluster_name)
            .await
            .map_err(EksTokenRejected::Emulator)?
            .ok_or_else(|| {
                EksTokenRejected::Emulator(format!(
                    "the EKS cluster {} does not exist",
                    self.join.cluster_name
                ))
            })?
            .0;
        let mode = cluster.authentication_mode.as_deref();
        let mut values = TemplateValues {
            account: principal.account.clone(),
            session_name: principal.session_name.clone().unwrap_or_default(),
            access_key_id: call.access_key_id.clone(),
            ec2_private_dns_name: None,
        };
        // "Grant IAM users access to Kubernetes with EKS access entries": access entries first;
        // `API` ignores aws-auth, `CONFIG_MAP` ignores access entries.
        if mode != Some("CONFIG_MAP")
            && let Some(entry) = self.access_entry(&principal).await?
        {
            values.ec2_private_dns_name = self.private_dns_name(&values.session_name).await;
            return entry_user(&entry, &principal, &values).ok_or_else(|| {
                EksTokenRejected::NotMapped(format!(
                    "{} (no EC2 instance {})",
                    caller.arn, values.session_name
                ))
            });
        }
        if mode == Some("API") {
            return Err(EksTokenRejected::NotMapped(caller.arn));
        }
        // The creator's mapping is in the file EKS mounts into its authenticator (backend mode
        // MountedFile), which is consulted before the EKSConfigMap mapper.
        if self
            .cluster_creator()
            .await?
            .and_then(|arn| Principal::canonicalize(&arn).ok())
            .is_some_and(|c| {
                c.canonical_arn
                    .eq_ignore_ascii_case(&principal.canonical_arn)
            })
        {
            return Ok(creator_user());
        }
        let aws_auth = self
            .registry
            .try_get(known::configmaps(), "kube-system", "aws-auth");
        let data = |key: &str| {
            aws_auth
                .as_ref()
                .and_then(|cm| cm.at(&format!("/data/{key}")))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let key = if principal.is_role {
            "mapRoles"
        } else {
            "mapUsers"
        };
        let Some(mapping) = find_mapping(data(key).as_deref(), &principal.canonical_arn) else {
            return Err(EksTokenRejected::NotMapped(caller.arn));
        };
        if mapping.username.contains("{{EC2PrivateDNSName}}") {
            values.ec2_private_dns_name = self.private_dns_name(&values.session_name).await;
        }
        mapping_user(&mapping, &values).ok_or_else(|| {
            EksTokenRejected::NotMapped(format!(
                "{} (no EC2 instance {})",
                caller.arn, values.session_name
            ))
        })
    }

    /// pkg/token/token.go Verify: GET the presigned URL with `x-k8s-aws-id: <this cluster>` and
    /// `accept: application/json`. The URL goes to the emulator (scheme and host replaced, the
    /// query kept) with the signed host in `Host`, as STS would receive it. STS checks the
    /// signature, which covers `x-k8s-aws-id`, so a token made for another cluster fails there
    /// (SignatureDoesNotMatch); the emulator can do that only for keys whose secret it knows
    /// (localstack/aws/moto_server.py, sts_presigned_get_caller_identity).
    pub async fn get_caller_identity(
        &self,
        call: &PresignedCall,
    ) -> Result<CallerIdentity, EksTokenRejected> {
        let url = format!(
            "{}/?{}",
            self.join.endpoint.trim_end_matches('/'),
            call.query
        );
        let request = http::Request::get(&url)
            .header(http::header::HOST, &call.host)
            .header("x-k8s-aws-id", &self.join.cluster_name)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| EksTokenRejected::StsCall(e.to_string()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| EksTokenRejected::StsCall(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| EksTokenRejected::StsCall(e.to_string()))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status != 200 {
            return Err(EksTokenRejected::Sts { status, body });
        }
        parse_caller_identity(&body).ok_or_else(|| {
            EksTokenRejected::StsCall(format!("unexpected GetCallerIdentity answer: {body}"))
        })
    }

    /// The caller's access entry, if the cluster has one for its canonical ARN (None also when
    /// the emulator has no access-entry API).
    async fn access_entry(
        &self,
        principal: &Principal,
    ) -> Result<Option<AccessEntry>, EksTokenRejected> {
        let cluster = &self.join.cluster_name;
        let Some(entries) = super::access_entry_principals(&self.clients.eks, cluster)
            .await
            .map_err(EksTokenRejected::Emulator)?
        else {
            return Ok(None);
        };
        let Some(principal_arn) = entries
            .into_iter()
            .find(|p| p.eq_ignore_ascii_case(&principal.canonical_arn))
        else {
            return Ok(None);
        };
        let emulator = |op: &str, e: String| EksTokenRejected::Emulator(format!("{op}: {e}"));
        let described = self
            .clients
            .eks
            .describe_access_entry()
            .cluster_name(cluster)
            .principal_arn(&principal_arn)
            .send()
            .await
            .map_err(|e| {
                emulator(
                    "eks:DescribeAccessEntry",
                    aws_sdk_eks::error::DisplayErrorContext(e).to_string(),
                )
            })?;
        let Some(found) = described.access_entry() else {
            return Ok(None);
        };
        let mut entry = AccessEntry {
            kind: found.r#type().unwrap_or("STANDARD").to_string(),
            username: found.username().map(str::to_string),
            kubernetes_groups: found.kubernetes_groups().to_vec(),
            policies: Vec::new(),
        };
        let mut pages = self
            .clients
            .eks
            .list_associated_access_policies()
            .cluster_name(cluster)
            .principal_arn(&principal_arn)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                emulator(
                    "eks:ListAssociatedAccessPolicies",
                    aws_sdk_eks::error::DisplayErrorContext(e).to_string(),
                )
            })?;
            for associated in page.associated_access_policies() {
                let scope = associated.access_scope();
                let namespaced = scope
                    .and_then(|s| s.r#type())
                    .is_some_and(|t| t.as_str() == "namespace");
                entry.policies.push(AccessPolicy {
                    arn: associated.policy_arn().unwrap_or_default().to_string(),
                    namespaces: namespaced
                        .then(|| scope.map(|s| s.namespaces().to_vec()).unwrap_or_default()),
                });
            }
        }
        Ok(Some(entry))
    }

    /// The creator of the cluster, as the emulator recorded it at CreateCluster
    /// (localstack/aws/moto_server.py, eks_cluster_creator).
    async fn cluster_creator(&self) -> Result<Option<String>, EksTokenRejected> {
        let url = format!(
            "{}/moto-api/kdeploy/eks-cluster-creator?name={}",
            self.join.endpoint.trim_end_matches('/'),
            form_urlencoded::byte_serialize(self.join.cluster_name.as_bytes()).collect::<String>()
        );
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| EksTokenRejected::Emulator(e.to_string()))?;
        let response = self
            .http
            .get(uri)
            .await
            .map_err(|e| EksTokenRejected::Emulator(e.to_string()))?;
        if response.status() == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| EksTokenRejected::Emulator(e.to_string()))?
            .to_bytes();
        Ok(serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("arn").and_then(Value::as_str).map(str::to_string)))
    }

    /// `{{EC2PrivateDNSName}}`: the private DNS name of the instance whose id is the session
    /// name (EC2 DescribeInstances).
    async fn private_dns_name(&self, instance_id: &str) -> Option<String> {
        if !instance_id.starts_with("i-") {
            return None;
        }
        let out = self
            .clients
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .ok()?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| i.private_dns_name().filter(|n| !n.is_empty()))
            .map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// aws-iam-authenticator pkg/arn/arn_test.go: the cases of Canonicalize.
    #[test]
    fn arns_are_canonicalised_as_aws_iam_authenticator_does() {
        let p = Principal::canonicalize(
            "arn:aws:sts::123456789012:assumed-role/Admin/alice@example.com",
        )
        .unwrap();
        assert_eq!(p.canonical_arn, "arn:aws:iam::123456789012:role/Admin");
        assert_eq!(p.session_name.as_deref(), Some("alice@example.com"));
        assert!(p.is_role);
        let user = Principal::canonicalize("arn:aws:iam::123456789012:user/dev/alice").unwrap();
        assert_eq!(
            user.canonical_arn,
            "arn:aws:iam::123456789012:user/dev/alice"
        );
        assert!(!user.is_role);
        assert!(Principal::canonicalize("arn:aws:sts::123456789012:user/moto").is_err());
        assert!(Principal::canonicalize("arn:aws:s3:::bucket").is_err());
        assert!(Principal::canonicalize("not-an-arn").is_err());
    }

    #[test]
    fn caller_identity_is_read_from_json_or_xml() {
        let json = r#"{"GetCallerIdentityResponse":{"GetCallerIdentityResult":{"Account":"1","Arn":"arn:aws:iam::1:user/a","UserId":"AID"}}}"#;
        let xml = "<GetCallerIdentityResponse><GetCallerIdentityResult><UserId>AID</UserId><Account>1</Account><Arn>arn:aws:iam::1:user/a</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>";
        let want = CallerIdentity {
            arn: "arn:aws:iam::1:user/a".into(),
            account: "1".into(),
            user_id: "AID".into(),
        };
        assert_eq!(parse_caller_identity(json), Some(want.clone()));
        assert_eq!(parse_caller_identity(xml), Some(want));
        assert_eq!(parse_caller_identity("<Error/>"), None);
    }

    /// Amazon EKS User Guide, "Create access entries": the default usernames.
    #[test]
    fn access_entries_default_usernames_and_groups() {
        let role = Principal::canonicalize("arn:aws:sts::1:assumed-role/Deploy/ci").unwrap();
        let values = TemplateValues {
            account: "1".into(),
            session_name: "ci".into(),
            ..TemplateValues::default()
        };
        let entry = AccessEntry {
            kind: "STANDARD".into(),
            kubernetes_groups: vec!["deployers".into()],
            ..AccessEntry::default()
        };
        let user = entry_user(&entry, &role, &values).unwrap();
        assert_eq!(user.name, "arn:aws:sts::1:assumed-role/Deploy/ci");
        assert_eq!(user.groups, ["deployers", "system:authenticated"]);
        let iam_user = Principal::canonicalize("arn:aws:iam::1:user/alice").unwrap();
        assert_eq!(
            entry_user(&entry, &iam_user, &values).unwrap().name,
            "arn:aws:iam::1:user/alice"
        );
        let node = AccessEntry {
            kind: "EC2_LINUX".into(),
            ..AccessEntry::default()
        };
        assert!(
            entry_user(&node, &role, &values).is_none(),
            "no instance, no node name"
        );
    }

    /// pkg/server/server.go renderTemplates.
    #[test]
    fn username_templates_are_filled_in() {
        let values = TemplateValues {
            account: "123".into(),
            session_name: "alice@example.com".into(),
            access_key_id: "AKID".into(),
            ec2_private_dns_name: Some("ip-10-0-0-1.ec2.internal".into()),
        };
        assert_eq!(
            render("{{AccountID}}:{{SessionName}}:{{SessionNameRaw}}:{{AccessKeyID}}:{{EC2PrivateDNSName}}", &values)
                .unwrap(),
            "123:alice-example.com:alice@example.com:AKID:ip-10-0-0-1.ec2.internal"
        );
    }

    /// "Review access policy permissions": AmazonEKSClusterAdminPolicy is cluster-admin in its
    /// scope; a namespace-scoped association reaches only those namespaces.
    #[test]
    fn the_cluster_admin_access_policy_allows_within_its_scope() {
        use crate::auth::Attributes;
        let attrs = |namespace| Attributes {
            verb: "delete",
            group: "apps",
            resource: "deployments",
            subresource: None,
            namespace,
            name: "x",
        };
        let arn = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy".to_string();
        let cluster = AccessPolicy {
            arn: arn.clone(),
            namespaces: None,
        };
        let scoped = AccessPolicy {
            arn,
            namespaces: Some(vec!["team".into()]),
        };
        let view = AccessPolicy {
            arn: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy".into(),
            namespaces: None,
        };
        let registry = Registry::new(10);
        let user = |p: AccessPolicy| User {
            name: "u".into(),
            groups: vec![],
            access_policies: vec![p],
        };
        assert!(crate::auth::authorize(
            &registry,
            &user(cluster),
            &attrs("other")
        ));
        assert!(crate::auth::authorize(
            &registry,
            &user(scoped.clone()),
            &attrs("team")
        ));
        assert!(!crate::auth::authorize(
            &registry,
            &user(scoped),
            &attrs("other")
        ));
        assert!(!crate::auth::authorize(
            &registry,
            &user(view),
            &attrs("team")
        ));
    }
}
