//! The provisioner against the emulator behind the realistic front (`fast` profile): resources
//! that take time, IAM that is eventually consistent, lingering interfaces, throttling, 5xx, and
//! processes killed at a mutating call.

#![allow(clippy::expect_used)] // test helpers outside #[test] functions

mod common;

use std::time::Duration;

use aws::{Front, Profile};
use common::{Census, census, config, down, emulator, left, run, up};
use provisioner::progress::Event;
use provisioner::steps;
use provisioner::steps::cluster::Cluster;

fn fast() -> Profile {
    Profile::fast().with_latency(Duration::from_millis(1), Duration::from_millis(5))
}

async fn front(emu: &aws::AwsEmulator, profile: Profile) -> Front {
    Front::start(emu.endpoint(), profile, 0)
        .await
        .expect("the front starts")
}

fn waited(events: &[Event], step: &str, text: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Waiting(s, status) if *s == step && status.contains(text)))
}

#[tokio::test]
async fn up_waits_through_every_state_aws_goes_through() {
    let emu = emulator().await;
    let front = front(&emu, fast()).await;
    let run = up(&front, "slow").await;
    let events = run.progress.events();
    assert!(
        waited(&events, "cluster", "not visible to EKS yet"),
        "IAM propagation retried: {events:?}"
    );
    assert!(waited(&events, "cluster", "cluster CREATING"), "{events:?}");
    assert!(
        waited(&events, "nodes", "instances InService"),
        "{events:?}"
    );
    assert!(
        waited(&events, "load-balancer", "provisioning"),
        "{events:?}"
    );
    let stats = front.stats();
    assert!(
        stats
            .injected
            .get("InvalidParameterException")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{stats:?}"
    );
    // The retried CreateCluster is the only repeated mutating call.
    let creates = run
        .calls
        .counts()
        .by_operation
        .get("EKS:CreateCluster")
        .copied()
        .unwrap_or(0);
    assert!(
        creates >= 2,
        "CreateCluster was retried after the IAM error ({creates} calls)"
    );
    let cluster = run.cx.outputs.get::<Cluster>().expect("cluster output");
    assert!(
        cluster.endpoint.starts_with("https://"),
        "the endpoint is read once ACTIVE"
    );

    let again = up(&front, "slow").await;
    assert_eq!(
        again.calls.counts().mutating,
        0,
        "{:?}",
        again.calls.counts().mutating_operations()
    );
    down(&front, "slow").await;
    assert_eq!(left(&emu, "slow").await, Vec::<String>::new());
}

#[tokio::test]
async fn throttling_and_server_errors_do_not_stop_up_or_down() {
    let emu = emulator().await;
    let front = front(&emu, fast().with_faults(0.10, 0.02)).await;
    up(&front, "noisy").await;
    down(&front, "noisy").await;
    assert_eq!(left(&emu, "noisy").await, Vec::<String>::new());
    let stats = front.stats();
    let throttled: usize = ["Throttling", "ThrottlingException", "RequestLimitExceeded"]
        .iter()
        .map(|c| stats.injected.get(*c).copied().unwrap_or(0))
        .sum();
    let failed: usize = [
        "InternalError",
        "ServiceUnavailable",
        "ServerException",
        "InternalServerError",
    ]
    .iter()
    .map(|c| stats.injected.get(*c).copied().unwrap_or(0))
    .sum();
    assert!(
        throttled > 0 && failed > 0,
        "faults were injected: {:?}",
        stats.injected
    );
}

#[tokio::test]
async fn down_waits_out_dependency_violations() {
    let emu = emulator().await;
    let mut profile = fast();
    profile.cluster_delete = Duration::from_millis(300);
    profile.interfaces_linger = Duration::from_secs(4);
    let front = front(&emu, profile).await;
    up(&front, "linger").await;
    let run = down(&front, "linger").await;
    assert_eq!(left(&emu, "linger").await, Vec::<String>::new());
    let stats = front.stats();
    assert!(
        stats
            .injected
            .get("DependencyViolation")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{stats:?}"
    );
    let events = run.progress.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Waiting(_, s) if s.contains("dependent resources"))),
        "{events:?}"
    );
}

/// Runs the `provisioner` binary until the front's kill switch fires at mutating call `n`, then
/// kills the process for real.
async fn killed_binary(front: &Front, name: &str, n: usize) {
    front.kill_after_mutating(n);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["--endpoint", &front.endpoint(), "--name", name, "up"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("provisioner starts");
    tokio::select! {
        _ = front.killed() => {}
        status = child.wait() => panic!("{name}: up ended ({status:?}) before mutating call {n}"),
    }
    child.kill().await.expect("kill the provisioner");
    front.revive();
}

#[tokio::test]
async fn a_process_killed_at_any_mutating_call_converges_on_the_next_run() {
    let emu = emulator().await;
    // A full up makes 31 mutating calls (33 with the IAM retries); 12 kill points over all steps.
    let points = [1, 3, 5, 8, 11, 14, 17, 20, 23, 26, 28, 30];
    for batch in points.chunks(4) {
        let runs = batch.iter().map(|&n| {
            let emu = &emu;
            async move {
                let name = format!("kill-at-{n}");
                let front = front(emu, fast()).await;
                killed_binary(&front, &name, n).await;
                let resumed = up(&front, &name).await;
                assert_eq!(census(&resumed).await, Census::COMPLETE, "{name}");
                down(&front, &name).await;
                assert_eq!(
                    left(emu, &name).await,
                    Vec::<String>::new(),
                    "{name}: down after a kill"
                );
            }
        });
        futures::future::join_all(runs).await;
    }
}

#[tokio::test]
async fn plan_against_a_slow_aws_changes_nothing() {
    let emu = emulator().await;
    let front = front(&emu, fast()).await;
    let probe = run(&front, config("planned")).await;
    let _ = steps::infrastructure().inspect(&probe.cx).await;
    assert_eq!(front.stats().mutating, 0);
}

#[tokio::test]
async fn a_real_error_stops_up_naming_step_resource_and_aws_code() {
    let emu = emulator().await;
    let front = front(&emu, fast()).await;
    front.fail(
        "CreateLoadBalancer",
        "TooManyLoadBalancers",
        "The quota for the number of load balancers has been reached",
    );
    let probe = run(&front, config("quota")).await;
    let err = steps::infrastructure().up(&probe.cx).await.unwrap_err();
    let (step, error) = &err.failed[0];
    assert_eq!(*step, "load-balancer");
    assert_eq!(error.aws_code(), Some("TooManyLoadBalancers"));
    let text = err.to_string();
    assert!(text.contains("load balancer quota-nlb"), "{text}");
    assert!(
        text.contains("CreateLoadBalancer failed: TooManyLoadBalancers: The quota"),
        "{text}"
    );
    // Not retried: a quota does not lift by waiting.
    let creates = probe
        .calls
        .counts()
        .by_operation
        .get("Elastic Load Balancing v2:CreateLoadBalancer")
        .copied();
    assert_eq!(creates, Some(1));
    assert!(err.skipped.contains(&"targets"));
}
