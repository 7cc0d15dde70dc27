//! In-memory object storage with one global resourceVersion and a bounded watch history,
//! playing the part etcd plays for the real API server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

/// Where an object lives: resource type key, namespace ("" for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(resource: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            resource,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn watch_type(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One committed write, as watchers see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: ObjectKey,
    pub object: Value,
    /// The object before a `Modified` change (the watch cache's `PrevObject`), so a filtered watch
    /// can tell an object entering or leaving its selection.
    pub previous: Option<Value>,
    pub revision: u64,
    /// When it was committed (the watch cache's `RecordTime`), which decides how long it is kept.
    pub recorded: std::time::Instant,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("object already exists")]
    AlreadyExists,
    #[error("object not found")]
    NotFound,
    #[error("resourceVersion {0} is stale")]
    Stale(u64),
    #[error("resourceVersion {requested} is older than the retained history (oldest {oldest})")]
    Expired { requested: u64, oldest: u64 },
}

/// How long the history keeps a change (watch_cache.go `eventFreshDuration`: the bookmark
/// frequency, 60 s, plus 15 s).
const EVENT_FRESH_DURATION: std::time::Duration = std::time::Duration::from_secs(75);
/// The changes the history keeps whatever their age (watch_cache.go `defaultLowerBoundCapacity`).
const LOWER_BOUND_CAPACITY: usize = 100;

struct State {
    objects: BTreeMap<ObjectKey, Value>,
    revision: u64,
    history: VecDeque<Arc<Change>>,
    /// The revision of the oldest change a watch can still resume after.
    compacted: u64,
}

/// What a watch starts from: the changes since the requested revision and a live feed after them.
pub struct WatchStart {
    pub backlog: Vec<Arc<Change>>,
    pub feed: broadcast::Receiver<Arc<Change>>,
    pub revision: u64,
}

pub struct Store {
    state: Mutex<State>,
    feed: broadcast::Sender<Arc<Change>>,
    history_limit: usize,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (feed, _) = broadcast::channel(4096);
        Self {
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                revision: 1,
                history: VecDeque::new(),
                compacted: 1,
            }),
            feed,
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (writes are single statements), so recover.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of one resource type, optionally within one namespace, in key order.
    pub fn list(&self, resource: &'static str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        self.list_where(resource, namespace, |_| true)
    }

    /// [`Self::list`] of the objects `keep` accepts, judged before they are copied: a controller
    /// looking for one owner's few dependents in a namespace of thousands copies only those.
    pub fn list_where(
        &self,
        resource: &'static str,
        namespace: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, u64) {
        let state = self.lock();
        // Keys sort by resource, then namespace, then name, so one type (and one namespace of it)
        // is a contiguous range: a list costs what it returns, not what the cluster holds.
        let start = ObjectKey::new(resource, namespace.unwrap_or(""), "");
        let items = state
            .objects
            .range(start..)
            .take_while(|(k, _)| {
                k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .filter(|(_, v)| keep(v))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.revision)
    }

    /// Reads every object under the lock without copying them, for passes that need a few fields
    /// of everything (the garbage collector); `visit` must not call back into the store.
    pub fn scan<R>(
        &self,
        visit: impl FnOnce(&mut dyn Iterator<Item = (&ObjectKey, &Value)>) -> R,
    ) -> R {
        let state = self.lock();
        visit(&mut state.objects.iter())
    }

    /// Reads the objects of one resource type under the lock without copying them;
    /// `visit` must not call back into the store.
    pub fn scan_type<R>(
        &self,
        resource: &'static str,
        visit: impl FnOnce(&mut dyn Iterator<Item = &Value>) -> R,
    ) -> R {
        let state = self.lock();
        let start = ObjectKey::new(resource, "", "");
        let mut objects = state
            .objects
            .range(start..)
            .take_while(|(k, _)| k.resource == resource)
            .map(|(_, v)| v);
        visit(&mut objects)
    }

    /// Namespaced objects of every type in one namespace (for namespace deletion).
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<ObjectKey> {
        self.lock()
            .objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }

    pub fn all_objects(&self) -> Vec<(ObjectKey, Value)> {
        self.lock()
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn create(&self, key: ObjectKey, mut object: Value) -> Result<Value, StoreError> {
        let mut state = self.lock();
        if state.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        let rev = state.revision + 1;
        set_revision(&mut object, rev);
        state.objects.insert(key.clone(), object.clone());
        self.commit(
            &mut state,
            ChangeKind::Added,
            key,
            object.clone(),
            None,
            rev,
        );
        Ok(object)
    }

    /// Replaces an object; `expected` is the resourceVersion the writer read, if it cares.
    pub fn update(
        &self,
        key: &ObjectKey,
        mut object: Value,
        expected: Option<u64>,
    ) -> Result<Value, StoreError> {
        let mut state = self.lock();
        let current = state.objects.get(key).ok_or(StoreError::NotFound)?;
        let current_rev = crate::meta::resource_version(current).unwrap_or(0);
        if let Some(expected) = expected
            && expected != current_rev
        {
            return Err(StoreError::Stale(expected));
        }
        if *current == with_revision(&object, current_rev) {
            // A no-op write keeps the resourceVersion and sends no event, as etcd3 storage does.
            return Ok(current.clone());
        }
        let rev = state.revision + 1;
        set_revision(&mut object, rev);
        let previous = state.objects.insert(key.clone(), object.clone());
        self.commit(
            &mut state,
            ChangeKind::Modified,
            key.clone(),
            object.clone(),
            previous,
            rev,
        );
        Ok(object)
    }

    pub fn delete(&self, key: &ObjectKey, expected: Option<u64>) -> Result<Value, StoreError> {
        let mut state = self.lock();
        let current = state.objects.get(key).ok_or(StoreError::NotFound)?;
        if let Some(expected) = expected
            && crate::meta::resource_version(current) != Some(expected)
        {
            return Err(StoreError::Stale(expected));
        }
        let mut object = state.objects.remove(key).ok_or(StoreError::NotFound)?;
        let rev = state.revision + 1;
        set_revision(&mut object, rev);
        self.commit(
            &mut state,
            ChangeKind::Deleted,
            key.clone(),
            object.clone(),
            None,
            rev,
        );
        Ok(object)
    }

    fn commit(
        &self,
        state: &mut State,
        kind: ChangeKind,
        key: ObjectKey,
        object: Value,
        previous: Option<Value>,
        rev: u64,
    ) {
        state.revision = rev;
        let change = Arc::new(Change {
            kind,
            key,
            object,
            previous,
            revision: rev,
            recorded: std::time::Instant::now(),
        });
        state.history.push_back(change.clone());
        // k8s.io/apiserver pkg/storage/cacher watch_cache.go: the history of changes a watch can
        // resume from holds `eventFreshDuration` (75 s) of changes, at least
        // `defaultLowerBoundCapacity` (100) and at most the upper bound capacity (100 * 1024 by
        // default; here `history_limit`, one window for all kinds where the API server keeps
        // one per resource).
        let fresh = change.recorded.checked_sub(EVENT_FRESH_DURATION);
        while state.history.len() > self.history_limit
            || (state.history.len() > LOWER_BOUND_CAPACITY
                && fresh.is_some_and(|f| state.history.front().is_some_and(|c| c.recorded < f)))
        {
            if let Some(old) = state.history.pop_front() {
                state.compacted = old.revision;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.feed.send(change);
    }

    /// Starts a watch after `since`; fails with `Expired` when that revision fell out of the history.
    pub fn watch_from(&self, since: u64) -> Result<WatchStart, StoreError> {
        let state = self.lock();
        if since < state.compacted {
            return Err(StoreError::Expired {
                requested: since,
                oldest: state.compacted,
            });
        }
        let backlog = state
            .history
            .iter()
            .filter(|c| c.revision > since)
            .cloned()
            .collect();
        Ok(WatchStart {
            backlog,
            feed: self.feed.subscribe(),
            revision: state.revision,
        })
    }

    /// The changes committed after `since`, oldest first, and the revision they run to; None when
    /// part of them fell out of the history (the reader must then look at everything, as an
    /// informer relists after a 410).
    pub fn changes_since(&self, since: u64) -> Option<(Vec<Arc<Change>>, u64)> {
        let state = self.lock();
        if since < state.compacted {
            return None;
        }
        let mut changes: Vec<Arc<Change>> = state
            .history
            .iter()
            .rev()
            .take_while(|c| c.revision > since)
            .cloned()
            .collect();
        changes.reverse();
        Some((changes, state.revision))
    }

    /// A live feed of every change, for the controllers.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.feed.subscribe()
    }
}

fn set_revision(object: &mut Value, rev: u64) {
    crate::meta::metadata_mut(object)
        .insert("resourceVersion".into(), Value::String(rev.to_string()));
}

fn with_revision(object: &Value, rev: u64) -> Value {
    let mut copy = object.clone();
    set_revision(&mut copy, rev);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("configmaps", "default", name)
    }

    /// watch_cache.go: a watch resumes from any change of the last 75 s (eventFreshDuration),
    /// however many changes that is, up to the upper bound capacity; beyond it, 410 Expired.
    #[test]
    fn a_watch_resumes_from_any_fresh_change_up_to_the_capacity() {
        let store = Store::new(100 * 1024);
        let first = store
            .create(key("c0"), json!({"metadata": {"name": "c0"}}))
            .unwrap();
        let since = meta_revision(&first);
        for i in 1..5000 {
            let name = format!("c{i}");
            store
                .create(key(&name), json!({"metadata": {"name": name}}))
                .unwrap();
        }
        let start = store.watch_from(since).map_err(|e| e.to_string()).unwrap();
        assert_eq!(start.backlog.len(), 4999);

        let small = Store::new(150);
        let first = small
            .create(key("c0"), json!({"metadata": {"name": "c0"}}))
            .unwrap();
        for i in 1..200 {
            let name = format!("c{i}");
            small
                .create(key(&name), json!({"metadata": {"name": name}}))
                .unwrap();
        }
        assert!(matches!(
            small.watch_from(meta_revision(&first)),
            Err(StoreError::Expired { .. })
        ));
    }

    fn meta_revision(object: &Value) -> u64 {
        object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// A list is one type in one namespace (or all), whatever sorts next to it: namespaces and
    /// types whose names extend the asked one, and cluster-scoped objects, stay out.
    #[test]
    fn a_list_holds_exactly_its_type_and_namespace() {
        let store = Store::new(100);
        for (resource, ns, name) in [
            ("pods", "a", "x"),
            ("pods", "a", "y"),
            ("pods", "ab", "x"),
            ("pods", "", "odd"),
            ("podtemplates", "a", "x"),
            ("persistentvolumes", "", "x"),
            ("services", "a", "x"),
        ] {
            store
                .create(
                    ObjectKey::new(resource, ns, name),
                    json!({"metadata": {"name": name, "namespace": ns}}),
                )
                .unwrap();
        }
        let names = |resource, ns| -> Vec<String> {
            store
                .list(resource, ns)
                .0
                .iter()
                .map(|o| format!("{}/{}", crate::meta::namespace(o), crate::meta::name(o)))
                .collect()
        };
        assert_eq!(names("pods", Some("a")), ["a/x", "a/y"]);
        assert_eq!(names("pods", Some("ab")), ["ab/x"]);
        assert_eq!(names("pods", Some("b")), Vec::<String>::new());
        assert_eq!(names("pods", None), ["/odd", "a/x", "a/y", "ab/x"]);
        assert_eq!(names("podtemplates", None), ["a/x"]);
        assert_eq!(names("persistentvolumes", None), ["/x"]);
    }

    #[test]
    fn revisions_increase_and_stale_updates_fail() {
        let store = Store::new(100);
        let a = store
            .create(key("a"), json!({"metadata": {"name": "a"}}))
            .unwrap();
        let rv = crate::meta::resource_version(&a).unwrap();
        let b = store
            .update(
                &key("a"),
                json!({"metadata": {"name": "a"}, "data": {"x": "1"}}),
                Some(rv),
            )
            .unwrap();
        assert!(crate::meta::resource_version(&b).unwrap() > rv);
        assert_eq!(
            store.update(&key("a"), json!({"metadata": {"name": "a"}}), Some(rv)),
            Err(StoreError::Stale(rv))
        );
        assert_eq!(
            store.create(key("a"), json!({})),
            Err(StoreError::AlreadyExists)
        );
    }

    #[test]
    fn watch_history_is_bounded() {
        let store = Store::new(2);
        for i in 0..5 {
            store.create(key(&format!("o{i}")), json!({})).unwrap();
        }
        assert!(matches!(
            store.watch_from(1),
            Err(StoreError::Expired { .. })
        ));
        let start = store.watch_from(store.revision() - 1).unwrap();
        assert_eq!(start.backlog.len(), 1);
    }
}
