//! Benchmark of the site image: build time and sizes, the push to ECR through the realistic front
//! (30-120 ms per call, an operator's 100 Mbit/s uplink; the front also enforces ECR's part and
//! digest rules), and the no-op re-run. Prints figures, asserts nothing. Run with `just bench`.
//!
//! The binary is the real musl build of the site when `./dev site-binary` has made it
//! (`$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/site/web`), else a generated 30 MiB file that
//! compresses about as well as a binary does; the output says which.

#![allow(clippy::print_stdout, clippy::expect_used)] // a benchmark's report is its output

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws::{AwsEmulator, Front, Port, Profile};
use provisioner::aws::ecr::Repository;
use provisioner::aws::{CallCounts, CallLog, Target};
use provisioner::config::StackConfig;
use provisioner::image::{Image, Recipe};
use provisioner::plan::Context;
use provisioner::progress::NoProgress;
use provisioner::stack::Stack;
use provisioner::steps::site_image::TAG;
use provisioner::{Aws, aws::ecr::Pushed};
use rand::RngCore;

const MIB: f64 = 1024.0 * 1024.0;

/// The site binary and where it came from.
fn binary() -> (Vec<u8>, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let real = target.join("x86_64-unknown-linux-musl/site/web");
    if let Ok(bytes) = std::fs::read(&real) {
        return (bytes, format!("the site's musl binary {}", real.display()));
    }
    // Half random 4 KiB blocks, half repetitive ones: gzip gets it to about half, as with code.
    let mut bytes = vec![0u8; 30 * 1024 * 1024];
    let mut rng = rand::rng();
    for (i, block) in bytes.chunks_mut(4096).enumerate() {
        if i % 2 == 0 {
            rng.fill_bytes(block);
        } else {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j % 61) as u8;
            }
        }
    }
    (
        bytes,
        format!(
            "a generated 30 MiB binary-like file (no {} yet: `./dev site-binary` builds it)",
            real.display()
        ),
    )
}

async fn context(front: &Front, name: &str) -> (Context, CallLog) {
    let config = StackConfig::default_for(name).expect("valid name");
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

/// Finds or creates the stack's repository and pushes the image, as the site-image step does.
async fn push(front: &Front, name: &str, image: &Image) -> (Duration, Pushed, CallCounts) {
    let (cx, calls) = context(front, name).await;
    let stack: &Stack = &cx.stack;
    let start = Instant::now();
    let (repository, _): (Repository, bool) = cx
        .aws
        .ecr()
        .ensure_stack_repository(stack)
        .await
        .expect("repository");
    let pushed = cx
        .aws
        .ecr()
        .push(&repository, image, TAG)
        .await
        .expect("push");
    (start.elapsed(), pushed, calls.counts())
}

fn row(what: &str, wall: Duration, counts: &CallCounts) {
    println!(
        "| {what:<36} | {:>8.2} s | {:>5} | {:>8} | {:>8} |",
        wall.as_secs_f64(),
        counts.total,
        counts.mutating,
        counts.attempts
    );
}

#[tokio::main]
async fn main() {
    let (bytes, source) = binary();
    let recipe = Recipe::site();
    let start = Instant::now();
    let image = recipe.build(&bytes).expect("the image builds");
    let build = start.elapsed();
    let again = recipe.build(&bytes).expect("the image builds");
    let layer = &image.layers[0];

    println!("Binary: {source}");
    println!(
        "Build profile of this benchmark: {} (gzip runs several times faster in release)\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("| image                                |      value |");
    println!("|--------------------------------------|------------|");
    println!(
        "| binary                               | {:>6.2} MiB |",
        bytes.len() as f64 / MIB
    );
    println!(
        "| layer (gzip tar)                     | {:>6.2} MiB |",
        layer.size() as f64 / MIB
    );
    println!(
        "| config                               | {:>6} B   |",
        image.config.size()
    );
    println!(
        "| build time                           | {:>8.2} s |",
        build.as_secs_f64()
    );
    println!(
        "| second build, same digest            | {:>10} |",
        again.manifest_digest == image.manifest_digest
    );
    println!("manifest digest {}\n", image.manifest_digest);

    let emulator = AwsEmulator::start(Port::Any).await.expect("emulator");
    let realistic = Profile::realistic();
    let uplink = realistic.upload_bandwidth;
    let front = Front::start(emulator.endpoint(), realistic, 0)
        .await
        .expect("front");
    let loopback = Front::start(
        emulator.endpoint(),
        Profile::realistic().with_upload_bandwidth(None),
        0,
    )
    .await
    .expect("front");

    let (first, pushed, first_counts) = push(&front, "bench-image", &image).await;
    let (rerun, repushed, rerun_counts) = push(&front, "bench-image", &image).await;
    let (fast, _, fast_counts) = push(&loopback, "bench-image-lo", &image).await;

    println!(
        "Push through the realistic front: latency 30-120 ms per call, uplink {} Mbit/s\n",
        uplink.map_or(0, |b| b * 8 / 1_000_000)
    );
    println!("| push                                 |     wall   | calls | mutating | attempts |");
    println!("|--------------------------------------|------------|-------|----------|----------|");
    row("first push (100 Mbit/s)", first, &first_counts);
    row("re-run, image present (no-op)", rerun, &rerun_counts);
    row("first push (latency only)", fast, &fast_counts);
    println!();
    println!(
        "blobs uploaded: {} (first), {} (re-run); manifest put: {} / {}",
        pushed.uploaded.len(),
        repushed.uploaded.len(),
        pushed.put,
        repushed.put
    );
    println!(
        "changing calls on the no-op re-run: {} (must be 0)",
        rerun_counts.mutating
    );
    println!("reference handed to the Deployment: {}", pushed.reference);
    let stats = front.stats();
    println!(
        "front: {} ECR changing calls reached moto; refused by ECR's rules: {:?}",
        stats.mutating_by_service.get("ecr").copied().unwrap_or(0),
        stats.refused
    );
}
