//! The watches that fill the mirror, one kube-runtime `watcher` per kind, each under what the
//! site's ClusterRole and Role allow (list and watch; see `manifests/deploy-site.yaml`).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    Event, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;

use super::compact::{
    DeploymentView, EventView, IngressView, PodView, PresenceView, ReplicaSetView, SecretView,
    ServiceView,
};
use super::{Contents, Inner, Scope, Touched};
use crate::accounts::store::account_of;
use crate::repositories::objects::managed_selector;

/// The watches, in the order of their health records.
pub(super) const NAMES: [&str; 10] = [
    "namespaces",
    "resourcequotas",
    "limitranges",
    "deployments",
    "replicasets",
    "pods",
    "services",
    "ingresses",
    "events",
    "secrets",
];

/// The name of the quota and limits the site writes in each user namespace.
const POLICY_NAME: &str = "kdeploy";

/// Retry delays after a failed list or watch: from a quarter second, doubling, at most 4 s.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const LAST_RETRY: Duration = Duration::from_secs(4);

/// How one kind is filed into the mirror.
struct Filing<K> {
    /// The namespace whose view an object's change touches.
    namespace: fn(&K) -> Option<&str>,
    apply: fn(&mut Contents, &K),
    delete: fn(&mut Contents, &K),
    /// Replaces the kind's records with those of a fresh list.
    replace: fn(&mut Contents, Contents),
}

macro_rules! in_namespaces {
    ($ty:ty, $field:ident, $of:expr) => {
        Filing::<$ty> {
            namespace: own_namespace::<$ty>,
            apply: |c, o| {
                let (Some(ns), Some(_)) = (&o.metadata.namespace, &o.metadata.name) else {
                    return;
                };
                c.namespace_mut(ns).$field.insert($of(o));
            },
            delete: |c, o| {
                let (Some(ns), Some(name)) = (&o.metadata.namespace, &o.metadata.name) else {
                    return;
                };
                if let Some(n) = c.namespaces.get_mut(ns) {
                    n.$field.remove(name.as_str());
                }
                c.tidy(ns);
            },
            replace: |c, fresh| {
                for n in c.namespaces.values_mut() {
                    n.$field.clear();
                }
                for (ns, mut n) in fresh.namespaces {
                    std::mem::swap(&mut c.namespace_mut(&ns).$field, &mut n.$field);
                }
                c.namespaces.retain(|_, n| !n.is_empty());
            },
        }
    };
}

macro_rules! one_per_namespace {
    ($ty:ty, $field:ident, $of:expr, $namespace:expr) => {
        Filing::<$ty> {
            namespace: $namespace,
            apply: |c, o| {
                let Some(ns) = $namespace(o) else { return };
                c.namespace_mut(ns).$field = Some($of(o));
            },
            delete: |c, o| {
                let Some(ns) = $namespace(o) else { return };
                if let Some(n) = c.namespaces.get_mut(ns) {
                    n.$field = None;
                }
                c.tidy(ns);
            },
            replace: |c, fresh| {
                for n in c.namespaces.values_mut() {
                    n.$field = None;
                }
                for (ns, n) in fresh.namespaces {
                    c.namespace_mut(&ns).$field = n.$field;
                }
                c.namespaces.retain(|_, n| !n.is_empty());
            },
        }
    };
}

fn own_namespace<K: kube::Resource>(o: &K) -> Option<&str> {
    o.meta().namespace.as_deref()
}

fn its_name<K: kube::Resource>(o: &K) -> Option<&str> {
    o.meta().name.as_deref()
}

/// Starts every watch; each returns its task's handle.
pub(super) fn spawn(client: &kube::Client, scope: &Scope, inner: &Arc<Inner>) -> Vec<AbortHandle> {
    let managed = || watcher::Config::default().labels(&managed_selector());
    let everything = watcher::Config::default;
    let shared = Arc::new(scope.clone());
    let user = move || {
        let scope = shared.clone();
        move |ns: Option<&str>| ns.is_some_and(|ns| scope.is_user_namespace(ns))
    };
    let policy = {
        let user = user.clone();
        move || {
            let user = user();
            move |ns: Option<&str>, name: Option<&str>| user(ns) && name == Some(POLICY_NAME)
        }
    };
    let all = |c: &kube::Client| c.clone();
    let mut tasks = Vec::new();
    let mut start = |task: tokio::task::JoinHandle<()>| tasks.push(task.abort_handle());

    start(tokio::spawn(run(
        inner.clone(),
        0,
        Api::<Namespace>::all(all(client)),
        managed(),
        {
            let user = user();
            move |n: &Namespace| user(n.metadata.name.as_deref())
        },
        one_per_namespace!(Namespace, namespace, PresenceView::namespace, its_name),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        1,
        Api::<ResourceQuota>::all(all(client)),
        managed(),
        {
            let policy = policy();
            move |q: &ResourceQuota| policy(own_namespace(q), its_name(q))
        },
        one_per_namespace!(ResourceQuota, quota, PresenceView::quota, own_namespace),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        2,
        Api::<LimitRange>::all(all(client)),
        managed(),
        {
            let policy = policy();
            move |l: &LimitRange| policy(own_namespace(l), its_name(l))
        },
        one_per_namespace!(LimitRange, limits, PresenceView::limits, own_namespace),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        3,
        Api::<Deployment>::all(all(client)),
        managed(),
        {
            let user = user();
            move |o: &Deployment| user(own_namespace(o))
        },
        in_namespaces!(Deployment, deployments, DeploymentView::of),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        4,
        Api::<ReplicaSet>::all(all(client)),
        managed(),
        {
            let user = user();
            move |o: &ReplicaSet| user(own_namespace(o))
        },
        in_namespaces!(ReplicaSet, replica_sets, ReplicaSetView::of),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        5,
        Api::<Pod>::all(all(client)),
        managed(),
        {
            let user = user();
            move |o: &Pod| user(own_namespace(o))
        },
        in_namespaces!(Pod, pods, PodView::of),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        6,
        Api::<Service>::all(all(client)),
        managed(),
        {
            let user = user();
            move |o: &Service| user(own_namespace(o))
        },
        in_namespaces!(Service, services, ServiceView::of),
    )));
    // Every Ingress, not only the site's: a hand-made one may be what the controller refused.
    start(tokio::spawn(run(
        inner.clone(),
        7,
        Api::<Ingress>::all(all(client)),
        everything(),
        {
            let user = user();
            move |o: &Ingress| user(own_namespace(o))
        },
        in_namespaces!(Ingress, ingresses, IngressView::of),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        8,
        Api::<Event>::all(all(client)),
        everything(),
        {
            let user = user();
            move |o: &Event| user(own_namespace(o))
        },
        in_namespaces!(Event, events, EventView::of),
    )));
    start(tokio::spawn(run(
        inner.clone(),
        9,
        Api::<Secret>::namespaced(all(client), &scope.system_namespace),
        everything(),
        |_: &Secret| true,
        Filing::<Secret> {
            // The site's own namespace: followers of it learn of accounts changing.
            namespace: own_namespace::<Secret>,
            apply: |c, s| {
                let record = SecretView::of(s, account_of);
                c.secrets.insert(record.id.name.to_string(), record);
            },
            delete: |c, s| {
                if let Some(name) = &s.metadata.name {
                    c.secrets.remove(name);
                }
            },
            replace: |c, fresh| c.secrets = fresh.secrets,
        },
    )));
    tasks
}

/// Runs one watch for the life of the mirror: files its events, notes its health, and waits a
/// growing delay after a failure (the watcher itself resumes the watch, or relists after 410).
async fn run<K>(
    inner: Arc<Inner>,
    index: usize,
    api: Api<K>,
    config: watcher::Config,
    keep: impl Fn(&K) -> bool + Send + 'static,
    filing: Filing<K>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let name = super::watches::NAMES.get(index).copied().unwrap_or("watch");
    let mut stream = std::pin::pin!(watcher(api, config));
    let mut listing: Option<Contents> = None;
    let mut retry = FIRST_RETRY;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(watch = name, error = %e, retry_ms = retry.as_millis(), "watch failed; retrying");
                inner.health(index, |h| {
                    h.last_error = Some((Instant::now(), e.to_string()))
                });
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LAST_RETRY);
                continue;
            }
        };
        retry = FIRST_RETRY;
        match event {
            watcher::Event::Init => listing = Some(Contents::default()),
            watcher::Event::InitApply(o) => {
                if keep(&o) {
                    (filing.apply)(listing.get_or_insert_with(Contents::default), &o);
                }
            }
            watcher::Event::InitDone => {
                let fresh = listing.take().unwrap_or_default();
                inner.change(Touched::Every, |c| (filing.replace)(c, fresh));
                inner.health(index, |h| {
                    h.synced = true;
                    h.events += 1;
                    h.lists += 1;
                });
            }
            watcher::Event::Apply(o) => {
                if keep(&o) {
                    inner.change(touched(&filing, &o), |c| (filing.apply)(c, &o));
                }
                inner.health(index, |h| h.events += 1);
            }
            watcher::Event::Delete(o) => {
                if keep(&o) {
                    inner.change(touched(&filing, &o), |c| (filing.delete)(c, &o));
                }
                inner.health(index, |h| h.events += 1);
            }
        }
    }
}

/// The namespace an object's change touches (every one, for an object without a namespace).
fn touched<'a, K>(filing: &Filing<K>, object: &'a K) -> Touched<'a> {
    (filing.namespace)(object).map_or(Touched::Every, Touched::Namespace)
}
