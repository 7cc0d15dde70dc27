//! Benchmark of `up` against the emulator behind the realistic front (`fast` profile timings with
//! realistic 30-120 ms call latency): how close `up` gets to the critical path the profile implies,
//! and how many AWS calls `up`, a no-op re-run and `down` make. Run with `just bench`.
//!
//! Critical path = our own calls on the longest chain (measured: the same `up` with the same
//! latency but nothing to wait for) + IAM propagation + EKS create + instance start. The load
//! balancer is built while EKS is creating, so it is off that path.

#![allow(clippy::print_stdout, clippy::expect_used)] // a benchmark's report is its output

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws::{AwsEmulator, Front, Port, Profile};
use provisioner::aws::{CallCounts, CallLog, Target};
use provisioner::config::StackConfig;
use provisioner::plan::Context;
use provisioner::progress::NoProgress;
use provisioner::steps;
use provisioner::{Aws, remaining};

const LATENCY: (Duration, Duration) = (Duration::from_millis(30), Duration::from_millis(120));

async fn context(front: &Front, name: &str) -> (Context, CallLog) {
    let mut config = StackConfig::default_for(name).expect("valid name");
    config.timeouts.poll = Duration::from_millis(250);
    config.timeouts.cluster_limit = Duration::from_secs(300);
    config.timeouts.resources_limit = Duration::from_secs(300);
    let calls = CallLog::default();
    let aws = Aws::connect(
        &Target::Local {
            endpoint: front.endpoint(),
        },
        &config.region,
        calls.clone(),
    )
    .await;
    (Context::new(config, aws, Arc::new(NoProgress)), calls)
}

async fn timed(front: &Front, name: &str, down: bool) -> (Duration, CallCounts) {
    let (cx, calls) = context(front, name).await;
    let plan = steps::infrastructure();
    let start = Instant::now();
    let result = if down {
        plan.down(&cx).await
    } else {
        plan.up(&cx).await
    };
    let elapsed = start.elapsed();
    if let Err(err) = result {
        panic!(
            "{} of {name} failed: {err}",
            if down { "down" } else { "up" }
        );
    }
    if down {
        let left = remaining(&plan, &cx).await.expect("inspect");
        assert!(left.is_empty(), "down left {left:?}");
    }
    (elapsed, calls.counts())
}

fn row(what: &str, wall: Duration, counts: &CallCounts) {
    println!(
        "| {what:<28} | {:>8.2} s | {:>5} | {:>8} | {:>8} |",
        wall.as_secs_f64(),
        counts.total,
        counts.mutating,
        counts.attempts
    );
}

#[tokio::main]
async fn main() {
    let emulator = AwsEmulator::start(Port::Any).await.expect("emulator");
    let instant = Profile::instant().with_latency(LATENCY.0, LATENCY.1);
    let fast = Profile::fast().with_latency(LATENCY.0, LATENCY.1);

    // Warm moto's IAM and EC2 backends (loading managed policies takes seconds, once).
    let warm = Front::start(emulator.endpoint(), Profile::instant(), 0)
        .await
        .expect("front");
    timed(&warm, "bench-warm", false).await;
    timed(&warm, "bench-warm", true).await;

    let base_front = Front::start(emulator.endpoint(), instant, 0)
        .await
        .expect("front");
    let (calls_path, _) = timed(&base_front, "bench-base", false).await;
    timed(&base_front, "bench-base", true).await;

    let front = Front::start(emulator.endpoint(), fast.clone(), 0)
        .await
        .expect("front");
    let (up_wall, up_counts) = timed(&front, "bench", false).await;
    let (rerun_wall, rerun_counts) = timed(&front, "bench", false).await;
    let (down_wall, down_counts) = timed(&front, "bench", true).await;

    let waits = fast.cluster_create + fast.instance_start;
    let critical = calls_path + fast.iam_propagation + waits;
    let critical_without_iam = calls_path + waits;

    println!(
        "Profile `fast` (EKS {:?}, instances {:?}, NLB {:?}, IAM propagation {:?}), latency {:?}-{:?}, polls capped at 250 ms\n",
        fast.cluster_create,
        fast.instance_start,
        fast.load_balancer_start,
        fast.iam_propagation,
        LATENCY.0,
        LATENCY.1
    );
    println!("| run                          |     wall   | calls | mutating | attempts |");
    println!("|------------------------------|------------|-------|----------|----------|");
    row("up (fast profile)", up_wall, &up_counts);
    row("up again (no-op)", rerun_wall, &rerun_counts);
    row("down", down_wall, &down_counts);
    println!();
    println!(
        "our calls on the critical path (same up, nothing to wait for): {:.2} s",
        calls_path.as_secs_f64()
    );
    println!(
        "critical path = calls + IAM propagation + EKS create + instance start = {:.2} s",
        critical.as_secs_f64()
    );
    println!(
        "up wall / critical path = {:.3} (target <= 1.2); without counting IAM propagation as unavoidable: {:.3}",
        up_wall.as_secs_f64() / critical.as_secs_f64(),
        up_wall.as_secs_f64() / critical_without_iam.as_secs_f64()
    );
    println!(
        "mutating calls on the no-op re-run: {}",
        rerun_counts.mutating
    );
}
