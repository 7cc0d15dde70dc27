//! Named waits on the cluster (nodes Ready, a rollout complete, the ingress controller serving the
//! public routes, the first credentials present),
//! each a kube-runtime watch checked against a condition until it holds or a deadline passes.
//! On timeout the error says what was awaited and the last state seen, because "timed out"
//! alone sends an operator looking in the wrong place.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Node, Secret};
use kube::runtime::wait::{Condition, conditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::credentials::{Credentials, secret_name};
use crate::error::{Error, Result};
use crate::ingress::EVENT_SOURCE;
use crate::names::{INITIAL_ADMIN_SECRET, SYSTEM_NAMESPACE};
use crate::verdict::{self, Judgement, Verdict};

/// Receives a status line ("3 nodes to be Ready: 1/3 Ready") whenever what a wait sees changes.
pub type Progress = dyn Fn(&str) + Send + Sync;

/// How long a wait may take and where its status lines go.
#[derive(Clone, Copy)]
pub struct Patience<'a> {
    pub limit: Duration,
    pub progress: Option<&'a Progress>,
}

impl<'a> Patience<'a> {
    /// Waits up to `limit`, silently.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            progress: None,
        }
    }

    /// Sends each change of state to `progress`.
    pub fn reporting(self, progress: &'a Progress) -> Self {
        Self {
            progress: Some(progress),
            ..self
        }
    }

    fn report(&self, what: &str, state: &str) {
        if let Some(progress) = self.progress {
            progress(&format!("{what}: {state}"));
        }
    }
}

/// What a condition made of the objects seen so far.
pub enum Seen<T> {
    Done(T),
    /// Not yet; the text describes the state for progress lines and the timeout error.
    Pending(String),
}

/// A node whose `Ready` condition is `True`.
pub fn node_is_ready() -> impl Condition<Node> {
    |node: Option<&Node>| {
        node.and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }
}

/// A Deployment whose controller has seen its latest spec and finished rolling it out.
pub fn rollout_is_complete() -> impl Condition<Deployment> {
    |deployment: Option<&Deployment>| {
        let observed = deployment.is_some_and(|d| {
            let seen = d.status.as_ref().and_then(|s| s.observed_generation);
            seen.is_some() && seen >= d.metadata.generation
        });
        observed && conditions::is_deployment_completed().matches_object(deployment)
    }
}

/// Waits until at least `want` nodes are Ready; returns how many are.
pub async fn nodes_ready(
    client: &kube::Client,
    want: usize,
    patience: Patience<'_>,
) -> Result<usize> {
    let is_ready = node_is_ready();
    let what = format!("{want} nodes to be Ready");
    watch_until(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
        &what,
        patience,
        |nodes| {
            let ready = nodes
                .iter()
                .filter(|n| is_ready.matches_object(Some(n)))
                .count();
            if ready >= want {
                Seen::Done(ready)
            } else {
                Seen::Pending(format!("{ready}/{want} Ready"))
            }
        },
    )
    .await
}

/// Waits until the Deployment `namespace/name` has rolled out its latest spec.
pub async fn rollout_complete(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    patience: Patience<'_>,
) -> Result<()> {
    let is_complete = rollout_is_complete();
    let what = format!("the rollout of Deployment {namespace}/{name}");
    watch_until(
        Api::<Deployment>::namespaced(client.clone(), namespace),
        named(name),
        &what,
        patience,
        |found| match found.first() {
            Some(d) if is_complete.matches_object(Some(d)) => Seen::Done(()),
            Some(d) => Seen::Pending(rollout_state(d)),
            None => Seen::Pending("the Deployment does not exist yet".into()),
        },
    )
    .await
}

/// An Ingress whose acceptance by the ingress controller a wait looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// The Ingress's current uid: Events about an earlier Ingress of the same name do not count.
    pub uid: String,
    /// Set when the caller has just changed the Ingress (its resourceVersion after the change):
    /// a verdict on an earlier version does not count.
    pub changed_at: Option<String>,
}

/// Waits until the controller's verdict on each of these Ingresses of `namespace` is
/// `AddedOrUpdated`. A verdict that depends on other resources (the host or path held by an
/// older one, a master not judged yet) is waited out and shown as the state; one saying the
/// Ingress itself is invalid or NGINX failed to load it ends the wait with NIC's reason and message.
pub async fn routes_accepted(
    client: &kube::Client,
    namespace: &str,
    routes: &[Route],
    patience: Patience<'_>,
) -> Result<()> {
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    let what = format!(
        "the ingress controller to accept Ingress {namespace}/{}",
        names.join(" and ")
    );
    let config = watcher::Config::default().fields(&format!(
        "involvedObject.kind=Ingress,source={EVENT_SOURCE}"
    ));
    let outcome = watch_until(
        Api::<Event>::namespaced(client.clone(), namespace),
        config,
        &what,
        patience,
        |events| {
            let mut pending = Vec::new();
            for route in routes {
                let ingress = format!("{namespace}/{}", route.name);
                let latest = verdict::latest(events.iter().map(|e| &**e), &route.uid).filter(|e| {
                    route
                        .changed_at
                        .as_deref()
                        .is_none_or(|v| verdict::judges_version(e, v))
                });
                let Some(event) = latest else {
                    pending.push(format!("{ingress} not judged yet"));
                    continue;
                };
                let verdict = Verdict::of(event);
                match verdict.judgement() {
                    Judgement::Accepted => {}
                    Judgement::Conflict => pending.push(format!(
                        "{ingress}: {}: {}",
                        verdict.reason, verdict.message
                    )),
                    Judgement::Refused => return Seen::Done(Err((ingress, verdict))),
                }
            }
            if pending.is_empty() {
                Seen::Done(Ok(()))
            } else {
                Seen::Pending(pending.join("; "))
            }
        },
    )
    .await?;
    outcome.map_err(|(ingress, verdict)| Error::RouteRefused {
        ingress,
        reason: verdict.reason,
        message: verdict.message,
    })
}

/// Waits until the site has stored its first administrator's credentials, and returns them.
pub async fn initial_admin_present(
    client: &kube::Client,
    patience: Patience<'_>,
) -> Result<Credentials> {
    let what = format!(
        "the site to store its first credentials in Secret {}",
        secret_name()
    );
    watch_until(
        Api::<Secret>::namespaced(client.clone(), SYSTEM_NAMESPACE),
        named(INITIAL_ADMIN_SECRET),
        &what,
        patience,
        |found| match found.first().map(|s| Credentials::from_secret(s)) {
            Some(Ok(credentials)) => Seen::Done(credentials),
            Some(Err(e)) => Seen::Pending(e.to_string()),
            None => Seen::Pending("the Secret does not exist yet".into()),
        },
    )
    .await
}

fn named(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// "1/2 updated, 0/2 available" from the Deployment's status.
fn rollout_state(d: &Deployment) -> String {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    format!(
        "{}/{want} updated, {}/{want} available",
        status.updated_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0)
    )
}

/// Watches `api` (narrowed by `config`) into a local store and asks `check` about the store after
/// every change, until it is done or `patience.limit` passes. Watch errors are retried with
/// backoff, except refusals (401, 403) that no amount of waiting fixes.
pub async fn watch_until<K, T>(
    api: Api<K>,
    config: watcher::Config,
    what: &str,
    patience: Patience<'_>,
    mut check: impl FnMut(&[Arc<K>]) -> Seen<T>,
) -> Result<T>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let mut last = String::from("nothing yet");
    let waiting = async {
        let stream = reflector(writer, watcher(api, config).default_backoff());
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // The store takes the initial list only when it is complete.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Ok(_) => {}
                Err(source) if refused(&source) => {
                    return Err(Error::Watch {
                        what: what.to_owned(),
                        source,
                    });
                }
                Err(source) => {
                    last = format!("the watch failed ({source}); retrying");
                    continue;
                }
            }
            match check(&reader.state()) {
                Seen::Done(value) => return Ok(value),
                Seen::Pending(state) if state != last => {
                    patience.report(what, &state);
                    last = state;
                }
                Seen::Pending(_) => {}
            }
        }
        Err(Error::Timeout {
            what: what.to_owned(),
            after: patience.limit,
            last: "the watch ended".into(),
        })
    };
    let outcome = tokio::time::timeout(patience.limit, waiting).await;
    match outcome {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            what: what.to_owned(),
            after: patience.limit,
            last,
        }),
    }
}

fn refused(error: &watcher::Error) -> bool {
    use watcher::Error as W;
    let status = match error {
        W::InitialListFailed(kube::Error::Api(s))
        | W::WatchStartFailed(kube::Error::Api(s))
        | W::WatchFailed(kube::Error::Api(s)) => s,
        W::WatchError(s) => s,
        _ => return false,
    };
    matches!(status.code, 401 | 403)
}
