//! The controller: watches the cluster's Nodes and keeps the target group's targets equal to
//! [`super::wanted`], on every change of the wanted set, on start, and every [`RESYNC`] (which
//! also removes targets someone registered by hand). A failed call is logged and retried with
//! back-off; nothing transient ends the loop. It holds no lease: with one replica (the
//! Deployment's Recreate strategy) and idempotent calls, a second one for a moment does no harm.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_credential_types::Credentials;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::{Instant, MissedTickBehavior};

use super::{Settings, TargetGroup, Unfit, changes, elbv2_client, internal_ip, serving_ip, wanted};
use crate::error::Result;

/// How often the target group is compared with the nodes even when no Node changed.
pub const RESYNC: Duration = Duration::from_secs(60);
/// The first retry after a failure; each further failure doubles it, up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// What [`run`] needs.
pub struct Config {
    pub settings: Settings,
    /// A client for the cluster whose Nodes are followed (in a pod: the in-cluster config).
    pub kube: kube::Client,
    /// Static credentials instead of the SDK's default chain: tests and the local emulator only.
    pub credentials: Option<Credentials>,
    /// How often to compare without a Node change: [`RESYNC`] unless a test needs it sooner.
    pub resync: Duration,
}

impl Config {
    pub fn new(settings: Settings, kube: kube::Client) -> Self {
        Self {
            settings,
            kube,
            credentials: None,
            resync: RESYNC,
        }
    }
}

/// Keeps the target group's targets equal to the Ready nodes until its future is dropped (the
/// caller stops it on SIGTERM). It returns only when the settings are refused or the AWS client
/// cannot be made; errors of the watch or of AWS calls are logged and retried.
pub async fn run(config: Config) -> Result<()> {
    config.settings.check()?;
    let client = elbv2_client(&config.settings, config.credentials).await?;
    let group = TargetGroup::new(client, &config.settings.target_group_arn);
    tracing::info!(
        target_group = %group.arn(),
        port = config.settings.port,
        "keeping the target group's targets equal to the Ready, schedulable nodes"
    );
    let nodes: Api<Node> = Api::all(config.kube);
    let watch = || -> BoxStream<'static, watcher::Result<watcher::Event<Node>>> {
        watcher(nodes.clone(), watcher::Config::default())
            .default_backoff()
            .boxed()
    };
    let mut stream = watch();
    let mut view = View::default();
    let mut keeper = Keeper::new(group, config.settings.port);
    // The first tick is at once; the first comparison waits for the complete list of Nodes.
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let retry_at = keeper.retry_at;
        let why = tokio::select! {
            event = stream.next() => match event {
                Some(Ok(event)) => {
                    if !view.apply(event) {
                        continue;
                    }
                    Why::NodesChanged
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "watching Nodes failed; retrying with back-off");
                    continue;
                }
                None => {
                    tracing::warn!("the watch of Nodes ended; starting it again");
                    stream = watch();
                    continue;
                }
            },
            _ = resync.tick() => Why::Resync,
            () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => Why::Retry,
        };
        if let Some(nodes) = view.nodes() {
            keeper.reconcile(nodes, why).await;
        }
    }
}

/// Why the controller compares now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    NodesChanged,
    Resync,
    Retry,
}

/// The Nodes as the watch last listed and updated them. A re-list (after the watch lost its
/// place) is taken only once complete, so a partial list never deregisters the nodes it lacks.
#[derive(Default)]
struct View {
    nodes: Option<BTreeMap<String, Node>>,
    relisting: Option<BTreeMap<String, Node>>,
}

impl View {
    /// Takes one watch event; whether the complete view changed.
    fn apply(&mut self, event: watcher::Event<Node>) -> bool {
        let name = |node: &Node| node.metadata.name.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(node) => {
                self.relisting
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name(&node), node);
                false
            }
            watcher::Event::InitDone => {
                self.nodes = Some(self.relisting.take().unwrap_or_default());
                true
            }
            watcher::Event::Apply(node) => match &mut self.nodes {
                Some(nodes) => {
                    nodes.insert(name(&node), node);
                    true
                }
                None => false,
            },
            watcher::Event::Delete(node) => match &mut self.nodes {
                Some(nodes) => nodes.remove(&name(&node)).is_some(),
                None => false,
            },
        }
    }

    /// `None` until the first complete list.
    fn nodes(&self) -> Option<&BTreeMap<String, Node>> {
        self.nodes.as_ref()
    }
}

/// Applies the rule to the target group and remembers what it last applied.
struct Keeper {
    group: TargetGroup,
    port: i32,
    /// The wanted IPs of the last comparison that succeeded.
    applied: Option<BTreeSet<String>>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Node names by IP, kept while the IP is registered, so that a gone node's target is
    /// logged with the node's name.
    names: BTreeMap<String, String>,
}

impl Keeper {
    fn new(group: TargetGroup, port: i32) -> Self {
        Self {
            group,
            port,
            applied: None,
            failures: 0,
            retry_at: None,
            names: BTreeMap::new(),
        }
    }

    async fn reconcile(&mut self, nodes: &BTreeMap<String, Node>, why: Why) {
        // While failing, only the back-off's retry calls AWS (with the view as it is then).
        if self.retry_at.is_some() && why != Why::Retry {
            return;
        }
        let wanted = wanted(nodes.values());
        let ips: BTreeSet<String> = wanted.keys().cloned().collect();
        // A Node change that leaves the wanted set as it was needs no AWS call.
        if why == Why::NodesChanged && self.applied.as_ref() == Some(&ips) {
            return;
        }
        for (name, node) in nodes {
            if let Some(ip) = internal_ip(node) {
                self.names.insert(ip, name.clone());
            }
        }
        match self.apply(nodes, &wanted).await {
            Ok(registered) => {
                self.names.retain(|ip, _| registered.contains(ip));
                self.applied = Some(ips);
                self.failures = 0;
                self.retry_at = None;
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(self.failures);
                tracing::warn!(
                    %error,
                    retry_in = ?delay,
                    "could not bring the target group in line with the nodes"
                );
                self.applied = None;
                self.retry_at = Some(Instant::now() + delay);
            }
        }
    }

    /// One comparison and the calls it calls for; the IPs registered afterwards.
    async fn apply(
        &self,
        nodes: &BTreeMap<String, Node>,
        wanted: &BTreeMap<String, String>,
    ) -> Result<BTreeSet<String>> {
        let registered = self.group.registered().await?;
        let changes = changes(&registered, wanted.keys().map(String::as_str), self.port);
        if !changes.register.is_empty() {
            self.group.register(&changes.register).await?;
            for target in &changes.register {
                let node = wanted.get(&target.ip).map_or("", String::as_str);
                tracing::info!(%target, %node, "registered: the node is Ready and schedulable");
            }
        }
        if !changes.deregister.is_empty() {
            self.group.deregister(&changes.deregister).await?;
            for target in &changes.deregister {
                let (node, reason) = self.leaving(nodes, target);
                tracing::info!(
                    %target,
                    %node,
                    %reason,
                    "deregistered: the target group's deregistration delay drains its connections"
                );
            }
        }
        if changes.is_empty() {
            tracing::debug!(
                targets = wanted.len(),
                "the target group is in line with the nodes"
            );
        }
        let mut now: BTreeSet<String> = registered
            .into_iter()
            .filter(|r| !r.draining())
            .map(|r| r.target.ip)
            .collect();
        for target in &changes.deregister {
            now.remove(&target.ip);
        }
        now.extend(changes.register.into_iter().map(|t| t.ip));
        Ok(now)
    }

    /// The node behind a target being deregistered, and why it goes.
    fn leaving(&self, nodes: &BTreeMap<String, Node>, target: &super::Target) -> (String, String) {
        let current = nodes
            .iter()
            .find(|(_, node)| internal_ip(node).as_deref() == Some(target.ip.as_str()));
        match current {
            Some((name, node)) => {
                let reason = match serving_ip(node) {
                    Ok(_) => format!("registered on port {}, not {}", target.port, self.port),
                    Err(unfit) => unfit_reason(unfit),
                };
                (name.clone(), reason)
            }
            None => match self.names.get(&target.ip) {
                Some(name) => (name.clone(), "the Node is gone".to_owned()),
                None => (String::new(), "no Node has this IP".to_owned()),
            },
        }
    }
}

fn unfit_reason(unfit: Unfit) -> String {
    format!("the node is {unfit}")
}

/// 1 s, 2 s, 4 s, ... up to a minute.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(6);
    (FIRST_RETRY * 2u32.pow(doublings)).min(LAST_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }

    #[test]
    fn back_off_doubles_up_to_a_minute() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn nothing_is_compared_before_the_first_complete_list() {
        let mut view = View::default();
        assert!(!view.apply(watcher::Event::Apply(node("early"))));
        assert!(!view.apply(watcher::Event::Init));
        assert!(!view.apply(watcher::Event::InitApply(node("a"))));
        assert!(view.nodes().is_none(), "half a list deregisters the rest");
        assert!(view.apply(watcher::Event::InitDone));
        assert_eq!(view.nodes().unwrap().len(), 1);
        assert!(view.apply(watcher::Event::Apply(node("b"))));
        assert!(view.apply(watcher::Event::Delete(node("a"))));
        assert!(!view.apply(watcher::Event::Delete(node("a"))));
        // A re-list replaces the view only once complete, keeping what it had until then.
        assert!(!view.apply(watcher::Event::Init));
        assert!(!view.apply(watcher::Event::InitApply(node("c"))));
        assert_eq!(view.nodes().unwrap().keys().collect::<Vec<_>>(), ["b"]);
        assert!(view.apply(watcher::Event::InitDone));
        assert_eq!(view.nodes().unwrap().keys().collect::<Vec<_>>(), ["c"]);
    }
}
