//! The provisioner against the emulator behind the realistic front (`fast` profile): resources
//! that take time, IAM that is eventually consistent, lingering interfaces, throttling, 5xx, ECR's
//! push rules, and processes killed at a mutating call (of any service, and of ECR's push).

#![allow(clippy::expect_used)] // test helpers outside #[test] functions

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws::{Front, Profile};
use aws_sdk_ecr::primitives::Blob as SdkBlob;
use common::{
    Census, Endpoint, assert_nothing_left, census, config, down, emulator, left, run, up,
};
use provisioner::aws::ecr::{self, site_repository};
use provisioner::image::{Image, Recipe};
use provisioner::plan::Plan;
use provisioner::progress::Event;
use provisioner::steps;
use provisioner::steps::cluster::Cluster;
use provisioner::steps::site_image::{self, SiteImage, SiteImageStep, SiteSource};
use rand::RngCore;

fn fast() -> Profile {
    Profile::fast().with_latency(Duration::from_millis(1), Duration::from_millis(5))
}

async fn front(emu: &aws::AwsEmulator, profile: Profile) -> Front {
    Front::start(emu.endpoint(), profile, 0)
        .await
        .expect("the front starts")
}

/// A stand-in for the site's static binary: 12 MiB of random (incompressible) bytes, so the
/// image's layer is pushed in two parts; removed when dropped.
struct SiteBinary {
    path: PathBuf,
    image: Image,
}

impl SiteBinary {
    fn new(test: &str) -> Self {
        let mut bytes = vec![0; 12 * 1024 * 1024];
        rand::rng().fill_bytes(&mut bytes);
        let dir = std::env::temp_dir().join(format!("kdeploy-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("web");
        std::fs::write(&path, &bytes).expect("the binary is written");
        let image = Recipe::site().build(&bytes).expect("the image builds");
        Self { path, image }
    }

    /// The mutating ECR calls of a first push: CreateRepository (tags included), per blob
    /// InitiateLayerUpload + its parts (of the size moto advises, 10 MiB) + CompleteLayerUpload,
    /// PutImage.
    fn push_calls(&self) -> usize {
        let advised = Some(10 * 1024 * 1024);
        let blobs: usize = self
            .image
            .blobs()
            .map(|b| 2 + ecr::part_ranges(b.size(), advised).len())
            .sum();
        1 + blobs + 1
    }
}

impl Drop for SiteBinary {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The AWS side plus the site's image: what `provisioner up --site-binary` does in AWS.
fn with_image(binary: &Path) -> Plan {
    steps::infrastructure().with(SiteImageStep {
        source: SiteSource::Binary {
            path: binary.to_owned(),
            layout: None,
        },
    })
}

async fn up_all(front: &Front, name: &str, binary: &Path) -> common::Run {
    let run = run(front, config(name)).await;
    with_image(binary)
        .up(&run.cx)
        .await
        .unwrap_or_else(|e| panic!("up of {name} failed: {e}"));
    run
}

async fn down_all(front: &Front, name: &str, binary: &Path) {
    let run = run(front, config(name)).await;
    with_image(binary)
        .down(&run.cx)
        .await
        .unwrap_or_else(|e| panic!("down of {name} failed: {e}"));
}

/// The stack's ECR repositories and their images (`digest tags`), read with plain ECR calls
/// straight from the emulator, not through the provisioner's inventory or the front.
async fn ecr_images(emu: &impl Endpoint, name: &str) -> Vec<(String, Vec<String>)> {
    let observer = run(emu, config(name)).await;
    let ecr = &observer.cx.aws.clients.ecr;
    let repositories = ecr
        .describe_repositories()
        .send()
        .await
        .expect("repositories");
    let mut found = Vec::new();
    for repository in repositories.repositories() {
        let repo = repository.repository_name().unwrap_or_default();
        if !repo.starts_with(&format!("{name}/")) {
            continue;
        }
        let images = ecr
            .describe_images()
            .repository_name(repo)
            .send()
            .await
            .expect("images");
        let listed: Vec<String> = images
            .image_details()
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d.image_digest().unwrap_or_default(),
                    d.image_tags().join(",")
                )
            })
            .collect();
        found.push((repo.to_owned(), listed));
    }
    found
}

/// The image is in the stack's repository exactly once, under the version tag, and `up` handed
/// on its digest-pinned reference.
async fn assert_pushed_once(emu: &impl Endpoint, run: &common::Run, binary: &SiteBinary) {
    let name = &run.cx.stack.name;
    let digest = binary.image.manifest_digest.as_str();
    assert_eq!(
        ecr_images(emu, name).await,
        vec![(
            site_repository(&run.cx.stack),
            vec![format!("{digest} {}", site_image::TAG)]
        )],
        "{name}"
    );
    let handed = run
        .cx
        .outputs
        .get::<SiteImage>()
        .expect("site image output");
    assert!(
        handed.reference.ends_with(&format!("/{name}/web@{digest}")),
        "{}",
        handed.reference
    );
}

fn waited(events: &[Event], step: &str, text: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::Waiting(s, status) if *s == step && status.contains(text)))
}

#[tokio::test]
async fn up_waits_through_every_state_aws_goes_through() {
    let emu = emulator().await;
    // The window is wall time, as IAM's is; 20 s is long enough that CreateCluster (a few calls
    // after CreateRole) meets it even on a loaded machine (5 s was not, once, under four builds).
    let mut profile = fast();
    profile.iam_propagation = Duration::from_secs(20);
    let front = front(&emu, profile).await;
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

    // With the site's image (whose build would let IAM propagate before CreateCluster above):
    // only the push changes something, and a re-run nothing at all.
    let binary = SiteBinary::new("slow");
    let with_image = up_all(&front, "slow", &binary.path).await;
    assert_pushed_once(&emu, &with_image, &binary).await;
    let counts = with_image.calls.counts();
    assert!(
        counts
            .mutating_operations()
            .iter()
            .all(|op| op.starts_with("ECR:")),
        "{:?}",
        counts.mutating_operations()
    );
    let ecr_changes = front.stats().mutating_by_service.get("ecr").copied();
    assert_eq!(
        ecr_changes,
        Some(binary.push_calls()),
        "{:?}",
        front.stats()
    );
    assert_eq!(counts.mutating, binary.push_calls(), "{counts:?}");

    let again = up_all(&front, "slow", &binary.path).await;
    assert_eq!(
        again.calls.counts().mutating,
        0,
        "{:?}",
        again.calls.counts().mutating_operations()
    );
    assert_eq!(
        front.stats().mutating_by_service.get("ecr").copied(),
        ecr_changes
    );
    down_all(&front, "slow", &binary.path).await;
    assert_eq!(left(&emu, "slow").await, Vec::<String>::new());
    assert_nothing_left(&emu, "slow", &format!("down (front seed {})", front.seed())).await;
    assert_eq!(ecr_images(&emu, "slow").await, Vec::new());
}

/// How many of the first `rolls` draws of the front's seeded generator are below the throttle
/// rate and how many between it and throttle + server error rate: the faults the seed implies
/// (the front's rule, `Front::seed`, drawn here independently of the front).
fn implied_faults(seed: u64, rolls: usize, throttle: f64, server: f64) -> (usize, usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut throttled, mut failed) = (0, 0);
    for _ in 0..rolls {
        let roll: f64 = rng.random();
        if roll < throttle {
            throttled += 1;
        } else if roll < throttle + server {
            failed += 1;
        }
    }
    (throttled, failed)
}

#[tokio::test]
async fn throttling_and_server_errors_do_not_stop_up_or_down() {
    let (throttle, server) = (0.10, 0.02);
    let emu = emulator().await;
    let front = front(&emu, fast().with_faults(throttle, server)).await;
    let seed = front.seed();
    let binary = SiteBinary::new("noisy");
    // Besides the random faults, certainly some on the push (ECR's ThrottlingException).
    let planned = ["CreateRepository", "UploadLayerPart", "PutImage"];
    for operation in planned {
        front.throttle(operation, 2);
    }
    let run = up_all(&front, "noisy", &binary.path).await;
    let during_up = front.stats();
    assert_pushed_once(&emu, &run, &binary).await;

    // Every fault met during `up` was retried: the SDK made an attempt beyond each call's first
    // for each one (the retried call then succeeded, since `up` did).
    let faults = during_up.rolled_throttles + during_up.rolled_server_errors + 2 * planned.len();
    let counts = run.calls.counts();
    assert!(
        counts.attempts >= counts.total + faults,
        "seed {seed}: {faults} faults injected during up, yet only {} attempts for {} calls",
        counts.attempts,
        counts.total
    );

    down_all(&front, "noisy", &binary.path).await;
    assert_eq!(
        left(&emu, "noisy").await,
        Vec::<String>::new(),
        "seed {seed}"
    );
    assert_eq!(ecr_images(&emu, "noisy").await, Vec::new(), "seed {seed}");
    assert_nothing_left(&emu, "noisy", &format!("down (front seed {seed})")).await;
    let stats = front.stats();
    for operation in [
        "ecr:CreateRepository",
        "ecr:UploadLayerPart",
        "ecr:PutImage",
    ] {
        assert!(
            stats.refused.get(operation).copied().unwrap_or(0) >= 2,
            "seed {seed}: {operation} throttled: {:?}",
            stats.refused
        );
    }
    // The random faults are those the seed implies for the number of calls that rolled.
    let (throttled, failed) = implied_faults(seed, stats.rolls, throttle, server);
    assert_eq!(
        (stats.rolled_throttles, stats.rolled_server_errors),
        (throttled, failed),
        "seed {seed}: faults of {} rolls",
        stats.rolls
    );
    // Hundreds of calls at a 10 % throttle rate: any seed implies throttling (no throttle in
    // 200 rolls is a chance of 1 in 10^9); whether it implies a 5xx too (2 %) is checked above.
    assert!(
        stats.rolls >= 200 && throttled > 0,
        "seed {seed} implies {throttled} throttles and {failed} server errors in {} rolls",
        stats.rolls
    );
    let injected = |codes: &[&str]| -> usize {
        codes
            .iter()
            .map(|c| stats.injected.get(*c).copied().unwrap_or(0))
            .sum()
    };
    assert_eq!(
        injected(&["Throttling", "ThrottlingException", "RequestLimitExceeded"]),
        throttled + 2 * planned.len(),
        "seed {seed}: {:?}",
        stats.injected
    );
    assert_eq!(
        injected(&[
            "InternalError",
            "ServiceUnavailable",
            "ServerException",
            "InternalServerError",
        ]),
        failed,
        "seed {seed}: {:?}",
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
    assert_nothing_left(
        &emu,
        "linger",
        &format!("down (front seed {})", front.seed()),
    )
    .await;
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

/// Runs `provisioner up --site-binary` until the front's kill switch fires at mutating call `n`
/// (of `service` only, when given), then kills the process for real. Fails when the process
/// ends first: the kill point was never reached.
async fn killed_binary(front: &Front, name: &str, binary: &Path, service: Option<&str>, n: usize) {
    match service {
        Some(service) => front.kill_after_mutating_in(service, n),
        None => front.kill_after_mutating(n),
    }
    let binary = binary.to_str().expect("a UTF-8 temp path");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["--endpoint", &front.endpoint(), "--name", name])
        .args(["--site-binary", binary, "up"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("provisioner starts");
    tokio::select! {
        _ = front.killed() => {}
        status = child.wait() => panic!("{name}: up ended ({status:?}) before mutating call {n} of {service:?}"),
    }
    assert!(front.has_killed(), "{name}: the kill switch fired");
    child.kill().await.expect("kill the provisioner");
    front.revive();
}

/// Kills `up` at mutating call `n` (of `service`), then checks that the next `up` converges
/// (the stack complete, the image in ECR once) and `down` leaves nothing, ECR included.
async fn killed_then_converged(emu: &aws::AwsEmulator, service: Option<&str>, n: usize) {
    let name = format!("kill-{}-{n}", service.unwrap_or("at"));
    let binary = SiteBinary::new(&name);
    let front = front(emu, fast()).await;
    killed_binary(&front, &name, &binary.path, service, n).await;
    let resumed = up_all(&front, &name, &binary.path).await;
    assert_eq!(census(&resumed).await, Census::COMPLETE, "{name}");
    assert_pushed_once(emu, &resumed, &binary).await;
    down_all(&front, &name, &binary.path).await;
    assert_eq!(
        left(emu, &name).await,
        Vec::<String>::new(),
        "{name}: down after a kill"
    );
    assert_eq!(
        ecr_images(emu, &name).await,
        Vec::new(),
        "{name}: ECR after down"
    );
    assert_nothing_left(
        emu,
        &name,
        &format!("down after a kill (front seed {})", front.seed()),
    )
    .await;
}

#[tokio::test]
async fn a_process_killed_at_any_mutating_call_converges_on_the_next_run() {
    let emu = emulator().await;
    // A full up makes 31 mutating calls in the AWS side (33 with the IAM retries) and 9 in the
    // image's push, interleaved; 12 kill points over all steps.
    let points = [1, 3, 5, 8, 11, 14, 17, 20, 23, 26, 28, 30];
    for batch in points.chunks(4) {
        let runs = batch.iter().map(|&n| killed_then_converged(&emu, None, n));
        futures::future::join_all(runs).await;
    }
}

#[tokio::test]
async fn a_process_killed_at_any_mutating_call_of_the_image_push_converges_on_the_next_run() {
    let emu = emulator().await;
    // CreateRepository, 2 × (InitiateLayerUpload, parts, CompleteLayerUpload), PutImage: every
    // one of them, counted over ECR's calls alone (the push runs alongside the AWS side).
    let calls = SiteBinary::new("kill-count").push_calls();
    assert_eq!(calls, 9, "config 1 part, layer 2 parts");
    let points: Vec<usize> = (1..=calls).collect();
    for batch in points.chunks(5) {
        let runs = batch
            .iter()
            .map(|&n| killed_then_converged(&emu, Some("ecr"), n));
        futures::future::join_all(runs).await;
    }
}

/// ECR's push rules that moto lacks, enforced by the front, as an SDK client meets them (each
/// names its page of the Amazon ECR API reference); a correct push passes through them.
#[tokio::test]
async fn the_front_holds_pushes_to_ecrs_rules() {
    let emu = emulator().await;
    let front = front(&emu, fast()).await;
    let binary = SiteBinary::new("ecr-rules");
    let probe = run(&front, config("ecrrules")).await;
    let ecr = &probe.cx.aws.ecr();
    let (repository, _) = ecr
        .ensure_stack_repository(&probe.cx.stack)
        .await
        .expect("repository");
    let name = repository.name.as_str();
    let client = &probe.cx.aws.clients.ecr;
    let code = |e: &dyn aws_sdk_ecr::error::ProvideErrorMetadata| e.code().map(str::to_owned);
    let mib = 1024 * 1024;

    // PutImage, LayersNotFoundException: the manifest's blobs were never uploaded.
    let manifest = binary.image.manifest_text().expect("manifest");
    let err = client
        .put_image()
        .repository_name(name)
        .image_manifest(manifest)
        .image_manifest_media_type(provisioner::image::MANIFEST_MEDIA_TYPE)
        .image_digest(binary.image.manifest_digest.as_str())
        .image_tag("early")
        .send()
        .await
        .expect_err("blobs missing");
    assert_eq!(code(&err).as_deref(), Some("LayersNotFoundException"));

    // CompleteLayerUpload, LayerPartTooSmallException: a first part under 5 MiB.
    let upload = |parts: Vec<Vec<u8>>| async move {
        let (id, _) = ecr.initiate_upload(name).await.expect("initiate");
        let mut first = 0;
        let mut all = Vec::new();
        for part in parts {
            let last = first + part.len() as u64 - 1;
            ecr.upload_part(name, &id, first..=last, &part)
                .await
                .expect("part");
            first = last + 1;
            all.extend(part);
        }
        (id, all)
    };
    let (id, bytes) = upload(vec![vec![1; mib], vec![2; mib]]).await;
    let digest = provisioner::image::Digest::of(&bytes);
    let err = ecr
        .complete_upload(name, &id, &digest)
        .await
        .expect_err("small part");
    assert_eq!(err.code(), "LayerPartTooSmallException", "{err}");

    // CompleteLayerUpload, InvalidLayerException: another digest than the bytes'.
    let (id, _) = upload(vec![vec![3; 5 * mib], vec![4; 10]]).await;
    let err = ecr
        .complete_upload(name, &id, &digest)
        .await
        .expect_err("wrong digest");
    assert_eq!(err.code(), "InvalidLayerException", "{err}");

    // UploadLayerPart, InvalidLayerPartException: a range that is not the part's length.
    let (id, _) = ecr.initiate_upload(name).await.expect("initiate");
    let err = client
        .upload_layer_part()
        .repository_name(name)
        .upload_id(id)
        .part_first_byte(0)
        .part_last_byte(99)
        .layer_part_blob(SdkBlob::new(vec![0; 10]))
        .send()
        .await
        .expect_err("range");
    assert_eq!(code(&err).as_deref(), Some("InvalidLayerPartException"));

    // A correct push passes; PutImage, ImageDigestDoesNotMatchException, for another digest.
    ecr.push(&repository, &binary.image, "0.1.0")
        .await
        .expect("a correct push");
    let err = client
        .put_image()
        .repository_name(name)
        .image_manifest(binary.image.manifest_text().expect("manifest"))
        .image_manifest_media_type(provisioner::image::MANIFEST_MEDIA_TYPE)
        .image_digest(digest.as_str())
        .image_tag("other")
        .send()
        .await
        .expect_err("digest");
    assert_eq!(
        code(&err).as_deref(),
        Some("ImageDigestDoesNotMatchException")
    );
    let refused = front.stats().refused;
    assert_eq!(refused.get("ecr:PutImage"), Some(&2), "{refused:?}");
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

/// "Eventual consistency in the Amazon EC2 API"
/// (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>): each new VPC,
/// subnet, gateway, route table and security group answers `*.NotFound` to the calls naming it for
/// a while; `up` waits that out for what it created and converges, and `down` leaves nothing.
#[tokio::test]
async fn eventual_consistency_in_the_ec2_api_up_waits_for_new_ids_and_down_leaves_nothing() {
    let emu = emulator().await;
    let profile = fast().with_ec2_consistency_window(Duration::from_secs(2));
    let front = front(&emu, profile).await;
    let run = up(&front, "fresh").await;
    assert_eq!(census(&run).await, Census::COMPLETE);
    let stats = front.stats();
    // The route table's calls wait for the subnets and the gateway, by when it may be visible.
    for code in [
        "InvalidVpcID.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidInternetGatewayID.NotFound",
        "InvalidGroup.NotFound",
    ] {
        assert!(
            stats.injected.get(code).copied().unwrap_or(0) >= 1,
            "{code} was answered: {:?}",
            stats.injected
        );
    }
    let events = run.progress.events();
    for step in ["network", "security-groups"] {
        assert!(
            waited(&events, step, "not visible to EC2 yet"),
            "{step}: {events:?}"
        );
    }
    // A second run finds everything by tag and changes nothing.
    let again = up(&front, "fresh").await;
    assert_eq!(
        again.calls.counts().mutating,
        0,
        "{:?}",
        again.calls.counts()
    );
    down(&front, "fresh").await;
    assert_eq!(left(&emu, "fresh").await, Vec::<String>::new());
    assert_nothing_left(
        &emu,
        "fresh",
        &format!("down (front seed {})", front.seed()),
    )
    .await;
}
