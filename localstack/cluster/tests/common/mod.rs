#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // Shared by several test binaries; helpers may panic.

use std::time::Duration;

use cluster::{ClusterSim, RunningSim, SimConfig};

pub async fn sim() -> RunningSim {
    sim_with(SimConfig {
        readiness_delay: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await
}

pub async fn sim_with(config: SimConfig) -> RunningSim {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    ClusterSim::start(config).await.expect("simulator starts")
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it returns Ok; after `timeout` fails naming what was awaited and the
/// last state seen (the Err of the last poll).
pub async fn until<T, S, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    S: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `creationTimestamp` has whole seconds (metav1.Time is serialised as RFC 3339 without a
/// fraction), and orders that NIC decides by it need two different seconds: what is created
/// after this returns is stamped a later second than what was created before. The behaviour
/// depends on real time, so real time passes, but only until the wall clock's second changes
/// (the simulator stamps objects with the same clock).
pub async fn next_second() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now.as_secs() > start {
            return;
        }
        tokio::time::sleep(Duration::from_secs(now.as_secs() + 1) - now).await;
    }
}

pub fn deployment(name: &str, image: &str, replicas: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]}
            }
        }
    })
}

/// Creates the Deployment of [`deployment`] in the namespace of `api`.
pub async fn create_deployment(
    api: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    image: &str,
    replicas: i32,
) {
    api.create(
        &kube::api::PostParams::default(),
        &serde_json::from_value(deployment(name, image, replicas)).unwrap(),
    )
    .await
    .unwrap();
}

/// Waits until the Deployment's rollout is complete, as `kubectl rollout status` would.
pub async fn rolled_out(
    api: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
    timeout: Duration,
) {
    tokio::time::timeout(
        timeout,
        kube::runtime::wait::await_condition(
            api.clone(),
            name,
            kube::runtime::wait::conditions::is_deployment_completed(),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} rolled out within {timeout:?}"))
    .unwrap();
}
