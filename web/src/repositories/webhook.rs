//! Redeploy on image push: each repository may have a webhook URL with a secret token; a registry's
//! push notification for the repository's image (Docker Hub's webhook, or a CNCF Distribution
//! registry's notification) sent there starts the same rolling redeploy as the Redeploy button,
//! pinned to the pushed digest when the notification names one.
//!
//! Everything lives on the repository's Deployment, so every site replica agrees: a SHA-256 of the
//! token (never the token itself), and the recent deliveries, which make a replay change nothing
//! and bound how often pushes may redeploy. Both are metadata annotations written with a JSON
//! merge patch (an `Update` of the site's field manager): the server-side applies of a change
//! own only what the builder makes, so they leave these annotations alone.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Patch;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::detail::{self, Submitted};
use super::image::{check_repository_path, check_sha256_digest, check_tag, split_tag};
use super::objects::{self, RESTARTED_AT};
use super::store::{RepositoryStore, StoreError, env_patch_params, is_managed};
use super::validation::check_dns1035_label;
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::kube_status::is_conflict;
use crate::mirror::has_seen;
use crate::state::{AppState, CsrfToken};

/// Deployment annotation: hex SHA-256 of the webhook's token; absent while the webhook is off.
pub const TOKEN_SHA256: &str = "kdeploy.dev/webhook-token-sha256";
/// Deployment annotation: the recent deliveries (a hash of each one's identity and when it was
/// applied), JSON, oldest first.
pub const DELIVERIES: &str = "kdeploy.dev/webhook-deliveries";
/// Who a webhook's revisions are deployed by, as the revisions list shows it.
pub const DEPLOYER: &str = "webhook";
/// The path the webhooks are served under (`/hooks/v1/{namespace}/{repo}`).
pub const HOOK_ROUTE: &str = "/hooks/v1/{namespace}/{repo}";

/// At most this many deliveries redeploy a repository within [`RATE_WINDOW_SECS`]. Each is a
/// full rolling update (every pod replaced one at a time) and a new revision, and a Deployment
/// keeps only ten old revisions: a burst of pushes (a CI loop, a leaked URL) would churn the pods
/// and push the revisions one could roll back to out of history. A release pushes a tag or two;
/// five a minute leaves room for several tags at once. Counted from the deliveries recorded on
/// the Deployment, so the limit holds however many site replicas answer.
pub const RATE_MAX: usize = 5;
pub const RATE_WINDOW_SECS: i64 = 60;
/// How many deliveries are remembered for replays (more than a window's worth).
const REMEMBERED: usize = 20;
/// Largest body read: a Docker Hub payload is about 1 KiB, and a Distribution envelope holds a
/// registry's batch of events (its `threshold`, by default 10) of about 1 KiB each.
pub const BODY_LIMIT: usize = 256 * 1024;
/// The media type of a CNCF Distribution notification (distribution `notifications/event.go`,
/// `EventsMediaType`).
pub const DISTRIBUTION_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
/// Docker Hub's registry and the other names it is reached by (distribution/reference
/// `normalize.go`: `legacyDefaultDomain`, `defaultDomain`; `registry-1.docker.io` is its API host).
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A new token: 32 random bytes, URL-safe base64 without padding (43 characters that need no
/// escaping in a query string).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The hex SHA-256 of a token: what is stored instead of the token.
pub fn token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `token` hashes to `stored`, compared in constant time (both digests have the same
/// length whatever the token, so its length says nothing either).
pub fn token_matches(stored: &str, token: &str) -> bool {
    let supplied = token_digest(token);
    let (a, b) = (stored.as_bytes(), supplied.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An image reference in the parts a push names, Docker Hub's short names written out in full
/// (`nginx` is `docker.io/library/nginx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// The reference without its digest, as the repository shows it (`nginx:1.27`).
    pub unpinned: String,
}

fn normalise_registry(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        DOCKER_HUB.to_string()
    } else {
        host
    }
}

/// Docker Hub's official images are `library/<name>`, written `<name>` for short.
fn normalise_repository(registry: &str, repository: &str) -> String {
    if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_string()
    }
}

impl ImageName {
    /// Splits a reference the site validated (`[registry/]path[:tag][@digest]`).
    pub fn parse(reference: &str) -> Self {
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (reference, None),
        };
        let (name, tag) = split_tag(name_and_tag);
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (normalise_registry(first), rest)
            }
            _ => (DOCKER_HUB.to_string(), name),
        };
        Self {
            repository: normalise_repository(&registry, path),
            registry,
            tag: tag.map(str::to_string),
            digest,
            unpinned: name_and_tag.to_string(),
        }
    }
}

/// One push a notification reports, with the fields it came from (for errors naming them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub registry: String,
    pub registry_field: String,
    pub repository: String,
    pub repository_field: String,
    pub tag: String,
    pub tag_field: String,
    pub digest: Option<String>,
    pub digest_field: String,
    /// What identifies this delivery: a replay carries the same.
    pub delivery: String,
}

/// A notification, read: the pushes of a tag it reports (other events ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub pushes: Vec<Push>,
}

fn malformed(field: &str, rule: &str) -> FieldError {
    FieldError::new(field, rule.to_string())
}

/// A required string at `key` of `object`, named `field` in errors.
fn text<'a>(object: &'a Value, key: &str, field: &str) -> Result<&'a str, FieldError> {
    match object.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(malformed(
            field,
            &format!("{field} is missing: a push notification names it."),
        )),
        Some(_) => Err(malformed(field, &format!("{field} must be a string."))),
    }
}

fn object<'a>(parent: &'a Value, key: &str, field: &str) -> Result<&'a Value, FieldError> {
    match parent.get(key) {
        Some(v @ Value::Object(_)) => Ok(v),
        None | Some(Value::Null) => Err(malformed(
            field,
            &format!("{field} is missing: a push notification has this object."),
        )),
        Some(_) => Err(malformed(field, &format!("{field} must be an object."))),
    }
}

/// Reads a notification: Docker Hub's webhook payload (docs.docker.com/docker-hub/repos/manage/
/// webhooks/, "Example webhook payload": `push_data.tag`, `push_data.pushed_at`,
/// `repository.repo_name`), or a CNCF Distribution envelope (distribution `notifications/
/// event.go`: `events[].id`, `action`, `target.repository`, `target.tag`, `target.digest`,
/// `request.host`), told apart by its media type or, sent as `application/json`, its shape.
/// Malformed input is refused naming the field at fault.
pub fn parse_notification(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Notification, FieldError> {
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let distribution_type = media == DISTRIBUTION_MEDIA_TYPE;
    if !(distribution_type || media == "application/json") {
        return Err(malformed(
            "content-type",
            &format!(
                "Send the notification as application/json (Docker Hub) or {DISTRIBUTION_MEDIA_TYPE} (a Distribution registry)."
            ),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        let message = message
            .split_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m);
        malformed("body", &format!("The body is not JSON: {message}."))
    })?;
    if !value.is_object() {
        return Err(malformed("body", "Send a JSON object."));
    }
    if distribution_type || value.get("events").is_some() {
        distribution(&value)
    } else if value.get("push_data").is_some() {
        docker_hub(&value)
    } else {
        Err(malformed(
            "body",
            "The body is neither a Docker Hub push (push_data, repository) nor a registry notification (events).",
        ))
    }
}

fn checked_tag(tag: &str, field: &str) -> Result<String, FieldError> {
    check_tag(tag).map_err(|m| malformed(field, &m))?;
    Ok(tag.to_string())
}

fn checked_repository(repository: &str, field: &str) -> Result<String, FieldError> {
    check_repository_path(repository).map_err(|m| malformed(field, &m))?;
    Ok(repository.to_string())
}

fn docker_hub(value: &Value) -> Result<Notification, FieldError> {
    let push_data = object(value, "push_data", "push_data")?;
    let tag = checked_tag(text(push_data, "tag", "push_data.tag")?, "push_data.tag")?;
    let pushed_at = match push_data.get("pushed_at") {
        Some(Value::Number(n)) => n.to_string(),
        None | Some(Value::Null) => {
            return Err(malformed(
                "push_data.pushed_at",
                "push_data.pushed_at is missing: Docker Hub's push names when it happened.",
            ));
        }
        Some(_) => {
            return Err(malformed(
                "push_data.pushed_at",
                "push_data.pushed_at must be a number (seconds since 1970).",
            ));
        }
    };
    let repository = object(value, "repository", "repository")?;
    let name = checked_repository(
        text(repository, "repo_name", "repository.repo_name")?,
        "repository.repo_name",
    )?;
    Ok(Notification {
        pushes: vec![Push {
            registry: DOCKER_HUB.to_string(),
            registry_field: "repository.repo_name".into(),
            repository: normalise_repository(DOCKER_HUB, &name),
            repository_field: "repository.repo_name".into(),
            delivery: format!("docker-hub {name}:{tag} at {pushed_at}"),
            tag,
            tag_field: "push_data.tag".into(),
            digest: None,
            digest_field: String::new(),
        }],
    })
}

fn distribution(value: &Value) -> Result<Notification, FieldError> {
    let events = match value.get("events") {
        Some(Value::Array(events)) => events,
        None | Some(Value::Null) => {
            return Err(malformed(
                "events",
                "events is missing: a registry notification lists its events.",
            ));
        }
        Some(_) => return Err(malformed("events", "events must be an array.")),
    };
    let mut pushes = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let at = |key: &str| format!("events[{i}].{key}");
        if !event.is_object() {
            return Err(malformed(
                &format!("events[{i}]"),
                "Each event is an object.",
            ));
        }
        // Pulls, deletes and mounts move no tag.
        if text(event, "action", &at("action"))? != "push" {
            continue;
        }
        let id = text(event, "id", &at("id"))?;
        let target = object(event, "target", &at("target"))?;
        let request = object(event, "request", &at("request"))?;
        let repository = checked_repository(
            text(target, "repository", &at("target.repository"))?,
            &at("target.repository"),
        )?;
        let host = text(request, "host", &at("request.host"))?;
        let digest = match target.get("digest") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => {
                check_sha256_digest(d).map_err(|m| malformed(&at("target.digest"), &m))?;
                Some(d.clone())
            }
            Some(_) => {
                return Err(malformed(
                    &at("target.digest"),
                    "target.digest must be a string.",
                ));
            }
        };
        // A push by digest alone (or a blob's) moves no tag: nothing the repository follows.
        let tag = match target.get("tag") {
            None | Some(Value::Null) => continue,
            Some(Value::String(t)) => checked_tag(t, &at("target.tag"))?,
            Some(_) => {
                return Err(malformed(&at("target.tag"), "target.tag must be a string."));
            }
        };
        let registry = normalise_registry(host);
        pushes.push(Push {
            repository: normalise_repository(&registry, &repository),
            registry,
            registry_field: at("request.host"),
            repository_field: at("target.repository"),
            tag,
            tag_field: at("target.tag"),
            digest,
            digest_field: at("target.digest"),
            delivery: format!("distribution {id}"),
        });
    }
    Ok(Notification { pushes })
}

/// The push of `notification` that is for `image`, or why none is (naming the field of the
/// closest miss: the first push's first part that differs).
pub fn push_for<'a>(
    image: &ImageName,
    notification: &'a Notification,
) -> Result<&'a Push, FieldError> {
    let Some(tag) = &image.tag else {
        return Err(FieldError::new(
            "image",
            format!(
                "The repository's image {} is pinned to a digest without a tag, so no push can update it: give it a tag first.",
                image.unpinned
            ),
        ));
    };
    if let Some(push) = notification
        .pushes
        .iter()
        .find(|p| p.registry == image.registry && p.repository == image.repository && &p.tag == tag)
    {
        return Ok(push);
    }
    let Some(first) = notification.pushes.first() else {
        return Err(FieldError::new(
            "events",
            "No push of a tag in this notification.",
        ));
    };
    let wanted = format!("{}/{}:{tag}", image.registry, image.repository);
    let (field, got) = if first.registry != image.registry {
        (&first.registry_field, &first.registry)
    } else if first.repository != image.repository {
        (&first.repository_field, &first.repository)
    } else {
        (&first.tag_field, &first.tag)
    };
    Err(FieldError::new(
        field,
        format!(
            "This push is for {got}, not for the repository's image {wanted}: send only pushes of that image (registry, repository and tag) to this webhook."
        ),
    ))
}

/// One remembered delivery: a hash of what identifies it, and when it was applied (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub at: i64,
}

fn delivery_id(delivery: &str) -> String {
    hex(&Sha256::digest(delivery.as_bytes())[..16])
}

/// The deliveries recorded on a Deployment; an unreadable record counts as none (it only
/// guards replays and the rate, and the next delivery writes it anew).
pub fn deliveries_of(annotations: Option<&BTreeMap<String, String>>) -> Vec<Delivery> {
    annotations
        .and_then(|a| a.get(DELIVERIES))
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default()
}

/// `Err(seconds to wait)` when [`RATE_MAX`] deliveries were applied within the window before `now`.
pub fn rate_allows(deliveries: &[Delivery], now: i64) -> Result<(), u64> {
    let recent: Vec<i64> = deliveries
        .iter()
        .map(|d| d.at)
        .filter(|at| now - at < RATE_WINDOW_SECS)
        .collect();
    if recent.len() < RATE_MAX {
        return Ok(());
    }
    let oldest = recent.iter().min().copied().unwrap_or(now);
    Err(u64::try_from(RATE_WINDOW_SECS - (now - oldest))
        .unwrap_or(1)
        .max(1))
}

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// A rollout started with this image.
    Redeploying { image: String },
    /// The same delivery was applied before; nothing changed.
    AlreadyApplied { image: String },
    /// The notification reports no push of a tag (only pulls, say); nothing to do.
    Ignored { reason: String },
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

impl RepositoryStore {
    /// Turns the webhook on with a new token (the old one stops working), or off with `None`;
    /// only the token's hash is written.
    pub async fn set_webhook(
        &self,
        namespace: &str,
        name: &str,
        token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.answering()?;
        let deadline = self.deadline();
        let deployments = self.api::<Deployment>(namespace);
        let mut attempts = 0;
        let written = loop {
            attempts += 1;
            let current = self
                .managed_deployment_by(namespace, name, deadline)
                .await?;
            let annotations = match token {
                Some(t) => serde_json::json!({ TOKEN_SHA256: token_digest(t) }),
                None => serde_json::json!({ TOKEN_SHA256: null, DELIVERIES: null }),
            };
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": current.metadata.resource_version,
                    "annotations": annotations,
                },
            });
            match self
                .within(
                    deadline,
                    deployments.patch(name, &env_patch_params(), &Patch::Merge(patch)),
                )
                .await?
            {
                Ok(applied) => break applied.metadata.resource_version.unwrap_or_default(),
                Err(e) if is_conflict(&e) && attempts < super::store::CHANGE_ATTEMPTS => continue,
                Err(e) if is_conflict(&e) => {
                    return Err(StoreError::Busy {
                        name: name.to_string(),
                        attempts,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.seen("webhook token", |c| {
            c.namespace(namespace)
                .and_then(|ns| ns.deployments.get(name))
                .is_some_and(|d| has_seen(&d.id.resource_version, &written))
        })
        .await;
        tracing::info!(
            namespace,
            repository = name,
            on = token.is_some(),
            "webhook token set"
        );
        Ok(())
    }

    /// Applies a delivery to the webhook's repository: the token is checked against the
    /// Deployment as read now (a wrong one changes nothing, whether the repository exists or
    /// not), then the notification (`Err` when it could not be read), a replay, the image and
    /// the rate, and then one merge patch on the version read starts the redeploy and records the
    /// delivery together, so a concurrent replay (on any replica) conflicts, reads again and
    /// finds it recorded.
    pub async fn deliver(
        &self,
        namespace: &str,
        name: &str,
        token: &str,
        notification: Result<Notification, FieldError>,
    ) -> Result<Outcome, StoreError> {
        self.answering()?;
        let deadline = self.deadline();
        let deployments = self.api::<Deployment>(namespace);
        let mut attempts = 0;
        let (outcome, written) = loop {
            attempts += 1;
            let current = match self.within(deadline, deployments.get_opt(name)).await?? {
                Some(d) if is_managed(&d.metadata) => d,
                _ => return Err(StoreError::WebhookRefused),
            };
            let annotations = current.metadata.annotations.as_ref();
            let stored = annotations.and_then(|a| a.get(TOKEN_SHA256));
            if !stored.is_some_and(|s| token_matches(s, token)) {
                return Err(StoreError::WebhookRefused);
            }
            let notification = notification.clone().map_err(StoreError::WebhookMalformed)?;
            let Some(container) = current
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
            else {
                return Err(StoreError::NotFound(name.to_string()));
            };
            let image = ImageName::parse(container.image.as_deref().unwrap_or_default());
            let mut deliveries = deliveries_of(annotations);
            let already = notification.pushes.iter().find(|p| {
                let id = delivery_id(&p.delivery);
                deliveries.iter().any(|d| d.id == id)
            });
            if already.is_some() {
                return Ok(Outcome::AlreadyApplied {
                    image: image.unpinned,
                });
            }
            if notification.pushes.is_empty() {
                return Ok(Outcome::Ignored {
                    reason: "The notification reports no push of a tag.".into(),
                });
            }
            let push = push_for(&image, &notification).map_err(|e| StoreError::Invalid(vec![e]))?;
            let now = now();
            rate_allows(&deliveries, now)
                .map_err(|retry_after_secs| StoreError::WebhookRateLimited { retry_after_secs })?;
            let new_image = match &push.digest {
                Some(digest) => format!("{}@{digest}", image.unpinned),
                None => image.unpinned.clone(),
            };
            // The pinned reference must pass the rules of the image field, or the next change
            // through the site would refuse the repository's own image.
            if let Err(rule) = super::image::normalise_image(&new_image) {
                return Err(StoreError::Invalid(vec![FieldError::new(
                    &push.digest_field,
                    format!("Pinned to this digest the image would break a rule: {rule}"),
                )]));
            }
            deliveries.push(Delivery {
                id: delivery_id(&push.delivery),
                at: now,
            });
            let keep_from = deliveries.len().saturating_sub(REMEMBERED);
            let deliveries = serde_json::to_string(&deliveries[keep_from..]).unwrap_or_default();
            let mut containers = current
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|s| s.containers.clone())
                .unwrap_or_default();
            if let Some(first) = containers.first_mut() {
                first.image = Some(new_image.clone());
                // A push without a digest says the tag now names other content: a node that
                // has the tag cached must pull it again, whatever the tag. A digest never moves.
                first.image_pull_policy = Some(
                    if push.digest.is_some() {
                        "IfNotPresent"
                    } else {
                        "Always"
                    }
                    .into(),
                );
            }
            let change = match &push.digest {
                Some(digest) => format!("push of {} ({digest})", image.unpinned),
                None => format!("push of {}", image.unpinned),
            };
            // The same rolling restart as the Redeploy button (a new `restartedAt`), with the
            // webhook as the revision's author.
            let patch = serde_json::json!({
                "metadata": {
                    "resourceVersion": current.metadata.resource_version,
                    "annotations": { DELIVERIES: deliveries },
                },
                "spec": { "template": {
                    "metadata": { "annotations": {
                        RESTARTED_AT: k8s_openapi::jiff::Timestamp::now().to_string(),
                        objects::DEPLOYED_BY: DEPLOYER,
                        objects::CHANGE: change,
                    } },
                    "spec": { "containers": containers },
                } },
            });
            match self
                .within(
                    deadline,
                    deployments.patch(name, &env_patch_params(), &Patch::Merge(patch)),
                )
                .await?
            {
                Ok(applied) => {
                    break (
                        Outcome::Redeploying { image: new_image },
                        applied.metadata.resource_version.unwrap_or_default(),
                    );
                }
                Err(e) if is_conflict(&e) && attempts < super::store::CHANGE_ATTEMPTS => continue,
                Err(e) if is_conflict(&e) => {
                    return Err(StoreError::Busy {
                        name: name.to_string(),
                        attempts,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.seen("webhook redeploy", |c| {
            c.namespace(namespace)
                .and_then(|ns| ns.deployments.get(name))
                .is_some_and(|d| has_seen(&d.id.resource_version, &written))
        })
        .await;
        if let Outcome::Redeploying { image } = &outcome {
            tracing::info!(namespace, repository = name, %image, "webhook redeploy");
        }
        Ok(outcome)
    }
}

/// The webhook URL of a repository with that token.
fn hook_url(state: &AppState, namespace: &str, name: &str, token: &str) -> String {
    format!(
        "{}/hooks/v1/{namespace}/{name}?token={token}",
        state.config.public_url.base()
    )
}

/// What the site answers once when it makes a token: the only time the URL is shown.
#[derive(Debug, Serialize)]
pub struct NewWebhook {
    pub url: String,
    pub message: &'static str,
}

const SHOWN_ONCE: &str =
    "Copy this URL now: it is shown only once. Making a new one stops this one from working.";

/// Makes a new token for the repository (the old one stops working) and its URL.
pub async fn enable(state: &AppState, namespace: &str, name: &str) -> Result<NewWebhook, AppError> {
    let token = new_token();
    state
        .repositories
        .set_webhook(namespace, name, Some(&token))
        .await?;
    Ok(NewWebhook {
        url: hook_url(state, namespace, name, &token),
        message: SHOWN_ONCE,
    })
}

/// `POST /api/v1/repos/{name}/webhook`.
pub async fn api_create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let made = enable(&state, user.namespace(), &name).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(made),
    ))
}

/// `DELETE /api/v1/repos/{name}/webhook`: the webhook is off, its URL answers 401.
pub async fn api_delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .repositories
        .set_webhook(user.namespace(), &name, None)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The detail page's "Make a webhook URL": the page again, with the new URL shown this once
/// (not a redirect, so the URL is in no address bar or history; `no-store` keeps it out of
/// caches).
pub async fn page_create(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    let made = enable(&state, user.namespace(), &name).await?;
    let submitted = Submitted {
        webhook_url: Some(&made.url),
        ..Submitted::default()
    };
    let page = detail::page(&state, &user, &csrf, &name, submitted).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], page).into_response())
}

/// The detail page's "Turn the webhook off".
pub async fn page_delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .repositories
        .set_webhook(user.namespace(), &name, None)
        .await?;
    Ok(Redirect::to(&format!("/repos/{name}?done=webhook-off")))
}

/// The token of a webhook request's query string (`token=`); it is never logged: the request
/// log names the path only.
fn token_of(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// `POST /hooks/v1/{namespace}/{repo}?token=…`: a registry's push notification. No session and
/// no CSRF token (see `app::CSRF_EXEMPT`): the token in the URL is the credential. Anything
/// that is not a managed repository of a developer's namespace with this token answers the same
/// 401, so the answer does not tell which repositories exist.
pub async fn deliver(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Result<Response, AppError> {
    let token = token_of(request.uri().query())
        .unwrap_or_default()
        .to_string();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body: Body = request.into_body();
    let bytes =
        axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|_| AppError::BodyTooLarge {
                limit_kib: BODY_LIMIT / 1024,
            })?;
    let config = &state.config;
    let developers = check_dns1035_label(&name).is_ok()
        && namespace != config.system_namespace
        && !config.platform_namespaces.contains(&namespace)
        && crate::accounts::password::check_username(&namespace, &config.platform_namespaces)
            .is_ok();
    if token.is_empty() || !developers {
        return Err(AppError::WebhookRefused);
    }
    let notification = parse_notification(content_type.as_deref(), &bytes);
    let outcome = state
        .repositories
        .deliver(&namespace, &name, &token, notification)
        .await?;
    let status = match outcome {
        Outcome::Redeploying { .. } => StatusCode::ACCEPTED,
        Outcome::AlreadyApplied { .. } | Outcome::Ignored { .. } => StatusCode::OK,
    };
    Ok((status, Json(outcome)).into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn tokens_are_random_url_safe_and_only_their_hash_matches() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let stored = token_digest(&a);
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains(&a));
        assert!(token_matches(&stored, &a));
        assert!(!token_matches(&stored, &b));
        assert!(!token_matches(&stored, ""));
        assert!(!token_matches("", &a));
    }

    #[test]
    fn image_names_write_docker_hub_short_names_out() {
        let cases = [
            ("nginx:1.27", "docker.io", "library/nginx", Some("1.27")),
            (
                "docker.io/library/nginx:latest",
                "docker.io",
                "library/nginx",
                Some("latest"),
            ),
            (
                "index.docker.io/org/app:v1",
                "docker.io",
                "org/app",
                Some("v1"),
            ),
            ("org/app:v1", "docker.io", "org/app", Some("v1")),
            ("ghcr.io/org/app:1.0", "ghcr.io", "org/app", Some("1.0")),
            (
                "localhost:5000/app:dev",
                "localhost:5000",
                "app",
                Some("dev"),
            ),
        ];
        for (reference, registry, repository, tag) in cases {
            let n = ImageName::parse(reference);
            assert_eq!(
                (n.registry.as_str(), n.repository.as_str(), n.tag.as_deref()),
                (registry, repository, tag),
                "{reference}"
            );
            assert_eq!(n.unpinned, reference);
        }
        let pinned = ImageName::parse(&format!("nginx:1.27@{}", digest('a')));
        assert_eq!(pinned.unpinned, "nginx:1.27");
        assert_eq!(pinned.digest, Some(digest('a')));
    }

    fn hub(repo_name: &str, tag: &str) -> Vec<u8> {
        serde_json::json!({
            "callback_url": "https://registry.hub.docker.com/u/x/y/hook/1/",
            "push_data": {"pushed_at": 1_417_566_161, "pusher": "x", "tag": tag},
            "repository": {"repo_name": repo_name, "name": "y", "namespace": "x"},
        })
        .to_string()
        .into_bytes()
    }

    fn events(events: Value) -> Vec<u8> {
        serde_json::json!({ "events": events })
            .to_string()
            .into_bytes()
    }

    fn push_event(id: &str, host: &str, repository: &str, tag: Option<&str>) -> Value {
        let mut target = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "repository": repository,
            "digest": digest('b'),
        });
        if let Some(t) = tag {
            target["tag"] = t.into();
        }
        serde_json::json!({"id": id, "action": "push", "target": target, "request": {"host": host}})
    }

    #[test]
    fn reads_docker_hub_and_distribution_notifications() {
        let n =
            parse_notification(Some("application/json"), &hub("library/nginx", "1.27")).unwrap();
        let image = ImageName::parse("nginx:1.27");
        let p = push_for(&image, &n).unwrap();
        assert_eq!(p.digest, None);
        assert_eq!(p.delivery, "docker-hub library/nginx:1.27 at 1417566161");

        let body = events(serde_json::json!([
            {"id": "p1", "action": "pull", "target": {"repository": "org/app"}, "request": {"host": "r.example"}},
            push_event("e1", "r.example", "org/other", Some("1.0")),
            push_event("e2", "r.example", "org/app", Some("1.0")),
            push_event("e3", "r.example", "org/app", None),
        ]));
        let n = parse_notification(Some(DISTRIBUTION_MEDIA_TYPE), &body).unwrap();
        assert_eq!(
            n.pushes.len(),
            2,
            "the pull and the push without a tag are left out"
        );
        let p = push_for(&ImageName::parse("r.example/org/app:1.0"), &n).unwrap();
        assert_eq!(p.delivery, "distribution e2");
        assert_eq!(p.digest, Some(digest('b')));
        // The same envelope sent as plain JSON is read the same way.
        assert_eq!(
            parse_notification(Some("application/json; charset=utf-8"), &body).unwrap(),
            n
        );
    }

    #[test]
    fn a_push_of_another_image_names_the_field_that_differs() {
        let image = ImageName::parse("r.example/org/app:1.0");
        let cases = [
            (
                push_event("a", "other.example", "org/app", Some("1.0")),
                "events[0].request.host",
            ),
            (
                push_event("a", "r.example", "org/else", Some("1.0")),
                "events[0].target.repository",
            ),
            (
                push_event("a", "r.example", "org/app", Some("2.0")),
                "events[0].target.tag",
            ),
        ];
        for (event, field) in cases {
            let n = parse_notification(
                Some(DISTRIBUTION_MEDIA_TYPE),
                &events(serde_json::json!([event])),
            )
            .unwrap();
            assert_eq!(push_for(&image, &n).unwrap_err().field, field);
        }
        let n = parse_notification(Some("application/json"), &hub("org/app", "1.0")).unwrap();
        assert_eq!(
            push_for(&image, &n).unwrap_err().field,
            "repository.repo_name"
        );
        let n =
            parse_notification(Some("application/json"), &hub("library/nginx", "1.26")).unwrap();
        assert_eq!(
            push_for(&ImageName::parse("nginx:1.27"), &n)
                .unwrap_err()
                .field,
            "push_data.tag"
        );
    }

    #[test]
    fn malformed_notifications_name_the_field() {
        let json = Some("application/json");
        let cases: Vec<(Option<&str>, Vec<u8>, &str)> = vec![
            (Some("text/plain"), hub("org/app", "1"), "content-type"),
            (None, hub("org/app", "1"), "content-type"),
            (json, b"{not json".to_vec(), "body"),
            (json, b"[1]".to_vec(), "body"),
            (json, b"{}".to_vec(), "body"),
            (
                json,
                br#"{"push_data": {"pushed_at": 1}, "repository": {"repo_name": "a/b"}}"#.to_vec(),
                "push_data.tag",
            ),
            (
                json,
                br#"{"push_data": {"tag": "1"}, "repository": {"repo_name": "a/b"}}"#.to_vec(),
                "push_data.pushed_at",
            ),
            (
                json,
                br#"{"push_data": {"tag": "1", "pushed_at": 1}}"#.to_vec(),
                "repository",
            ),
            (json, hub("Org/App", "1"), "repository.repo_name"),
            (json, hub("org/app", "-bad"), "push_data.tag"),
            (Some(DISTRIBUTION_MEDIA_TYPE), b"{}".to_vec(), "events"),
            (
                Some(DISTRIBUTION_MEDIA_TYPE),
                events(serde_json::json!({})),
                "events",
            ),
            (
                Some(DISTRIBUTION_MEDIA_TYPE),
                events(serde_json::json!([{"action": "push"}])),
                "events[0].id",
            ),
            (
                Some(DISTRIBUTION_MEDIA_TYPE),
                events(
                    serde_json::json!([{"id": "x", "action": "push", "target": {"repository": "a", "tag": "1", "digest": "sha256:abc"}, "request": {"host": "h"}}]),
                ),
                "events[0].target.digest",
            ),
            (
                Some(DISTRIBUTION_MEDIA_TYPE),
                events(
                    serde_json::json!([{"id": "x", "action": "push", "target": {"repository": "a", "tag": "1"}}]),
                ),
                "events[0].request",
            ),
        ];
        for (content_type, body, field) in cases {
            let e = parse_notification(content_type, &body).unwrap_err();
            assert_eq!(
                e.field,
                field,
                "{}: {}",
                String::from_utf8_lossy(&body),
                e.message
            );
        }
    }

    #[test]
    fn rate_counts_the_deliveries_of_the_last_minute() {
        let at = |secs: &[i64]| -> Vec<Delivery> {
            secs.iter()
                .map(|s| Delivery {
                    id: s.to_string(),
                    at: *s,
                })
                .collect()
        };
        assert_eq!(rate_allows(&at(&[100, 101, 102, 103]), 110), Ok(()));
        assert_eq!(rate_allows(&at(&[100, 101, 102, 103, 104]), 110), Err(50));
        assert_eq!(rate_allows(&at(&[40, 101, 102, 103, 104]), 110), Ok(()));
        assert_eq!(rate_allows(&at(&[100, 101, 102, 103, 104]), 160), Ok(()));
    }

    #[test]
    fn the_token_is_read_from_the_query_only_when_given() {
        assert_eq!(token_of(Some("token=abc")), Some("abc"));
        assert_eq!(token_of(Some("x=1&token=abc")), Some("abc"));
        assert_eq!(token_of(Some("token=")), None);
        assert_eq!(token_of(Some("tokens=abc")), None);
        assert_eq!(token_of(None), None);
    }
}
