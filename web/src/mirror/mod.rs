//! The mirror: what the pages need of the cluster, kept in memory from watches (issue 15).
//!
//! Each watched kind (the site's Deployments, ReplicaSets, Pods, Services, quotas, limits and
//! namespaces; every Ingress and Event of users' namespaces; the Secrets of the site's namespace)
//! is a kube-runtime `watcher`: a list, then a watch that resumes after a disconnect and relists
//! after `410 Gone`. Each event is decoded into a compact record (`compact`) filed under its
//! namespace. The cluster stays the only store: a restarted replica rebuilds the mirror from the
//! lists, and writes still go to the API server, after which the writer waits until the mirror
//! has seen what it wrote (read-your-writes, [`Mirror::wait_for`]).
//!
//! Health: a prober asks the API server for its version every half second; while it answers and
//! every watch runs, the mirror is current. Once it has not been current for [`STALE_AFTER`],
//! pages say "as of" the last moment it was ([`Mirror::as_of`]).

pub mod compact;
mod watches;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use compact::{
    DeploymentView, EventView, IngressView, PodView, PresenceView, Records, ReplicaSetView,
    SecretView, ServiceView,
};

/// How long the mirror may go without being known current before pages mark it stale.
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// How often the API server is asked whether it answers, and how long an answer may take.
const PROBE_EVERY: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the probe must have failed without a break before the API server counts as not
/// answering: one slow answer on a busy API server (or a busy node) must not refuse writes.
const NOT_ANSWERING_AFTER: Duration = Duration::from_secs(3);
/// A watch counts as running again once its last error is this old (the watcher retries by
/// itself; a retry that fails again renews the error).
const WATCH_ERROR_GRACE: Duration = Duration::from_secs(2);
/// How long a handler waits for the mirror to show its own write (read-your-writes).
pub const READ_YOUR_WRITES: Duration = Duration::from_secs(2);
/// How long a page waits for the first sync before it says the site is starting.
pub const FIRST_SYNC: Duration = Duration::from_secs(2);

/// One user namespace as the mirror knows it; each kind's records are filed by object name.
#[derive(Debug, Default)]
pub struct NamespaceView {
    pub namespace: Option<PresenceView>,
    pub quota: Option<PresenceView>,
    pub limits: Option<PresenceView>,
    pub deployments: Records<DeploymentView>,
    pub replica_sets: Records<ReplicaSetView>,
    pub pods: Records<PodView>,
    pub services: Records<ServiceView>,
    pub ingresses: Records<IngressView>,
    pub events: Records<EventView>,
}

impl NamespaceView {
    fn is_empty(&self) -> bool {
        self.namespace.is_none()
            && self.quota.is_none()
            && self.limits.is_none()
            && self.deployments.is_empty()
            && self.replica_sets.is_empty()
            && self.pods.is_empty()
            && self.services.is_empty()
            && self.ingresses.is_empty()
            && self.events.is_empty()
    }
}

/// Everything the mirror holds.
#[derive(Debug, Default)]
pub struct Contents {
    pub namespaces: BTreeMap<String, NamespaceView>,
    /// The Secrets of the site's own namespace, by name.
    pub secrets: BTreeMap<String, SecretView>,
}

impl Contents {
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceView> {
        self.namespaces.get(namespace)
    }

    fn namespace_mut(&mut self, namespace: &str) -> &mut NamespaceView {
        self.namespaces.entry(namespace.to_string()).or_default()
    }

    /// Drops a namespace entry that no longer holds anything.
    fn tidy(&mut self, namespace: &str) {
        if self
            .namespaces
            .get(namespace)
            .is_some_and(NamespaceView::is_empty)
        {
            self.namespaces.remove(namespace);
        }
    }
}

/// Whether `seen` is the version `written` or a later one. Kubernetes documents
/// resourceVersions as opaque, but both etcd and the simulator hand out one increasing revision
/// per write, which is what the API server's own consistent reads from its watch cache rely on
/// (KEP-2340); an unparsable version counts only when equal.
pub fn has_seen(seen: &compact::Version, written: &str) -> bool {
    match (seen, written.parse::<u64>()) {
        (compact::Version::Number(s), Ok(w)) => *s >= w,
        (compact::Version::Text(t), _) => &**t == written,
        _ => false,
    }
}

/// One watch's health, for `/readyz` and the stale marker.
#[derive(Debug, Clone)]
struct WatchHealth {
    name: &'static str,
    synced: bool,
    last_error: Option<(Instant, String)>,
    events: u64,
    /// Lists completed: the first sync, then one for every relist (after a 410, for example).
    lists: u64,
}

impl WatchHealth {
    fn running(&self, now: Instant) -> bool {
        self.synced
            && self
                .last_error
                .as_ref()
                .is_none_or(|(at, _)| now.duration_since(*at) >= WATCH_ERROR_GRACE)
    }
}

/// What `/readyz` reports about one watch.
#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    pub name: &'static str,
    pub synced: bool,
    pub running: bool,
    pub events: u64,
    /// Lists completed: 1 after the first sync, one more for every relist (after `410 Gone`, when
    /// the resourceVersion it would resume from left the API server's watch history).
    pub lists: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `/readyz`'s body: ready once every watch has synced; `lag_ms` is how long ago the mirror was
/// last known current (the lag metric), `stale_since` set once that is over [`STALE_AFTER`].
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Whether the API server answered the last probe.
    pub answering: bool,
    pub lag_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<String>,
    pub watches: Vec<WatchReport>,
}

struct Inner {
    contents: RwLock<Contents>,
    /// Bumped after every change, so writers waiting for their write wake up.
    changes: watch::Sender<u64>,
    /// One signal per namespace someone follows ([`Mirror::follow`]), bumped after each change
    /// of that namespace's records; a namespace nobody follows has no entry, so a change there
    /// costs one map lookup.
    followers: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// True once every watch has synced once.
    synced: watch::Sender<bool>,
    health: Mutex<Vec<WatchHealth>>,
    /// The last moment the API server answered and every watch ran.
    current_at: Mutex<(Instant, Timestamp)>,
    /// Whether the API server answered the last probe.
    answering: AtomicBool,
}

/// Aborts the mirror's tasks once the last handle is gone.
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Where the mirror looks: the site's namespace, and the platform's, which hold no repositories.
#[derive(Debug, Clone)]
pub struct Scope {
    pub system_namespace: String,
    pub platform_namespaces: Vec<String>,
}

impl Scope {
    /// Whether a namespace may hold repositories (every namespace but the platform's).
    pub fn is_user_namespace(&self, namespace: &str) -> bool {
        namespace != self.system_namespace
            && !self.platform_namespaces.iter().any(|p| p == namespace)
    }
}

/// A handle on the mirror; clones share it.
#[derive(Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
    _tasks: Arc<Tasks>,
}

impl Mirror {
    /// Starts the watches and the prober; the mirror fills as the lists come in.
    pub fn start(client: kube::Client, scope: Scope) -> Self {
        let names = watches::NAMES;
        let inner = Arc::new(Inner {
            contents: RwLock::new(Contents::default()),
            changes: watch::Sender::new(0),
            followers: Mutex::new(HashMap::new()),
            synced: watch::Sender::new(false),
            health: Mutex::new(
                names
                    .iter()
                    .map(|name| WatchHealth {
                        name,
                        synced: false,
                        last_error: None,
                        events: 0,
                        lists: 0,
                    })
                    .collect(),
            ),
            current_at: Mutex::new((Instant::now(), Timestamp::now())),
            answering: AtomicBool::new(true),
        });
        let mut tasks = watches::spawn(&client, &scope, &inner);
        tasks.push(tokio::spawn(probe(client, inner.clone())).abort_handle());
        Self {
            inner,
            _tasks: Arc::new(Tasks(tasks)),
        }
    }

    /// A read of the mirror; hold it only to build an answer, never across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, Contents> {
        self.inner
            .contents
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until every watch has synced once, at most `bound`; false if they have not.
    pub async fn wait_synced(&self, bound: Duration) -> bool {
        let mut synced = self.inner.synced.subscribe();
        tokio::time::timeout(bound, synced.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until `seen` holds for the mirror's contents, at most `bound`; false if it did not.
    pub async fn wait_for(&self, bound: Duration, seen: impl Fn(&Contents) -> bool) -> bool {
        let mut changes = self.inner.changes.subscribe();
        let check = async {
            loop {
                if seen(&self.read()) {
                    return true;
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(bound, check).await.unwrap_or(false)
    }

    /// A signal that changes after every change of a namespace's records (its Deployments,
    /// ReplicaSets, Pods, Services, Ingresses, Events, quota, limits or the namespace itself; for
    /// the site's own namespace, its Secrets), and after every relist. It asks the API server
    /// nothing: it rides on the watches that fill the mirror.
    pub fn follow(&self, namespace: &str) -> watch::Receiver<u64> {
        self.inner
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(namespace.to_string())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// `None` while the mirror is current; once it has not been for [`STALE_AFTER`], the last
    /// moment it was, which pages show as "as of".
    pub fn as_of(&self) -> Option<Timestamp> {
        let (at, wall) = *self
            .inner
            .current_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (at.elapsed() > STALE_AFTER).then_some(wall)
    }

    /// Whether the API server answered its last probe: a write is not even sent when it did not.
    pub fn api_answering(&self) -> bool {
        self.inner.answering.load(Ordering::Relaxed)
    }

    pub fn readiness(&self) -> Readiness {
        let now = Instant::now();
        let (at, wall) = *self
            .inner
            .current_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let watches: Vec<WatchReport> = self
            .inner
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|h| WatchReport {
                name: h.name,
                synced: h.synced,
                running: h.running(now),
                events: h.events,
                lists: h.lists,
                last_error: h.last_error.as_ref().map(|(_, e)| e.clone()),
            })
            .collect();
        let lag = now.duration_since(at);
        Readiness {
            ready: self.is_synced(),
            answering: self.api_answering(),
            lag_ms: u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
            stale_since: (lag > STALE_AFTER).then(|| wall.to_string()),
            watches,
        }
    }
}

impl Readiness {
    /// The same facts in the Prometheus text exposition format 0.0.4
    /// (prometheus.io/docs/instrumenting/exposition_formats/): a `# HELP` and a `# TYPE` line
    /// before each family's samples, counters named `_total`, label values quoted (watch names
    /// are fixed identifiers, nothing to escape).
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write as _;
        fn family(out: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        let mut out = String::with_capacity(1024 + 192 * self.watches.len());
        family(
            &mut out,
            "kdeploy_mirror_lag_seconds",
            "gauge",
            "How long ago the site's mirror of the cluster was last known current.",
        );
        let _ = writeln!(
            out,
            "kdeploy_mirror_lag_seconds {}.{:03}",
            self.lag_ms / 1000,
            self.lag_ms % 1000
        );
        family(
            &mut out,
            "kdeploy_mirror_synced",
            "gauge",
            "1 once every watch of the mirror has listed once.",
        );
        let _ = writeln!(out, "kdeploy_mirror_synced {}", u8::from(self.ready));
        family(
            &mut out,
            "kdeploy_api_server_answering",
            "gauge",
            "1 while the API server answers the site's probe.",
        );
        let _ = writeln!(
            out,
            "kdeploy_api_server_answering {}",
            u8::from(self.answering)
        );
        /// A per-watch family: name, type, help, and the value of one watch.
        type PerWatch = (
            &'static str,
            &'static str,
            &'static str,
            fn(&WatchReport) -> u64,
        );
        let per_watch: [PerWatch; 3] = [
            (
                "kdeploy_mirror_watch_running",
                "gauge",
                "1 while a watch has synced and has not failed lately.",
                |w| u64::from(w.running),
            ),
            (
                "kdeploy_mirror_watch_events_total",
                "counter",
                "Watch events a watch has filed (a completed list counts as one).",
                |w| w.events,
            ),
            (
                "kdeploy_mirror_watch_lists_total",
                "counter",
                "Lists a watch has completed: the first sync, then one for each relist (after 410 Gone).",
                |w| w.lists,
            ),
        ];
        for (name, kind, help, value) in per_watch {
            family(&mut out, name, kind, help);
            for w in &self.watches {
                let _ = writeln!(out, "{name}{{watch=\"{}\"}} {}", w.name, value(w));
            }
        }
        out
    }
}

/// Which namespaces a change touched.
#[derive(Debug, Clone, Copy)]
enum Touched<'a> {
    /// One object's namespace.
    Namespace(&'a str),
    /// A relist replaced a whole kind: any namespace may have changed.
    Every,
}

impl Inner {
    fn change(&self, touched: Touched<'_>, f: impl FnOnce(&mut Contents)) {
        {
            let mut contents = self
                .contents
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            f(&mut contents);
        }
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        self.wake(touched);
    }

    /// Wakes the followers of the touched namespaces, and forgets signals nobody follows now.
    fn wake(&self, touched: Touched<'_>) {
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let bump = |signal: &watch::Sender<u64>| {
            if signal.receiver_count() == 0 {
                return false;
            }
            signal.send_modify(|n| *n = n.wrapping_add(1));
            true
        };
        match touched {
            Touched::Namespace(namespace) => {
                if followers.get(namespace).is_some_and(|s| !bump(s)) {
                    followers.remove(namespace);
                }
            }
            Touched::Every => followers.retain(|_, s| bump(s)),
        }
    }

    fn health(&self, index: usize, f: impl FnOnce(&mut WatchHealth)) {
        let all_synced = {
            let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(h) = health.get_mut(index) {
                f(h);
            }
            health.iter().all(|h| h.synced)
        };
        if all_synced && !*self.synced.borrow() {
            self.synced.send_replace(true);
            tracing::info!("mirror synced: every watch has listed once");
        }
    }

    fn watches_running(&self) -> bool {
        let now = Instant::now();
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .all(|h| h.running(now))
    }
}

/// Asks the API server for its version every [`PROBE_EVERY`]; an answer within
/// [`PROBE_TIMEOUT`] while every watch runs marks the mirror current.
async fn probe(client: kube::Client, inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answering = true;
    let mut failing_since: Option<Instant> = None;
    loop {
        tick.tick().await;
        let ok = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await,
            Ok(Ok(_))
        );
        if ok {
            failing_since = None;
        } else {
            failing_since.get_or_insert_with(Instant::now);
        }
        let answered = failing_since.is_none_or(|since| since.elapsed() < NOT_ANSWERING_AFTER);
        inner.answering.store(answered, Ordering::Relaxed);
        if answered != answering {
            if answered {
                tracing::info!("the API server answers again");
            } else {
                tracing::warn!(
                    "the API server does not answer: pages show the mirror as of its last sync"
                );
            }
            answering = answered;
        }
        if ok && inner.watches_running() {
            *inner
                .current_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = (Instant::now(), Timestamp::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inner() -> Inner {
        Inner {
            contents: RwLock::new(Contents::default()),
            changes: watch::Sender::new(0),
            followers: Mutex::new(HashMap::new()),
            synced: watch::Sender::new(false),
            health: Mutex::new(Vec::new()),
            current_at: Mutex::new((Instant::now(), Timestamp::now())),
            answering: AtomicBool::new(true),
        }
    }

    fn follow(inner: &Inner, namespace: &str) -> watch::Receiver<u64> {
        inner
            .followers
            .lock()
            .unwrap()
            .entry(namespace.to_string())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    fn followed(inner: &Inner) -> Vec<String> {
        let mut names: Vec<String> = inner.followers.lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    /// prometheus.io/docs/instrumenting/exposition_formats/ (text format 0.0.4): every sample
    /// follows its family's `# HELP` and `# TYPE` lines, counters end in `_total`, each line is
    /// `name{labels} value` with a float value.
    #[test]
    fn the_metrics_are_prometheus_text_with_every_family_declared_before_its_samples() {
        let watch = |name, lists| WatchReport {
            name,
            synced: true,
            running: name != "pods",
            events: 40,
            lists,
            last_error: None,
        };
        let readiness = Readiness {
            ready: true,
            answering: false,
            lag_ms: 3_042,
            stale_since: Some("2026-12-04T15:00:00Z".into()),
            watches: vec![watch("deployments", 2), watch("pods", 1)],
        };
        let text = readiness.to_prometheus();
        assert!(text.ends_with('\n'));
        let mut declared: HashMap<String, String> = HashMap::new();
        let mut samples: HashMap<String, f64> = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty(), "{line}");
                declared.insert(name.to_string(), String::new());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                *declared.get_mut(name).expect("HELP before TYPE") = kind.to_string();
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let family = series.split('{').next().unwrap();
                assert!(
                    declared.get(family).is_some_and(|k| !k.is_empty()),
                    "{family} sampled before its HELP and TYPE"
                );
                assert!(
                    family
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                samples.insert(series.to_string(), value.parse().expect("a float value"));
            }
        }
        assert_eq!(samples["kdeploy_mirror_lag_seconds"], 3.042);
        assert_eq!(samples["kdeploy_mirror_synced"], 1.0);
        assert_eq!(samples["kdeploy_api_server_answering"], 0.0);
        assert_eq!(samples["kdeploy_mirror_watch_running{watch=\"pods\"}"], 0.0);
        assert_eq!(
            samples["kdeploy_mirror_watch_running{watch=\"deployments\"}"],
            1.0
        );
        assert_eq!(
            samples["kdeploy_mirror_watch_lists_total{watch=\"deployments\"}"],
            2.0
        );
        assert_eq!(
            samples["kdeploy_mirror_watch_events_total{watch=\"pods\"}"],
            40.0
        );
        assert_eq!(samples.len(), 3 + 3 * 2);
    }

    #[test]
    fn a_change_wakes_the_followers_of_its_namespace_only() {
        let inner = inner();
        let mut alice = follow(&inner, "alice");
        let bob = follow(&inner, "bob");
        inner.change(Touched::Namespace("alice"), |_| {});
        assert!(alice.has_changed().unwrap());
        assert!(!bob.has_changed().unwrap());
        alice.borrow_and_update();
        // A relist may have changed any namespace: everyone followed is woken.
        inner.change(Touched::Every, |_| {});
        assert!(alice.has_changed().unwrap() && bob.has_changed().unwrap());
    }

    #[test]
    fn a_namespace_nobody_follows_any_more_is_forgotten_at_its_next_change() {
        let inner = inner();
        let alice = follow(&inner, "alice");
        let bob = follow(&inner, "bob");
        inner.change(Touched::Namespace("carol"), |_| {});
        assert_eq!(
            followed(&inner),
            ["alice", "bob"],
            "no signal made for carol"
        );
        drop(alice);
        inner.change(Touched::Namespace("alice"), |_| {});
        assert_eq!(followed(&inner), ["bob"]);
        drop(bob);
        inner.change(Touched::Every, |_| {});
        assert!(followed(&inner).is_empty());
    }

    #[test]
    fn a_later_or_equal_version_counts_as_seen() {
        let seen = |v: &str| compact::Version::new(v);
        assert!(has_seen(&seen("12"), "12"));
        assert!(has_seen(&seen("13"), "12"));
        assert!(!has_seen(&seen("11"), "12"));
        assert!(has_seen(&seen("opaque"), "opaque"));
        assert!(!has_seen(&seen("opaque"), "12"));
        assert!(!has_seen(&seen("12"), "opaque"));
        // A version that is not spelled as a canonical number is kept as text, compared as such.
        assert_eq!(seen("012").to_string(), "012");
        assert!(!has_seen(&seen("012"), "12"));
        assert_eq!(
            seen("18446744073709551616").to_string(),
            "18446744073709551616"
        );
    }
}
