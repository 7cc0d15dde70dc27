//! The compact records the mirror keeps: for each object, only the fields a page or a write
//! decision reads, decoded once when its watch event arrives.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    Event, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::config::MANAGED_BY;
use crate::repositories::env::Environment;
use crate::repositories::objects::{LABEL_MANAGED_BY, Provenance};
use crate::repositories::route::CONTROLLER_COMPONENT;
use crate::repositories::status::Replicas;

const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller gives a ReplicaSet and its pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// What every record carries: which object it is and which version of it was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: Box<str>,
    pub uid: Uid,
    pub resource_version: Version,
    pub created: Moment,
}

impl Identity {
    fn of(meta: &ObjectMeta) -> Self {
        Self {
            name: meta.name.as_deref().unwrap_or_default().into(),
            uid: Uid::new(meta.uid.as_deref().unwrap_or_default()),
            resource_version: Version::new(meta.resource_version.as_deref().unwrap_or_default()),
            created: Moment::of(meta.creation_timestamp.as_ref().map(|t| t.0)),
        }
    }
}

/// A `resourceVersion`: the number etcd (and the simulator) hands out, in 8 bytes without an
/// allocation, or any other text as it is (the API documents versions as opaque).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Version {
    Number(u64),
    Text(Box<str>),
}

impl Version {
    pub fn new(text: &str) -> Self {
        // Only the canonical spelling becomes a number, so the text written back is the one read.
        match text.parse::<u64>() {
            Ok(n) if n.to_string() == text => Self::Number(n),
            _ => Self::Text(text.into()),
        }
    }

    /// The version as a number, when it is one.
    pub fn number(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(_) => None,
        }
    }
}

impl Default for Version {
    fn default() -> Self {
        Self::Text(Box::default())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// A moment in 8 bytes: microseconds since the epoch (metav1.Time has whole seconds and
/// MicroTime microseconds, so nothing is lost), `i64::MIN` for none, which orders first as `None`
/// does.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Moment(i64);

impl Moment {
    const NONE: i64 = i64::MIN;

    fn of(t: Option<Timestamp>) -> Self {
        Self(
            t.map(Timestamp::as_microsecond)
                .filter(|m| *m != Self::NONE)
                .unwrap_or(Self::NONE),
        )
    }

    pub fn get(self) -> Option<Timestamp> {
        (self.0 != Self::NONE)
            .then(|| Timestamp::from_microsecond(self.0).ok())
            .flatten()
    }
}

impl Default for Moment {
    fn default() -> Self {
        Self(Self::NONE)
    }
}

impl fmt::Debug for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

fn managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY)
}

fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A condition that explains a failure: its reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Shared,
    pub message: Shared,
}

/// A repository's Deployment: its spec in the site's terms and its rollout status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentView {
    pub id: Identity,
    pub managed: bool,
    pub generation: i64,
    pub observed_generation: i64,
    pub revision: i64,
    pub image: Shared,
    pub port: i32,
    pub replicas: Replicas,
    /// What few repositories have, behind one pointer (`None`: none of it).
    uncommon: Option<Box<Uncommon>>,
    /// Whether its webhook is on (a token's hash is stored; the hash itself is not kept here).
    pub webhook: bool,
    /// Whether its pods pull with the namespace's registry login.
    pub registry_login: bool,
    /// Whether it has no public route (reached by its Service name only).
    pub internal: bool,
}

/// The parts of a repository's Deployment that most repositories lack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Uncommon {
    /// `Progressing` with `ProgressDeadlineExceeded`: its message.
    stuck: Option<Box<str>>,
    /// `ReplicaFailure=True`.
    replica_failure: Option<Failure>,
    /// The repository's variables: plain values and secret names (the Deployment holds no
    /// secret value).
    env: Environment,
    /// The compose project it was deployed with, if any.
    group: Option<Shared>,
}

impl DeploymentView {
    pub fn of(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let template = spec.and_then(|s| s.template.spec.as_ref());
        let container = template.and_then(|t| t.containers.first());
        let status = d.status.clone().unwrap_or_default();
        let conditions = status.conditions.unwrap_or_default();
        let template_meta = spec.and_then(|s| s.template.metadata.as_ref());
        let label = |key: &str| d.metadata.labels.as_ref().and_then(|l| l.get(key));
        Self {
            internal: label(crate::repositories::objects::LABEL_ROUTE)
                .is_some_and(|r| r == crate::repositories::objects::ROUTE_INTERNAL),
            registry_login: crate::repositories::registries::PullRef::of_template(
                template.and_then(|t| t.image_pull_secrets.as_deref()),
                template_meta.and_then(|m| m.annotations.as_ref()),
            )
            .is_some(),
            webhook: d
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(crate::repositories::webhook::TOKEN_SHA256)),
            id: Identity::of(&d.metadata),
            managed: managed(&d.metadata),
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            revision: revision(&d.metadata),
            image: Shared::new(
                container
                    .and_then(|c| c.image.as_deref())
                    .unwrap_or_default(),
            ),
            port: container
                .and_then(|c| c.ports.as_ref()?.first())
                .map_or(80, |p| p.container_port),
            replicas: Replicas {
                desired: spec.and_then(|s| s.replicas).unwrap_or(1),
                ready: status.ready_replicas.unwrap_or(0),
                updated: status.updated_replicas.unwrap_or(0),
                total: status.replicas.unwrap_or(0),
            },
            uncommon: Some(Uncommon {
                stuck: conditions
                    .iter()
                    .find(|c| {
                        c.type_ == "Progressing"
                            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                    })
                    .map(|c| c.message.as_deref().unwrap_or_default().into()),
                replica_failure: conditions
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                    .map(|c| Failure {
                        reason: Shared::new(c.reason.as_deref().unwrap_or("FailedCreate")),
                        message: Shared::new(c.message.as_deref().unwrap_or_default()),
                    }),
                env: Environment::of_deployment(d),
                group: label(crate::repositories::objects::LABEL_COMPOSE_PROJECT)
                    .map(|g| Shared::new(g)),
            })
            .filter(|u| *u != Uncommon::default())
            .map(Box::new),
        }
    }

    /// The repository's variables.
    pub fn env(&self) -> &Environment {
        static NONE: Environment = Environment {
            vars: Vec::new(),
            secret_digest: None,
        };
        self.uncommon.as_ref().map_or(&NONE, |u| &u.env)
    }

    /// `Progressing` with `ProgressDeadlineExceeded`: its message.
    pub fn stuck(&self) -> Option<&str> {
        self.uncommon.as_ref()?.stuck.as_deref()
    }

    /// `ReplicaFailure=True`: its reason and message.
    pub fn replica_failure(&self) -> Option<&Failure> {
        self.uncommon.as_ref()?.replica_failure.as_ref()
    }

    /// The compose project it was deployed with, if any.
    pub fn group(&self) -> Option<&Shared> {
        self.uncommon.as_ref()?.group.as_ref()
    }
}

/// A container that waits, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: Shared,
    pub message: Shared,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    pub id: Identity,
    pub managed: bool,
    /// The `app` label: the repository the pod belongs to.
    pub app: Box<str>,
    pub phase: Shared,
    pub ready: bool,
    pub restarts: i32,
    pub waiting: Box<[Waiting]>,
    /// The `pod-template-hash` label: the ReplicaSet (revision) the pod belongs to.
    pub template_hash: Option<Box<str>>,
    /// The first container's `imageID` as the kubelet reports it (it carries the digest).
    pub image_id: Option<Shared>,
}

impl PodView {
    pub fn of(p: &Pod) -> Self {
        let status = p.status.clone().unwrap_or_default();
        let containers = status.container_statuses.unwrap_or_default();
        Self {
            id: Identity::of(&p.metadata),
            managed: managed(&p.metadata),
            app: p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map_or_else(Box::default, |a| a.as_str().into()),
            phase: Shared::new(status.phase.as_deref().unwrap_or("Pending")),
            ready: !containers.is_empty() && containers.iter().all(|c| c.ready),
            restarts: containers.iter().map(|c| c.restart_count).sum(),
            template_hash: p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_TEMPLATE_HASH))
                .map(|h| h.as_str().into()),
            image_id: containers
                .first()
                .map(|c| c.image_id.as_str())
                .filter(|id| !id.is_empty())
                .map(Shared::new),
            waiting: containers
                .iter()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
                .filter_map(|w| {
                    Some(Waiting {
                        reason: Shared::new(w.reason.as_deref()?),
                        message: Shared::new(w.message.as_deref().unwrap_or_default()),
                    })
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSetView {
    pub id: Identity,
    pub app: Box<str>,
    /// The Deployment that owns it, by name.
    pub owner: Option<Box<str>>,
    pub revision: i64,
    pub image: Shared,
    pub replicas: i32,
    pub ready: i32,
    pub replica_failure: Option<Failure>,
    /// The `pod-template-hash` label its pods carry.
    pub template_hash: Option<Box<str>>,
    /// Who made this revision and what it changed (the site's pod-template annotations).
    pub provenance: Option<Box<Provenance>>,
}

impl ReplicaSetView {
    pub fn of(rs: &ReplicaSet) -> Self {
        let status = rs.status.clone().unwrap_or_default();
        Self {
            id: Identity::of(&rs.metadata),
            app: rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map_or_else(Box::default, |a| a.as_str().into()),
            owner: rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "Deployment")
                .map(|o| o.name.as_str().into()),
            revision: revision(&rs.metadata),
            template_hash: rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_TEMPLATE_HASH))
                .map(|h| h.as_str().into()),
            provenance: Provenance::of_template(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
                .map(Box::new),
            image: Shared::new(
                rs.spec
                    .as_ref()
                    .and_then(|s| {
                        s.template
                            .as_ref()?
                            .spec
                            .as_ref()?
                            .containers
                            .first()?
                            .image
                            .as_deref()
                    })
                    .unwrap_or_default(),
            ),
            replicas: status.replicas,
            ready: status.ready_replicas.unwrap_or(0),
            replica_failure: status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .map(|c| Failure {
                    reason: Shared::new(c.reason.as_deref().unwrap_or("FailedCreate")),
                    message: Shared::new(c.message.as_deref().unwrap_or_default()),
                }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    pub id: Identity,
    pub cluster_ip: Option<Box<str>>,
}

impl ServiceView {
    pub fn of(s: &Service) -> Self {
        Self {
            id: Identity::of(&s.metadata),
            cluster_ip: s
                .spec
                .as_ref()
                .and_then(|s| s.cluster_ip.as_deref())
                .map(Into::into),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressView {
    pub id: Identity,
    pub managed: bool,
    /// `nginx.org/mergeable-ingress-type`, if any.
    pub mergeable: Option<Shared>,
    pub host: Shared,
    pub path: Box<str>,
}

impl IngressView {
    pub fn of(i: &Ingress) -> Self {
        let rule = i.spec.as_ref().and_then(|s| s.rules.as_ref()?.first());
        Self {
            id: Identity::of(&i.metadata),
            managed: managed(&i.metadata),
            mergeable: i
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::repositories::objects::MERGEABLE_TYPE))
                .map(|t| Shared::new(t)),
            host: Shared::new(rule.and_then(|r| r.host.as_deref()).unwrap_or_default()),
            path: rule
                .and_then(|r| r.http.as_ref()?.paths.first()?.path.as_deref())
                .unwrap_or_default()
                .into(),
        }
    }
}

/// An Event. Events are most of what the mirror holds (a kubelet, a controller and NIC each record
/// some for every repository), so this record is kept small: its own uid is never read, and the
/// name of the object it is about is not held twice when the Event's name is the one client-go's
/// recorder gives, `<object name>.<hex timestamp>` (client-go `tools/record/event.go`,
/// `makeEvent`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventView {
    pub name: Box<str>,
    /// Orders the updates of one Event (a deduplicated Event is updated in place).
    pub resource_version: Version,
    pub created: Moment,
    pub last_timestamp: Moment,
    pub kind: Shared,
    pub object_kind: Shared,
    /// What client-go's recorder leaves unset, behind one pointer (`None`: all of it unset).
    uncommon: Option<Box<EventUncommon>>,
    pub object_uid: Uid,
    pub reason: Shared,
    pub message: Shared,
    pub count: i32,
    /// Written by the ingress controller (NIC).
    pub from_controller: bool,
}

impl EventView {
    pub fn of(e: &Event) -> Self {
        let name = e.metadata.name.as_deref().unwrap_or_default();
        let object = e.involved_object.name.as_deref().unwrap_or_default();
        Self {
            name: name.into(),
            resource_version: Version::new(
                e.metadata.resource_version.as_deref().unwrap_or_default(),
            ),
            created: Moment::of(e.metadata.creation_timestamp.as_ref().map(|t| t.0)),
            kind: Shared::new(e.type_.as_deref().unwrap_or_default()),
            object_kind: Shared::new(e.involved_object.kind.as_deref().unwrap_or_default()),
            uncommon: Some(EventUncommon {
                object_name: (name_prefix(name) != Some(object)).then(|| object.into()),
                event_time: Moment::of(e.event_time.as_ref().map(|t| t.0)),
            })
            .filter(|u| *u != EventUncommon::default())
            .map(Box::new),
            object_uid: Uid::new(e.involved_object.uid.as_deref().unwrap_or_default()),
            reason: Shared::new(e.reason.as_deref().unwrap_or_default()),
            message: Shared::message(e.message.as_deref().unwrap_or_default(), object),
            count: e.count.unwrap_or(1),
            from_controller: e
                .source
                .as_ref()
                .and_then(|s| s.component.as_deref())
                .is_some_and(|c| c == CONTROLLER_COMPONENT),
            last_timestamp: Moment::of(e.last_timestamp.as_ref().map(|t| t.0)),
        }
    }

    /// The name of the object the Event is about.
    pub fn object_name(&self) -> &str {
        match self
            .uncommon
            .as_ref()
            .and_then(|u| u.object_name.as_deref())
        {
            Some(name) => name,
            None => name_prefix(&self.name).unwrap_or_default(),
        }
    }

    /// `eventTime`, which events.k8s.io recorders set and client-go's core one leaves unset.
    pub fn event_time(&self) -> Moment {
        self.uncommon
            .as_ref()
            .map_or_else(Moment::default, |u| u.event_time)
    }

    /// When it last happened, for sorting and ages.
    pub fn when(&self) -> Option<Timestamp> {
        self.last_timestamp.get().or(self.created.get())
    }
}

/// The parts of an Event that client-go's `tools/record` recorder (the kubelet's, the
/// controllers', NIC's) leaves unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EventUncommon {
    /// The involved object's name when the Event's name does not begin with it.
    object_name: Option<Box<str>>,
    event_time: Moment,
}

/// What comes before an Event name's last dot (the object's name, in names client-go gives).
fn name_prefix(name: &str) -> Option<&str> {
    name.rsplit_once('.').map(|(prefix, _)| prefix)
}

/// A record that is filed under its object's name.
pub trait Named {
    fn name(&self) -> &str;
    /// Where the name is held, so an update keeps the allocation of the version before.
    fn name_slot(&mut self) -> &mut Box<str>;
}

macro_rules! named_by_identity {
    ($($ty:ty),*) => {$(
        impl Named for $ty {
            fn name(&self) -> &str {
                &self.id.name
            }
            fn name_slot(&mut self) -> &mut Box<str> {
                &mut self.id.name
            }
        }
    )*};
}

named_by_identity!(
    DeploymentView,
    ReplicaSetView,
    PodView,
    ServiceView,
    IngressView
);

impl Named for EventView {
    fn name(&self) -> &str {
        &self.name
    }
    fn name_slot(&mut self) -> &mut Box<str> {
        &mut self.name
    }
}

/// The records of one kind in a namespace, in name order. Each is filed under the name it holds,
/// so no second copy of the name is kept as a map key, in a sorted vector: most namespaces hold a
/// few dozen records, where a B-tree's nodes (eleven slots, and a whole node for a root holding
/// one or two) left Events' at under half full. The vector grows by a quarter at a time and
/// gives back what deletions free, so it stays at least two-thirds full; a lookup is a binary
/// search and an insert moves the records after it (a copy of a few kilobytes in a namespace of
/// a thousand repositories).
pub struct Records<V>(Vec<V>);

impl<V> Default for Records<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V: fmt::Debug> fmt::Debug for Records<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl<V: Named> Records<V> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|r| r.name().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&V> {
        self.find(name).ok().map(|i| &self.0[i])
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// The records in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.0.iter()
    }

    /// Each record with its name, in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &V)> + ExactSizeIterator {
        self.0.iter().map(|r| (r.name(), r))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Files `record`, in place of the version before if any. The record keeps the earlier
    /// version's allocation of the name, so an object updated many times (an Event's count, a
    /// rollout's status) reallocates no long-lived memory for it.
    pub fn insert(&mut self, mut record: V) {
        match self.find(record.name()) {
            Ok(i) => {
                let before = &mut self.0[i];
                std::mem::swap(record.name_slot(), before.name_slot());
                *before = record;
            }
            Err(i) => {
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact((self.0.len() / 4).max(2));
                }
                self.0.insert(i, record);
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<V> {
        let removed = self.0.remove(self.find(name).ok()?);
        let len = self.0.len();
        if self.0.capacity() > len + len / 2 + 2 {
            self.0.shrink_to(len + len / 4);
        }
        Some(removed)
    }

    pub fn clear(&mut self) {
        self.0 = Vec::new();
    }
}

impl<V: Named> FromIterator<V> for Records<V> {
    fn from_iter<I: IntoIterator<Item = V>>(records: I) -> Self {
        let mut all = Self::default();
        for r in records {
            all.insert(r);
        }
        all
    }
}

/// The site's own objects of a namespace that decide what creating a repository must write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceView {
    pub id: Identity,
    pub managed: bool,
}

impl PresenceView {
    pub fn namespace(n: &Namespace) -> Self {
        Self {
            id: Identity::of(&n.metadata),
            managed: managed(&n.metadata),
        }
    }
    pub fn quota(q: &ResourceQuota) -> Self {
        Self {
            id: Identity::of(&q.metadata),
            managed: managed(&q.metadata),
        }
    }
    pub fn limits(l: &LimitRange) -> Self {
        Self {
            id: Identity::of(&l.metadata),
            managed: managed(&l.metadata),
        }
    }
}

/// A Secret of the site's namespace: an account (its sign-in fields) or another of the site's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretView {
    pub id: Identity,
    pub account: Option<AccountView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountView {
    pub username: String,
    pub admin: bool,
    pub hash: String,
    pub failures: u32,
    pub first_failure: i64,
    pub epoch: u64,
}

impl SecretView {
    pub fn of(s: &Secret, account: impl Fn(&Secret) -> Option<AccountView>) -> Self {
        Self {
            id: Identity::of(&s.metadata),
            account: account(s),
        }
    }
}

/// A string that many records repeat (an image, a reason, an Event's kind or message, an Ingress
/// host): every record holding the same text points at one allocation. Unique texts (names,
/// uids) are not interned: an interned text costs its table entry besides.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shared(Arc<str>);

impl Shared {
    /// The one copy of `text`, made on first use.
    pub fn new(text: &str) -> Self {
        INTERNED.intern(text)
    }

    /// An Event's message: one that names the Event's object ("Created pod: web-7d9f8-x2k9z",
    /// "Configuration for alice/web was added or updated") is that object's alone, so it is kept
    /// apart rather than in the table, where it would cost an entry and never be shared; any
    /// other ("0/3 nodes are available: ...", "Back-off restarting failed container") is
    /// interned.
    pub fn message(text: &str, object_name: &str) -> Self {
        if !object_name.is_empty() && text.contains(object_name) {
            Self(Arc::from(text))
        } else {
            Self::new(text)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new("")
    }
}

impl std::ops::Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Shared {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Shared {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Shared {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Shared {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl From<Shared> for String {
    fn from(s: Shared) -> Self {
        s.0.to_string()
    }
}

impl serde::Serialize for Shared {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl maud::Render for Shared {
    fn render_to(&self, buffer: &mut String) {
        self.as_str().render_to(buffer);
    }
}

/// The table of interned texts. Entries no record holds any more are dropped whenever the table
/// has doubled since the last sweep, so texts of deleted objects do not pile up.
struct Interner {
    table: Mutex<(HashSet<Arc<str>>, usize)>,
}

static INTERNED: LazyLock<Interner> = LazyLock::new(Interner::new);

/// Below this many entries the table is never swept.
const SWEEP_FROM: usize = 1024;

impl Interner {
    fn new() -> Self {
        Self {
            table: Mutex::new((HashSet::new(), 0)),
        }
    }

    fn intern(&self, text: &str) -> Shared {
        let mut guard = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let (table, swept_at) = &mut *guard;
        if let Some(found) = table.get(text) {
            return Shared(found.clone());
        }
        if table.len() >= (*swept_at * 2).max(SWEEP_FROM) {
            table.retain(|t| Arc::strong_count(t) > 1);
            *swept_at = table.len();
        }
        let shared: Arc<str> = Arc::from(text);
        table.insert(shared.clone());
        Shared(shared)
    }
}

/// An object's uid: a UUID (what the API server hands out) in 16 bytes instead of a 36-character
/// string on the heap; any other text is kept as it is.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub enum Uid {
    #[default]
    None,
    Uuid([u8; 16]),
    Other(Box<str>),
}

impl Uid {
    pub fn new(text: &str) -> Self {
        if text.is_empty() {
            return Self::None;
        }
        parse_uuid(text).map_or_else(|| Self::Other(text.into()), |v| Self::Uuid(v.to_be_bytes()))
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }
}

/// The 128 bits of a lowercase `8-4-4-4-12` UUID, or `None` for any other text (so the text
/// written back is always the one read).
fn parse_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if *b != b'-' {
                return None;
            }
            continue;
        }
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::Other(text) => f.write_str(text),
            Self::Uuid(bytes) => {
                let hex = format!("{:032x}", u128::from_be_bytes(*bytes));
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            }
        }
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq<str> for Uid {
    fn eq(&self, other: &str) -> bool {
        *self == Uid::new(other)
    }
}

impl PartialEq<&str> for Uid {
    fn eq(&self, other: &&str) -> bool {
        *self == Uid::new(other)
    }
}

impl PartialEq<String> for Uid {
    fn eq(&self, other: &String) -> bool {
        *self == Uid::new(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn event(name: &str, uid: &str, reason: &str, message: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("alice".into()),
                uid: Some(uid.into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                name: Some(format!("{name}-pod")),
                uid: Some("0c0ffee0-1234-4abc-8def-0123456789ab".into()),
                ..ObjectReference::default()
            },
            type_: Some("Warning".into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            ..Event::default()
        }
    }

    #[test]
    fn texts_that_records_repeat_are_held_once() {
        let message = "0/3 nodes are available: 3 Too many pods.";
        let a = EventView::of(&event(
            "a",
            "5b1e4a52-7d53-4f7e-9a51-29b1f2c1d9e0",
            "FailedScheduling",
            message,
        ));
        let b = EventView::of(&event(
            "b",
            "6b1e4a52-7d53-4f7e-9a51-29b1f2c1d9e0",
            "FailedScheduling",
            message,
        ));
        assert!(
            Arc::ptr_eq(&a.message.0, &b.message.0),
            "one allocation for the message"
        );
        assert!(Arc::ptr_eq(&a.reason.0, &b.reason.0));
        assert!(Arc::ptr_eq(&a.object_kind.0, &b.object_kind.0));
        assert_eq!(a.message, message);
        assert_eq!(a.message.to_string(), message);
        assert_eq!(
            serde_json::to_string(&a.reason).unwrap(),
            "\"FailedScheduling\""
        );
    }

    #[test]
    fn a_message_naming_its_object_is_kept_apart_and_others_are_interned() {
        let table_len = || INTERNED.table.lock().unwrap().0.len();
        let own = "Created pod: web-7d9f8-x2k9z (a message no other test uses)";
        let a = Shared::message(own, "web-7d9f8");
        let b = Shared::message(own, "web-7d9f8");
        assert_eq!((a.as_str(), &a), (own, &b), "equal by their text");
        assert!(!Arc::ptr_eq(&a.0, &b.0), "not interned");
        assert!(
            !INTERNED.table.lock().unwrap().0.contains(own),
            "no table entry ({} entries)",
            table_len()
        );
        let common = "0/3 nodes are available: 3 Insufficient cpu. (no other test uses it)";
        let c = Shared::message(common, "web-7d9f8-x2k9z");
        let d = Shared::message(common, "web-7d9f8-abcde");
        assert!(Arc::ptr_eq(&c.0, &d.0), "interned");
        // An Event without an object name interns its message.
        let e = Shared::message(own, "");
        assert!(Arc::ptr_eq(&e.0, &Shared::new(own).0));
    }

    #[test]
    fn an_updated_event_keeps_its_name_allocation_and_takes_everything_else() {
        let mut records = Records::default();
        records.insert(EventView::of(&event(
            "a-pod.1880c5f3a2b4d6e8",
            "5b1e4a52-7d53-4f7e-9a51-29b1f2c1d9e0",
            "BackOff",
            "first",
        )));
        let kept = records.get("a-pod.1880c5f3a2b4d6e8").unwrap().name.as_ptr();
        let mut next = event(
            "a-pod.1880c5f3a2b4d6e8",
            "5b1e4a52-7d53-4f7e-9a51-29b1f2c1d9e0",
            "BackOff",
            "again",
        );
        next.involved_object.name = Some("a-pod".into());
        next.count = Some(2);
        next.metadata.resource_version = Some("8".into());
        records.insert(EventView::of(&next));
        assert_eq!(records.len(), 1);
        let record = records.get("a-pod.1880c5f3a2b4d6e8").unwrap();
        assert_eq!(record.name.as_ptr(), kept);
        assert_eq!(record.object_name(), "a-pod");
        assert_eq!((record.count, record.message.as_str()), (2, "again"));
        assert_eq!(record.resource_version.number(), Some(8));
    }

    #[test]
    fn an_events_object_name_is_held_once_only_when_client_go_named_the_event_after_it() {
        // client-go tools/record/event.go makeEvent: fmt.Sprintf("%v.%x", ref.Name, t.UnixNano()).
        let mut e = event("web-7d9f8.1880c5f3a2b4d6e8", "", "Scheduled", "m");
        e.involved_object.name = Some("web-7d9f8".into());
        let record = EventView::of(&e);
        assert_eq!(record.uncommon, None, "derived from the name, no eventTime");
        assert_eq!(record.object_name(), "web-7d9f8");
        // Any other name (events.k8s.io recorders, hand-made Events) keeps the object's name.
        for (name, object) in [
            ("hand-made", "web-7d9f8"),
            ("web-7d9f8.1880c5f3a2b4d6e8", "web"),
            ("a.b.c", "a.b.c"),
            ("web-7d9f8", ""),
        ] {
            let mut e = event(name, "", "Scheduled", "m");
            e.involved_object.name = Some(object.into());
            assert_eq!(EventView::of(&e).object_name(), object, "{name}");
        }
        // An events.k8s.io recorder's eventTime is kept.
        let t: Timestamp = "2026-12-04T08:50:23.123456Z".parse().unwrap();
        e.event_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(t));
        let record = EventView::of(&e);
        assert_eq!(record.event_time().get(), Some(t));
        assert_eq!(record.object_name(), "web-7d9f8");
        assert_eq!(EventView::of(&Event::default()).event_time().get(), None);
    }

    #[test]
    fn a_deployment_keeps_its_uncommon_parts_only_when_it_has_some() {
        use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
        let plain = DeploymentView::of(&Deployment::default());
        assert!(plain.uncommon.is_none());
        assert!(plain.env().vars.is_empty() && plain.stuck().is_none());
        assert!(plain.replica_failure().is_none() && plain.group().is_none());
        let stuck = DeploymentView::of(&Deployment {
            status: Some(DeploymentStatus {
                conditions: Some(vec![DeploymentCondition {
                    type_: "Progressing".into(),
                    status: "False".into(),
                    reason: Some("ProgressDeadlineExceeded".into()),
                    message: Some("ReplicaSet \"web-7d9f8\" has timed out progressing.".into()),
                    ..DeploymentCondition::default()
                }]),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        });
        assert_eq!(
            stuck.stuck(),
            Some("ReplicaSet \"web-7d9f8\" has timed out progressing.")
        );
        assert!(stuck.replica_failure().is_none() && stuck.env().vars.is_empty());
    }

    #[test]
    fn records_are_filed_under_their_own_names_in_name_order() {
        let record = |name: &str, image: &str| DeploymentView {
            id: Identity {
                name: name.into(),
                ..Identity::default()
            },
            image: Shared::new(image),
            ..DeploymentView::default()
        };
        let mut records: Records<DeploymentView> =
            [record("web", "nginx:1"), record("api", "api:1")]
                .into_iter()
                .collect();
        records.insert(record("web", "nginx:2"));
        assert_eq!(records.len(), 2);
        assert_eq!(
            records
                .iter()
                .map(|(n, d)| (n, d.image.as_str()))
                .collect::<Vec<_>>(),
            [("api", "api:1"), ("web", "nginx:2")]
        );
        assert!(records.contains_key("api") && !records.contains_key("ap"));
        assert_eq!(records.remove("api").map(|d| d.id.name), Some("api".into()));
        assert_eq!(records.values().count(), 1);
        records.clear();
        assert!(records.is_empty());

        // Filed in any order, read in name order; the vector stays mostly full as it grows and
        // as it shrinks.
        let names: Vec<String> = (0..200)
            .map(|i| format!("r{:03}", (i * 7919) % 200))
            .collect();
        for n in &names {
            records.insert(record(n, "x"));
            assert!(records.0.capacity() <= records.len() + records.len() / 4 + 2);
        }
        let read: Vec<&str> = records.iter().map(|(n, _)| n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(read, sorted);
        for n in &names[..180] {
            assert!(records.remove(n).is_some());
            assert!(records.0.capacity() <= records.len() + records.len() / 2 + 2);
        }
        assert_eq!(records.len(), 20);
        assert!(records.remove("r999").is_none());
        assert!(names[180..].iter().all(|n| records.get(n).is_some()));
    }

    #[test]
    fn moments_keep_microseconds_and_none_orders_first_as_with_option() {
        let t: Timestamp = "2026-12-04T08:50:23.123456Z".parse().unwrap();
        let m = Moment::of(Some(t));
        assert_eq!(m.get(), Some(t));
        assert_eq!(Moment::of(None).get(), None);
        assert_eq!(Moment::default(), Moment::of(None));
        let earlier: Timestamp = "1969-07-20T20:17:40Z".parse().unwrap();
        let mut moments = [m, Moment::of(None), Moment::of(Some(earlier))];
        moments.sort();
        assert_eq!(
            moments.map(Moment::get),
            [None, Some(earlier), Some(t)],
            "the order of Option<Timestamp>"
        );
    }

    #[test]
    fn uuids_take_sixteen_bytes_and_read_back_as_written() {
        let text = "5b1e4a52-7d53-4f7e-9a51-29b1f2c1d9e0";
        let uid = Uid::new(text);
        assert!(matches!(uid, Uid::Uuid(_)), "{uid:?}");
        assert_eq!(uid.to_string(), text);
        assert_eq!(uid, text);
        assert_eq!(uid, text.to_string());
        assert_ne!(uid, "6b1e4a52-7d53-4f7e-9a51-29b1f2c1d9e0");
        // Anything that is not a lowercase UUID is kept as written, never normalised.
        for other in [
            "u2",
            "5B1E4A52-7D53-4F7E-9A51-29B1F2C1D9E0",
            "5b1e4a52x7d53-4f7e-9a51-29b1f2c1d9e0",
        ] {
            let uid = Uid::new(other);
            assert!(matches!(uid, Uid::Other(_)), "{other}");
            assert_eq!(uid.to_string(), other);
            assert_eq!(uid, other);
            assert_ne!(uid, text);
        }
        assert!(Uid::new("").is_empty());
        assert_eq!(Uid::new(""), "");
        // No larger than the String it replaces, and with no allocation of its own.
        assert!(std::mem::size_of::<Uid>() <= std::mem::size_of::<String>());
    }

    #[test]
    fn the_interner_forgets_texts_no_record_holds() {
        let interner = Interner::new();
        let held = interner.intern("held by a record");
        for i in 1..SWEEP_FROM {
            drop(interner.intern(&format!("message {i}")));
        }
        let table_len = |i: &Interner| i.table.lock().unwrap().0.len();
        assert_eq!(table_len(&interner), SWEEP_FROM);
        let next = interner.intern("the next one sweeps");
        assert_eq!(table_len(&interner), 2, "only the held texts remain");
        assert!(Arc::ptr_eq(&interner.intern("held by a record").0, &held.0));
        drop(next);
    }
}
