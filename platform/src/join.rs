//! Letting the worker nodes join: an EKS access entry of type `EC2_LINUX` for the node role, or,
//! where the access-entry API does not exist (older clusters, the local emulator), the node role in
//! the `aws-auth` ConfigMap.

use aws_sdk_eks::error::ProvideErrorMetadata;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How many times a concurrent change to aws-auth is answered by reading it again.
const MAP_ROLE_ATTEMPTS: usize = 5;

/// How the nodes were allowed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPath {
    AccessEntry,
    AwsAuthConfigMap,
}

/// Whether anything had to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub path: JoinPath,
    pub changed: bool,
}

/// One `mapRoles` entry of aws-auth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleMapping {
    pub rolearn: String,
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

pub fn node_mapping(node_role_arn: &str) -> RoleMapping {
    RoleMapping {
        rolearn: node_role_arn.to_owned(),
        username: "system:node:{{EC2PrivateDNSName}}".to_owned(),
        groups: vec!["system:bootstrappers".to_owned(), "system:nodes".to_owned()],
    }
}

/// The API is absent (the emulator answers 404 without an AWS error code).
fn api_missing<E: ProvideErrorMetadata>(
    err: &aws_sdk_eks::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    let status = err.raw_response().map(|r| r.status().as_u16());
    status == Some(404) && !matches!(err.code(), Some("ResourceNotFoundException"))
        || matches!(err.code(), Some("UnknownOperationException"))
}

fn eks_error<E: ProvideErrorMetadata>(operation: &'static str, principal: &str, err: &E) -> Error {
    Error::Eks {
        operation,
        principal: principal.to_owned(),
        code: err.code().unwrap_or("unknown").to_owned(),
        message: err.message().unwrap_or("").to_owned(),
    }
}

/// Makes sure nodes with `node_role_arn` can join `cluster`: the access entry if EKS has the API,
/// else the aws-auth mapping.
pub async fn allow_nodes(
    eks: &aws_sdk_eks::Client,
    kube: &kube::Client,
    cluster: &str,
    node_role_arn: &str,
) -> Result<Joined> {
    match eks
        .describe_access_entry()
        .cluster_name(cluster)
        .principal_arn(node_role_arn)
        .send()
        .await
    {
        Ok(_) => {
            return Ok(Joined {
                path: JoinPath::AccessEntry,
                changed: false,
            });
        }
        Err(err) if api_missing(&err) => {
            tracing::info!(
                cluster,
                "EKS access entries are not available; using the aws-auth ConfigMap"
            );
            let changed = map_role(kube, &node_mapping(node_role_arn)).await?;
            return Ok(Joined {
                path: JoinPath::AwsAuthConfigMap,
                changed,
            });
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(err) => return Err(eks_error("DescribeAccessEntry", node_role_arn, &err)),
    }
    match eks
        .create_access_entry()
        .cluster_name(cluster)
        .principal_arn(node_role_arn)
        .r#type("EC2_LINUX")
        .send()
        .await
    {
        Ok(_) => Ok(Joined {
            path: JoinPath::AccessEntry,
            changed: true,
        }),
        // Made by a run that did not live to hear the answer.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(Joined {
                path: JoinPath::AccessEntry,
                changed: false,
            })
        }
        Err(err) => Err(eks_error("CreateAccessEntry", node_role_arn, &err)),
    }
}

/// Adds `mapping` to aws-auth's `mapRoles` (creating the ConfigMap if needed), keeping every
/// other entry; an update carries the resourceVersion it read, so a concurrent change is not lost.
pub async fn map_role(kube: &kube::Client, mapping: &RoleMapping) -> Result<bool> {
    let api: Api<ConfigMap> = Api::namespaced(kube.clone(), "kube-system");
    let failed = |action, e| Error::api(action, "ConfigMap kube-system/aws-auth", e);
    for _ in 0..MAP_ROLE_ATTEMPTS {
        let existing = api
            .get_opt("aws-auth")
            .await
            .map_err(|e| failed("reading", e))?;
        let mut roles: Vec<RoleMapping> = match existing
            .as_ref()
            .and_then(|cm| cm.data.as_ref())
            .and_then(|d| d.get("mapRoles"))
        {
            Some(text) if !text.trim().is_empty() => {
                serde_yaml::from_str(text).map_err(Error::MapRoles)?
            }
            _ => Vec::new(),
        };
        if roles.iter().any(|r| r.rolearn == mapping.rolearn) {
            return Ok(false);
        }
        roles.push(mapping.clone());
        let text = serde_yaml::to_string(&roles).map_err(Error::MapRoles)?;
        let result = match existing {
            Some(mut cm) => {
                cm.data
                    .get_or_insert_with(Default::default)
                    .insert("mapRoles".into(), text);
                api.replace("aws-auth", &PostParams::default(), &cm).await
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some("aws-auth".into()),
                        namespace: Some("kube-system".into()),
                        ..ObjectMeta::default()
                    },
                    data: Some([("mapRoles".to_owned(), text)].into()),
                    ..ConfigMap::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(_) => return Ok(true),
            // Someone else changed it between our read and write: read again.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(err) => return Err(failed("writing", err)),
        }
    }
    Err(Error::MapRolesContended {
        attempts: MAP_ROLE_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_mapping_has_the_documented_username_and_groups() {
        let m = node_mapping("arn:aws:iam::123456789012:role/n");
        assert_eq!(m.username, "system:node:{{EC2PrivateDNSName}}");
        assert_eq!(m.groups, ["system:bootstrappers", "system:nodes"]);
        let yaml = serde_yaml::to_string(&vec![m]).unwrap();
        assert!(yaml.contains("rolearn: arn:aws:iam::123456789012:role/n"));
    }
}
