//! Endpoints and call history kept in ConfigMaps, written with resourceVersion so two tabs or
//! two site replicas never overwrite each other's change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::model::{Endpoint, Pair};
use crate::config::{FIELD_MANAGER, MANAGED_BY};
use crate::error::{AppError, FieldError};
use crate::kube_status::{is_already_exists, is_conflict};
use crate::repositories::objects::{self, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PART_OF};
use crate::repositories::store::RepositoryStore;

const ENDPOINTS_KEY: &str = "endpoints.json";
const HISTORY_KEY: &str = "history.json";
pub const HISTORY_NAME: &str = "kdeploy-console-history";
const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Most endpoints one repository can hold.
pub const MAX_ENDPOINTS: usize = 100;
/// A ConfigMap holds at most 1 MiB; leave room for its metadata.
const MAX_STORED_BYTES: usize = 900 * 1024;

/// The ConfigMap of a repository's endpoints; the suffix keeps it apart from anything the
/// repository itself could be called.
pub fn endpoints_name(repo: &str) -> String {
    format!("{repo}-kdeploy-endpoints")
}

/// One past call, enough to show it and send it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub at: String,
    pub repo: String,
    pub endpoint: Option<String>,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: Vec<Pair>,
    #[serde(default)]
    pub headers: Vec<Pair>,
    #[serde(default)]
    pub body_kind: super::model::BodyKind,
    #[serde(default)]
    pub body: String,
    /// Status, or None when the call failed before an answer (the error is in `outcome`).
    pub status: Option<u16>,
    pub elapsed_ms: Option<u64>,
    pub outcome: String,
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

fn labels(name: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), name.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_PART_OF.to_string(), MANAGED_BY.to_string()),
        (LABEL_COMPONENT.to_string(), component.to_string()),
    ])
}

/// The list stored under `key`; absent is empty, but undecodable is an error, so the next write
/// cannot replace what a user stored with an empty list.
fn read<T: DeserializeOwned>(
    cm: &ConfigMap,
    key: &str,
    what: &'static str,
) -> Result<Vec<T>, AppError> {
    let Some(text) = cm.data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(Vec::new());
    };
    serde_json::from_str(text).map_err(|e| AppError::StoredDataUnreadable {
        what,
        object: format!(
            "ConfigMap {} (key {key})",
            cm.metadata.name.as_deref().unwrap_or_default()
        ),
        reason: e.to_string(),
    })
}

/// Where one JSON list is stored: which ConfigMap, which key, and what it holds in the user's words.
struct StoredList<'a> {
    api: Api<ConfigMap>,
    name: &'a str,
    key: &'static str,
    what: &'static str,
}

/// Read-modify-write of one JSON list in a ConfigMap, retried on conflicts; `template` builds
/// the ConfigMap when it does not exist yet.
async fn update_list<T, R>(
    list: StoredList<'_>,
    template: impl Fn() -> ConfigMap,
    mut change: impl FnMut(&mut Vec<T>) -> Result<R, AppError>,
) -> Result<R, AppError>
where
    T: Serialize + DeserializeOwned,
{
    let StoredList {
        api,
        name,
        key,
        what,
    } = list;
    for _ in 0..10 {
        let existing = api.get_opt(name).await?;
        let (mut cm, mut items) = match existing {
            Some(cm) => {
                let items = read(&cm, key, what)?;
                (cm, items)
            }
            None => (template(), Vec::new()),
        };
        let result = change(&mut items)?;
        let text = serde_json::to_string(&items)
            .map_err(|e| AppError::Invalid(vec![FieldError::new("body", e.to_string())]))?;
        if text.len() > MAX_STORED_BYTES {
            return Err(AppError::Invalid(vec![FieldError::new(
                "body",
                format!(
                    "This would make the stored list {} KiB, more than the {} KiB the cluster keeps in one place: shorten bodies or delete endpoints.",
                    text.len() / 1024,
                    MAX_STORED_BYTES / 1024
                ),
            )]));
        }
        cm.data
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), text);
        let written = if cm.metadata.resource_version.is_some() {
            api.replace(name, &post_params(), &cm).await
        } else {
            api.create(&post_params(), &cm).await
        };
        match written {
            Ok(_) => return Ok(result),
            Err(e) if is_conflict(&e) || is_already_exists(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Conflict(FieldError::new(
        "endpoint",
        "The endpoints were changed elsewhere at the same time: reload and try again.",
    )))
}

const ENDPOINTS: &str = "API endpoints";
const HISTORY: &str = "console history";

pub async fn endpoints(
    repositories: &RepositoryStore,
    namespace: &str,
    repo: &str,
) -> Result<Vec<Endpoint>, AppError> {
    repositories.repository_uid(namespace, repo).await?;
    let api: Api<ConfigMap> = Api::namespaced(repositories.client.clone(), namespace);
    match api.get_opt(&endpoints_name(repo)).await? {
        Some(cm) => read(&cm, ENDPOINTS_KEY, ENDPOINTS),
        None => Ok(Vec::new()),
    }
}

/// Changes a repository's endpoint list; the ConfigMap is created on first use, owned by the
/// repository's Deployment so deleting the repository removes it.
pub async fn update_endpoints<R>(
    repositories: &RepositoryStore,
    namespace: &str,
    repo: &str,
    change: impl FnMut(&mut Vec<Endpoint>) -> Result<R, AppError>,
) -> Result<R, AppError> {
    let uid = repositories.repository_uid(namespace, repo).await?;
    let api: Api<ConfigMap> = Api::namespaced(repositories.client.clone(), namespace);
    let name = endpoints_name(repo);
    let template = || ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels(repo, "api-endpoints")),
            owner_references: Some(vec![objects::owned_by(repo, &uid)]),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let list = StoredList {
        api,
        name: &name,
        key: ENDPOINTS_KEY,
        what: ENDPOINTS,
    };
    update_list(list, template, change).await
}

pub async fn history(
    repositories: &RepositoryStore,
    namespace: &str,
) -> Result<Vec<Call>, AppError> {
    let api: Api<ConfigMap> = Api::namespaced(repositories.client.clone(), namespace);
    match api.get_opt(HISTORY_NAME).await? {
        Some(cm) => read(&cm, HISTORY_KEY, HISTORY),
        None => Ok(Vec::new()),
    }
}

/// Adds a call at the front of the user's history, keeping at most `keep`.
pub async fn record(
    repositories: &RepositoryStore,
    namespace: &str,
    call: Call,
    keep: usize,
) -> Result<(), AppError> {
    let api: Api<ConfigMap> = Api::namespaced(repositories.client.clone(), namespace);
    let template = || ConfigMap {
        metadata: ObjectMeta {
            name: Some(HISTORY_NAME.into()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels("console", "console-history")),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let list = StoredList {
        api,
        name: HISTORY_NAME,
        key: HISTORY_KEY,
        what: HISTORY,
    };
    update_list(list, template, |list: &mut Vec<Call>| {
        list.insert(0, call.clone());
        list.truncate(keep);
        Ok(())
    })
    .await
}
