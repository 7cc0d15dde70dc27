//! client-go's event recorder, for components the simulator plays that record Events the way a
//! real controller does (the NGINX Ingress Controller): `tools/record/event.go` (`makeEvent`,
//! `generateEvent`, `recordToSink`) and `tools/record/events_cache.go` (`EventCorrelator`:
//! aggregation of similar events, de-duplication into `count`, and the per-object spam filter).

use crate::meta::Lookup;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::meta;
use crate::registry::{PatchKind, Registry, WriteOptions};
use crate::resources::known;

/// `defaultAggregateMaxEvents`: distinct messages per reason before they are combined.
const AGGREGATE_MAX_EVENTS: usize = 10;
/// `defaultAggregateIntervalInSeconds`.
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);
/// `defaultSpamBurst`: events a source may record about one object at once.
const SPAM_BURST: f64 = 25.0;
/// `defaultSpamQPS`: one more event per object every five minutes.
const SPAM_QPS: f64 = 1.0 / 300.0;

/// What the correlator remembers about an event it has written (`eventLog`).
#[derive(Clone)]
struct EventLog {
    count: i64,
    first_timestamp: String,
    name: String,
}

/// `aggregateRecord`: the distinct messages seen for one reason, and when.
struct AggregateRecord {
    local_keys: BTreeSet<String>,
    last: Instant,
}

/// `flowcontrol.NewTokenBucketRateLimiter(qps, burst)`, starting full.
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn try_accept(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() * SPAM_QPS;
        self.tokens = (self.tokens + refill).min(SPAM_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Correlator {
    aggregates: HashMap<String, AggregateRecord>,
    logs: HashMap<String, EventLog>,
    spam: HashMap<String, TokenBucket>,
}

/// An `EventRecorder` with one `EventSource`, writing straight into the registry.
pub struct EventRecorder {
    component: String,
    correlator: Mutex<Correlator>,
}

/// The parts of an Event the correlator keys on.
struct Draft {
    involved: Value,
    kind: String,
    reason: String,
    message: String,
    reporting_controller: String,
}

impl Draft {
    fn object_key(&self, component: &str) -> String {
        let i = &self.involved;
        let field = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        // source.component, source.host, involvedObject.{kind,namespace,name,uid,apiVersion}
        [
            component.to_string(),
            String::new(),
            field("kind"),
            field("namespace"),
            field("name"),
            field("uid"),
            field("apiVersion"),
        ]
        .concat()
    }

    /// `getEventKey`: everything that makes two events the same occurrence.
    fn event_key(&self, component: &str) -> String {
        let field_path = self
            .involved
            .get("fieldPath")
            .and_then(Value::as_str)
            .unwrap_or("");
        let i = &self.involved;
        let field = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        [
            component.to_string(),
            String::new(),
            field("kind"),
            field("namespace"),
            field("name"),
            field_path.to_string(),
            field("uid"),
            field("apiVersion"),
            self.kind.clone(),
            self.reason.clone(),
            self.message.clone(),
        ]
        .concat()
    }

    /// `EventAggregatorByReasonFunc`: the aggregate key (local key is the message).
    fn aggregate_key(&self, component: &str) -> String {
        [
            self.object_key(component),
            self.kind.clone(),
            self.reason.clone(),
            self.reporting_controller.clone(),
            String::new(),
        ]
        .concat()
    }
}

/// `ref.GetReference`: the involvedObject of an Event about `obj`.
pub fn object_reference(obj: &Value) -> Value {
    json!({
        "kind": obj.get("kind").cloned().unwrap_or(Value::Null),
        "namespace": meta::namespace(obj),
        "name": meta::name(obj),
        "uid": meta::uid(obj),
        "apiVersion": obj.get("apiVersion").cloned().unwrap_or(Value::Null),
        "resourceVersion": obj.at("/metadata/resourceVersion").cloned().unwrap_or(json!("")),
    })
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl EventRecorder {
    pub fn new(component: &str) -> Self {
        Self {
            component: component.to_string(),
            correlator: Mutex::new(Correlator::default()),
        }
    }

    /// `recorder.Event(object, eventtype, reason, message)`, recorded synchronously.
    pub fn event(&self, registry: &Registry, obj: &Value, kind: &str, reason: &str, message: &str) {
        let draft = Draft {
            involved: object_reference(obj),
            kind: kind.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            reporting_controller: self.component.clone(),
        };
        let now = Instant::now();
        let timestamp = meta::now_rfc3339();
        let mut correlator = self.correlator.lock().unwrap_or_else(|p| p.into_inner());
        // EventAggregate: past ten distinct messages for one reason, one combined event.
        let aggregate_key = draft.aggregate_key(&self.component);
        let record = correlator
            .aggregates
            .entry(aggregate_key.clone())
            .or_insert_with(|| AggregateRecord {
                local_keys: BTreeSet::new(),
                last: now,
            });
        if now.duration_since(record.last) > AGGREGATE_INTERVAL {
            record.local_keys.clear();
        }
        record.local_keys.insert(draft.message.clone());
        record.last = now;
        let (message, reporting, cache_key) = if record.local_keys.len() < AGGREGATE_MAX_EVENTS {
            (
                draft.message.clone(),
                self.component.clone(),
                draft.event_key(&self.component),
            )
        } else {
            let popped = record.local_keys.iter().next().cloned();
            if let Some(k) = popped {
                record.local_keys.remove(&k);
            }
            // The aggregate event carries no reportingController (client-go's eventCopy).
            (
                format!("(combined from similar events): {}", draft.message),
                String::new(),
                aggregate_key,
            )
        };
        // eventObserve: a repeat of a known event becomes count+1 on the first one's object.
        let previous = correlator.logs.get(&cache_key).cloned();
        let (name, count, first) = match &previous {
            Some(log) if log.count > 0 => {
                (log.name.clone(), log.count + 1, log.first_timestamp.clone())
            }
            _ => (
                format!(
                    "{}.{:x}",
                    draft.involved["name"].as_str().unwrap_or_default(),
                    unix_nanos()
                ),
                1,
                timestamp.clone(),
            ),
        };
        correlator.logs.insert(
            cache_key,
            EventLog {
                count,
                first_timestamp: first.clone(),
                name: name.clone(),
            },
        );
        // EventSourceObjectSpamFilter: 25 events per object, then one every five minutes.
        let bucket = correlator
            .spam
            .entry(draft.object_key(&self.component))
            .or_insert(TokenBucket {
                tokens: SPAM_BURST,
                last: now,
            });
        if !bucket.try_accept(now) {
            tracing::debug!(reason, "event dropped by the spam filter");
            return;
        }
        drop(correlator);
        let namespace = match draft.involved["namespace"].as_str() {
            None | Some("") => "default".to_string(),
            Some(ns) => ns.to_string(),
        };
        let opts = WriteOptions::controller(&self.component);
        if count > 1 {
            let patch = json!({"count": count, "lastTimestamp": timestamp, "message": message});
            match registry.patch(
                known::events(),
                &namespace,
                &name,
                PatchKind::Strategic,
                patch.to_string().as_bytes(),
                None,
                &opts,
            ) {
                Ok(_) => return,
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    tracing::debug!(error = %e, "event patch rejected; not retried");
                    return;
                }
            }
        }
        let event = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": draft.involved,
            "reason": draft.reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": first,
            "lastTimestamp": timestamp,
            "count": count,
            "type": draft.kind,
            "eventTime": null,
            "reportingComponent": reporting,
            "reportingInstance": "",
        });
        if let Err(e) = registry.create(known::events(), &namespace, event, &opts) {
            // A terminating namespace refuses new events; client-go drops them without retrying.
            tracing::debug!(error = %e, "event create rejected; not retried");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress() -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "default", "uid": "u1", "resourceVersion": "7"}})
    }

    fn events(registry: &Registry) -> Vec<Value> {
        registry.select(known::events(), Some("default"), None)
    }

    /// events_cache.go eventObserve: the same event again is count+1 on one object.
    #[test]
    fn repeats_are_counted_on_one_event_like_events_cache_go() {
        let registry = Registry::new(100);
        crate::controllers::bootstrap(&registry, true);
        let recorder = EventRecorder::new("nginx-ingress-controller");
        for _ in 0..3 {
            recorder.event(&registry, &ingress(), "Normal", "AddedOrUpdated", "ok");
        }
        recorder.event(&registry, &ingress(), "Warning", "Rejected", "no");
        let all = events(&registry);
        assert_eq!(all.len(), 2);
        let ok = all
            .iter()
            .find(|e| e["reason"] == "AddedOrUpdated")
            .unwrap();
        assert_eq!(ok["count"], 3);
        assert_eq!(ok["source"]["component"], "nginx-ingress-controller");
        assert_eq!(ok["involvedObject"]["resourceVersion"], "7");
        assert!(meta::name(ok).starts_with("web."));
    }

    /// events_cache.go EventSourceObjectSpamFilter: burst 25 per source+object.
    #[test]
    fn the_spam_filter_drops_events_past_a_burst_of_25_per_object() {
        let registry = Registry::new(1000);
        crate::controllers::bootstrap(&registry, true);
        let recorder = EventRecorder::new("nginx-ingress-controller");
        for i in 0..30 {
            let reason = if i % 2 == 0 { "A" } else { "B" };
            recorder.event(&registry, &ingress(), "Normal", reason, "same");
        }
        let total: i64 = events(&registry)
            .iter()
            .map(|e| e["count"].as_i64().unwrap())
            .sum();
        assert_eq!(total, 25);
    }

    /// events_cache.go EventAggregate: the tenth distinct message of one reason is combined.
    #[test]
    fn the_tenth_distinct_message_of_a_reason_is_combined() {
        let registry = Registry::new(1000);
        crate::controllers::bootstrap(&registry, true);
        let recorder = EventRecorder::new("nginx-ingress-controller");
        for i in 0..10 {
            recorder.event(
                &registry,
                &ingress(),
                "Warning",
                "Rejected",
                &format!("m{i}"),
            );
        }
        let combined: Vec<Value> = events(&registry)
            .into_iter()
            .filter(|e| {
                e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("(combined from similar events): ")
            })
            .collect();
        assert_eq!(combined.len(), 1);
        assert_eq!(combined[0]["message"], "(combined from similar events): m9");
    }
}
