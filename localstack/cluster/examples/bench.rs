//! Throughput and memory of the simulator, measured through its HTTP API with kube-rs (not a test).
//!
//! `cargo run -p cluster --example bench` (dev profile; absolute numbers are for comparing
//! revisions on one machine, not for comparing with a real API server).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const CREATES: usize = 2_000;
const LIST_ROUNDS: usize = 20;
const WATCHERS: usize = 50;
const WATCH_EVENTS: usize = 200;
const DEPLOYMENTS: usize = 1_000;

/// Resident set size of this process in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn config_map(name: &str) -> anyhow::Result<ConfigMap> {
    Ok(serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"bench": "yes"}}, "data": {"k": "v"}}),
    )?)
}

struct Row {
    what: String,
    count: usize,
    elapsed: Duration,
    unit: &'static str,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rss_start = rss_kib();
    let sim = cluster::ClusterSim::start(cluster::SimConfig::default()).await?;
    let client = sim.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut rows = Vec::new();

    // Create, sequentially (one client, one request at a time).
    let started = Instant::now();
    for i in 0..CREATES {
        cms.create(&PostParams::default(), &config_map(&format!("cm-{i}"))?)
            .await
            .with_context(|| format!("create cm-{i}"))?;
    }
    rows.push(Row {
        what: "create ConfigMap (sequential)".into(),
        count: CREATES,
        elapsed: started.elapsed(),
        unit: "objects",
    });

    // Create, 8 requests in flight.
    let started = Instant::now();
    futures::stream::iter(0..CREATES)
        .map(|i| {
            let cms = cms.clone();
            async move {
                cms.create(&PostParams::default(), &config_map(&format!("par-{i}"))?)
                    .await
                    .with_context(|| format!("create par-{i}"))
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    rows.push(Row {
        what: "create ConfigMap (8 in flight)".into(),
        count: CREATES,
        elapsed: started.elapsed(),
        unit: "objects",
    });

    // List everything, repeatedly.
    let started = Instant::now();
    let mut listed = 0;
    for _ in 0..LIST_ROUNDS {
        listed += cms.list(&ListParams::default()).await?.items.len();
    }
    rows.push(Row {
        what: format!("list {} ConfigMaps x{LIST_ROUNDS}", listed / LIST_ROUNDS),
        count: listed,
        elapsed: started.elapsed(),
        unit: "objects",
    });

    // Watch fan-out: WATCHERS streams each receive WATCH_EVENTS additions.
    let watch_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    let rv = watch_cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut handles = Vec::new();
    for _ in 0..WATCHERS {
        let stream = watch_cms
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?;
        handles.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut seen = 0;
            while seen < WATCH_EVENTS {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(_))) => seen += 1,
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            seen
        }));
    }
    let started = Instant::now();
    for i in 0..WATCH_EVENTS {
        watch_cms
            .create(&PostParams::default(), &config_map(&format!("w-{i}"))?)
            .await?;
    }
    let mut delivered = 0;
    for h in handles {
        delivered += h.await?;
    }
    rows.push(Row {
        what: format!("watch fan-out: {WATCHERS} watchers x {WATCH_EVENTS} events"),
        count: delivered,
        elapsed: started.elapsed(),
        unit: "events",
    });

    // Memory with many Deployments (replicas 0, so no ReplicaSet pods run).
    let rss_before = rss_kib();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    futures::stream::iter(0..DEPLOYMENTS)
        .map(|i| {
            let deployments = deployments.clone();
            async move {
                let name = format!("d-{i}");
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                             "template": {"metadata": {"labels": {"app": name}},
                                          "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}
                }))?;
                deployments
                    .create(&PostParams::default(), &d)
                    .await
                    .with_context(|| format!("create {name}"))
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    rows.push(Row {
        what: "create Deployment (replicas 0, 8 in flight)".into(),
        count: DEPLOYMENTS,
        elapsed: started.elapsed(),
        unit: "objects",
    });
    // Let the controllers create the ReplicaSets and settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib();

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<48} {:>8} {:>10} {:>14}",
        "operation", "count", "seconds", "per second"
    )?;
    for r in &rows {
        let secs = r.elapsed.as_secs_f64();
        writeln!(
            out,
            "{:<48} {:>8} {:>10.3} {:>10.0} {}",
            r.what,
            r.count,
            secs,
            r.count as f64 / secs.max(1e-9),
            r.unit
        )?;
    }
    let mib = |k: Option<u64>| {
        k.map_or("n/a".to_string(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        })
    };
    writeln!(out)?;
    writeln!(
        out,
        "RSS at start (before the simulator): {}",
        mib(rss_start)
    )?;
    writeln!(
        out,
        "RSS before the Deployments (after the above): {}",
        mib(rss_before)
    )?;
    writeln!(
        out,
        "RSS with {DEPLOYMENTS} Deployments (+{DEPLOYMENTS} ReplicaSets, {} other objects): {}",
        2 * CREATES + WATCH_EVENTS,
        mib(rss_after)
    )?;
    Ok(())
}
