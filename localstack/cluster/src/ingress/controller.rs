//! NIC's control loop over Ingresses and Services (NIC 5.5.4 `internal/k8s/handlers.go`
//! createIngressHandlers / `service.go` createServiceHandlers, `controller.go` syncIngress,
//! processChanges, processProblems, `service.go` syncService): it watches the API, judges each
//! change with [`Configuration`], records the Events NIC records (through client-go's recorder,
//! source `nginx-ingress-controller`) and publishes the NGINX configuration the data path uses.

use crate::meta::Lookup;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::configuration::{Configuration, Problem, ResourceChange};
use super::events::{self, EventSpec};
use super::{Published, servers};
use crate::meta;
use crate::recorder::EventRecorder;
use crate::registry::Registry;
use crate::resources::known;
use crate::store::{Change, ChangeKind};

/// `-ingress-class`'s controller's event source (cmd/nginx-ingress/main.go).
pub const COMPONENT: &str = "nginx-ingress-controller";

struct Controller {
    registry: Arc<Registry>,
    configuration: Configuration,
    recorder: EventRecorder,
    published: Published,
    /// The informers' caches: the last version seen of each Ingress and Service.
    seen: HashMap<(&'static str, String, String), Value>,
    /// An Ingress was synced since the configuration was last published (NGINX's last reload).
    unpublished: bool,
}

/// handlers.go hasChanges: anything but the status addresses and the resourceVersion.
fn ingress_changed(old: &Value, new: &Value) -> bool {
    let strip = |o: &Value| {
        let mut o = o.clone();
        crate::meta::metadata_mut(&mut o).remove("resourceVersion");
        if let Some(status) = o.get_mut("status").and_then(Value::as_object_mut) {
            status.remove("loadBalancer");
        }
        o
    };
    strip(old) != strip(new)
}

/// The update handlers' filter: an Ingress or Service update is queued only when it matters.
fn update_matters(is_ingress: bool, old: &Value, new: &Value) -> bool {
    if is_ingress {
        ingress_changed(old, new)
    } else {
        service_changed(old, new)
    }
}

/// service.go hasServicedChanged: ports (number and name), an ExternalName's name, headless.
fn service_changed(old: &Value, new: &Value) -> bool {
    let ports = |s: &Value| {
        let mut ports: Vec<(Value, Value)> = s
            .at("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p.get("port").cloned().unwrap_or(Value::Null),
                    p.get("name").cloned().unwrap_or(json!("")),
                )
            })
            .collect();
        ports.sort_by_key(|(port, name)| (port.to_string(), name.to_string()));
        ports
    };
    let headless = |s: &Value| s.at("/spec/clusterIP").and_then(Value::as_str) == Some("None");
    let external_name = |s: &Value| {
        (s.at("/spec/type").and_then(Value::as_str) == Some("ExternalName"))
            .then(|| s.at("/spec/externalName").cloned())
    };
    ports(old) != ports(new)
        || (external_name(new).is_some() && external_name(old) != external_name(new))
        || headless(old)
        || headless(new)
}

impl Controller {
    fn record(&self, event: &EventSpec) {
        self.recorder.event(
            &self.registry,
            &event.object,
            event.kind,
            event.reason,
            &event.message,
        );
    }

    /// processChanges then processProblems.
    fn report(&self, changes: Vec<ResourceChange>, problems: Vec<Problem>) {
        for change in &changes {
            let ing = &change.resource.ingress;
            let exists = self
                .registry
                .try_get(known::ingresses(), meta::namespace(ing), meta::name(ing))
                .is_some();
            for event in events::for_change(change, exists) {
                self.record(&event);
            }
        }
        for problem in &problems {
            self.record(&events::for_problem(problem));
        }
    }

    fn publish(&self) {
        let config = Arc::new(servers::build(self.configuration.hosts()));
        match self.published.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// syncIngress: the current version of the Ingress, or its deletion. The configuration is
    /// published (NGINX reloaded) by [`Self::reload`] once the queued changes are synced.
    fn sync_ingress(&mut self, ns: &str, name: &str) {
        let (changes, problems) = match self.registry.try_get(known::ingresses(), ns, name) {
            Some(ing) => self.configuration.add_or_update(&ing),
            None => self.configuration.delete(&format!("{ns}/{name}")),
        };
        self.report(changes, problems);
        self.unpublished = true;
    }

    /// NIC's batch sync (5.5.4 `internal/k8s/controller.go` `sync`): while more than one task is
    /// queued, reloads are disabled, and when the queue is empty again one reload applies them all
    /// (`EnableReloads`, `ReloadForBatchUpdates`); a lone change reloads at once. So a burst of
    /// Ingress changes costs one configuration build, not one per change.
    fn reload(&mut self) {
        if std::mem::take(&mut self.unpublished) {
            self.publish();
        }
    }

    /// syncService: the resources routing to the Service are regenerated and reported again.
    fn sync_service(&self, ns: &str, name: &str) {
        for resource in self.configuration.resources_for_service(ns, name) {
            for event in events::for_resource(&resource) {
                self.record(&event);
            }
        }
    }

    fn handle(&mut self, change: &Change) {
        let resource = change.key.resource;
        let is_ingress = resource == known::ingresses().key();
        if !is_ingress && resource != known::services().key() {
            return;
        }
        let (ns, name) = (change.key.namespace.clone(), change.key.name.clone());
        let cache_key = (resource, ns.clone(), name.clone());
        let previous = match change.kind {
            ChangeKind::Deleted => self.seen.remove(&cache_key),
            _ => self.seen.insert(cache_key, change.object.clone()),
        };
        let relevant = match (change.kind, &previous) {
            (ChangeKind::Modified, Some(old)) => update_matters(is_ingress, old, &change.object),
            _ => true,
        };
        if !relevant {
            return;
        }
        if is_ingress {
            self.sync_ingress(&ns, &name);
        } else {
            self.sync_service(&ns, &name);
        }
    }

    /// Relists after the watch fell behind, as an informer does: the relist's Replace hands every
    /// object to the update handler beside the cached version (client-go `tools/cache`
    /// DeltaFIFO Replace, shared_informer.go HandleDeltas), which queues only what changed
    /// (handlers.go hasChanges for Ingresses, hasServicedChanged for Services), plus what was
    /// added or went meanwhile; one reload follows.
    fn resync(&mut self) {
        let mut current = HashMap::new();
        for rt in [known::ingresses(), known::services()] {
            for o in self.registry.select(rt, None, None) {
                let key = (
                    rt.key(),
                    meta::namespace(&o).to_string(),
                    meta::name(&o).to_string(),
                );
                current.insert(key, o);
            }
        }
        let previous = std::mem::replace(&mut self.seen, current);
        let ingress = known::ingresses().key();
        let mut ingresses = Vec::new();
        let mut services = Vec::new();
        let mut queue = |key: &(&'static str, String, String)| {
            let names = (key.1.clone(), key.2.clone());
            if key.0 == ingress {
                ingresses.push(names);
            } else {
                services.push(names);
            }
        };
        for (key, object) in &self.seen {
            if previous
                .get(key)
                .is_none_or(|old| update_matters(key.0 == ingress, old, object))
            {
                queue(key);
            }
        }
        // Deleted while the watch was behind: DeltaFIFO's DeletedFinalStateUnknown, which the
        // delete handlers queue like any deletion.
        for key in previous.keys().filter(|k| !self.seen.contains_key(*k)) {
            queue(key);
        }
        ingresses.sort();
        services.sort();
        for (ns, name) in ingresses {
            self.sync_ingress(&ns, &name);
        }
        for (ns, name) in services {
            self.sync_service(&ns, &name);
        }
        self.reload();
    }
}

/// Runs the controller until the simulator stops.
pub async fn run(registry: Arc<Registry>, published: Published) {
    let mut feed = registry.store.subscribe();
    let mut controller = Controller {
        registry,
        configuration: Configuration::default(),
        recorder: EventRecorder::new(COMPONENT),
        published,
        seen: HashMap::new(),
        unpublished: false,
    };
    controller.resync();
    loop {
        match feed.recv().await {
            Ok(change) => controller.handle(&change),
            Err(RecvError::Lagged(_)) => controller.resync(),
            Err(RecvError::Closed) => return,
        }
        // The rest of the queue as it is now, then one reload (see `Controller::reload`); what
        // arrives meanwhile is the next batch, so a busy cluster cannot hold a reload back.
        for _ in 0..feed.len() {
            // NIC is its own process: however long a batch, the API server's requests go on.
            tokio::task::yield_now().await;
            match feed.try_recv() {
                Ok(change) => controller.handle(&change),
                Err(TryRecvError::Lagged(_)) => controller.resync(),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => {
                    controller.reload();
                    return;
                }
            }
        }
        controller.reload();
    }
}
