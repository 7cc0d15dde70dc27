//! The site image's repository and push against the local AWS emulator (moto computes layer
//! digests from the uploaded bytes), checked with plain ECR calls rather than the provisioner's.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::PathBuf;

use aws_sdk_ecr::types::{ImageIdentifier, LayerAvailability};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use common::{Run, config, emulator, run};
use provisioner::aws::ecr::{self, EcrError, RepositoryRemoval, site_repository};
use provisioner::image::{Digest, Image, MANIFEST_MEDIA_TYPE, Recipe, layout};
use provisioner::plan::{Plan, StepError};
use provisioner::progress::{Action, Event, Outcome};
use provisioner::remaining;
use provisioner::stack::STACK_TAG;
use provisioner::steps::site_image::{self, SiteImage, SiteImageStep, SiteSource};
use provisioner::steps::{self, PlatformSettings, cluster};
use rand::RngCore;

const MIB: usize = 1024 * 1024;
/// The part size moto's InitiateLayerUpload advises.
const MOTO_PART: i64 = 10 * MIB as i64;
const TAG: &str = "0.1.0";

/// An image of `len` random (incompressible) bytes, so the layer is as large as the "binary".
#[allow(clippy::expect_used)]
fn random_image(len: usize) -> Image {
    let mut binary = vec![0; len];
    rand::rng().fill_bytes(&mut binary);
    Recipe::site().build(&binary).expect("the image builds")
}

#[tokio::test]
async fn push_uploads_in_parts_once_and_a_second_push_changes_nothing() {
    let emu = emulator().await;
    let image = random_image(11 * MIB);
    let layer = &image.layers[0];
    assert!(layer.size() > MOTO_PART as u64, "the layer needs two parts");

    let first = run(&emu, config("ecrpush")).await;
    let (repository, created) = first
        .cx
        .aws
        .ecr()
        .ensure_stack_repository(&first.cx.stack)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(repository.name, "ecrpush/web");
    let pushed = first
        .cx
        .aws
        .ecr()
        .push(&repository, &image, TAG)
        .await
        .unwrap();
    assert_eq!(
        pushed.reference,
        format!("{}@{}", repository.uri, image.manifest_digest)
    );
    assert!(pushed.put);
    assert_eq!(
        pushed.uploaded,
        vec![image.config.digest.clone(), layer.digest.clone()]
    );
    let counts = first.calls.counts();
    let calls = |op: &str| counts.by_operation.get(op).copied().unwrap_or(0);
    let layer_parts = ecr::part_ranges(layer.size(), Some(MOTO_PART)).len();
    assert_eq!(layer_parts, 2);
    assert_eq!(calls("ECR:InitiateLayerUpload"), 2, "{counts:?}");
    assert_eq!(calls("ECR:UploadLayerPart"), 1 + layer_parts, "{counts:?}");
    assert_eq!(calls("ECR:CompleteLayerUpload"), 2, "{counts:?}");
    assert_eq!(calls("ECR:PutImage"), 1, "{counts:?}");

    // What ECR holds, through plain SDK calls.
    let client = &first.cx.aws.clients.ecr;
    let repositories = client
        .describe_repositories()
        .repository_names("ecrpush/web")
        .send()
        .await
        .unwrap();
    let described = &repositories.repositories()[0];
    assert_eq!(described.repository_uri(), Some(repository.uri.as_str()));
    let tags = client
        .list_tags_for_resource()
        .resource_arn(described.repository_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == STACK_TAG && t.value() == "ecrpush"),
        "{tags:?}"
    );
    let details = client
        .describe_images()
        .repository_name("ecrpush/web")
        .image_ids(
            ImageIdentifier::builder()
                .image_digest(image.manifest_digest.as_str())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(details.image_details().len(), 1);
    let detail = &details.image_details()[0];
    assert_eq!(detail.image_digest(), Some(image.manifest_digest.as_str()));
    assert_eq!(detail.image_tags(), [TAG.to_owned()]);
    let got = client
        .batch_get_image()
        .repository_name("ecrpush/web")
        .image_ids(ImageIdentifier::builder().image_tag(TAG).build())
        .send()
        .await
        .unwrap();
    let got = &got.images()[0];
    assert_eq!(
        got.image_manifest().map(str::as_bytes),
        Some(image.manifest.as_slice())
    );
    assert_eq!(got.image_manifest_media_type(), Some(MANIFEST_MEDIA_TYPE));
    assert_eq!(
        got.image_id().and_then(|id| id.image_digest()),
        Some(image.manifest_digest.as_str())
    );
    let blobs = client
        .batch_check_layer_availability()
        .repository_name("ecrpush/web")
        .layer_digests(image.config.digest.as_str())
        .layer_digests(layer.digest.as_str())
        .send()
        .await
        .unwrap();
    assert!(blobs.failures().is_empty(), "{blobs:?}");
    for available in blobs.layers() {
        assert_eq!(
            available.layer_availability(),
            Some(&LayerAvailability::Available)
        );
    }
    let sizes: Vec<Option<i64>> = blobs.layers().iter().map(|l| l.layer_size()).collect();
    assert_eq!(
        sizes,
        vec![Some(image.config.size() as i64), Some(layer.size() as i64)]
    );

    // Again, from a new process: nothing changes.
    let again = run(&emu, config("ecrpush")).await;
    let ecr = again.cx.aws.ecr();
    let (same, created) = ecr.ensure_stack_repository(&again.cx.stack).await.unwrap();
    assert!(!created);
    assert_eq!(same, repository);
    let repeated = ecr.push(&same, &image, TAG).await.unwrap();
    assert_eq!(repeated.reference, pushed.reference);
    assert!(!repeated.put && repeated.uploaded.is_empty());
    let counts = again.calls.counts();
    assert_eq!(
        counts.mutating,
        0,
        "a second push made changes: {:?}",
        counts.mutating_operations()
    );

    // Under another tag the blobs are found and only the manifest is put.
    let retag = run(&emu, config("ecrpush")).await;
    let retagged = retag
        .cx
        .aws
        .ecr()
        .push(&same, &image, "next")
        .await
        .unwrap();
    assert!(retagged.put && retagged.uploaded.is_empty());
    let counts = retag.calls.counts();
    assert_eq!(counts.by_operation.get("ECR:InitiateLayerUpload"), None);
    assert_eq!(counts.by_operation.get("ECR:PutImage"), Some(&1));
}

#[tokio::test]
async fn delete_removes_the_stacks_repository_and_leaves_an_untagged_one_alone() {
    let emu = emulator().await;
    let image = random_image(64 * 1024);

    // The stack's own repository, with an image: deleted with it.
    let mine = run(&emu, config("ecrmine")).await;
    let ecr = mine.cx.aws.ecr();
    let (repository, _) = ecr.ensure_stack_repository(&mine.cx.stack).await.unwrap();
    ecr.push(&repository, &image, TAG).await.unwrap();
    assert_eq!(
        ecr.delete_stack_repository(&mine.cx.stack).await.unwrap(),
        RepositoryRemoval::Deleted
    );
    let client = &mine.cx.aws.clients.ecr;
    let gone = client
        .describe_repositories()
        .repository_names("ecrmine/web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        gone.as_service_error()
            .and_then(|e| { aws_smithy_types::error::metadata::ProvideErrorMetadata::code(e) }),
        Some("RepositoryNotFoundException")
    );
    assert_eq!(
        ecr.delete_stack_repository(&mine.cx.stack).await.unwrap(),
        RepositoryRemoval::Absent
    );

    // A repository of the same name that someone else made: never adopted, never deleted.
    let foreign = run(&emu, config("ecrforeign")).await;
    let name = site_repository(&foreign.cx.stack);
    let client = &foreign.cx.aws.clients.ecr;
    client
        .create_repository()
        .repository_name(&name)
        .send()
        .await
        .unwrap();
    let before = foreign.calls.counts().mutating;
    let ecr = foreign.cx.aws.ecr();
    let refused = ecr
        .ensure_stack_repository(&foreign.cx.stack)
        .await
        .unwrap_err();
    assert!(matches!(refused, EcrError::NotOwned { .. }), "{refused:?}");
    assert_eq!(
        ecr.delete_stack_repository(&foreign.cx.stack)
            .await
            .unwrap(),
        RepositoryRemoval::NotOwned
    );
    assert_eq!(
        foreign.calls.counts().mutating,
        before,
        "nothing was changed"
    );
    let still = client
        .describe_repositories()
        .repository_names(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(still.repositories().len(), 1);
}

/// A directory of its own for a test: the site's "binary" (random bytes) and an image layout.
struct Workdir(PathBuf);

impl Workdir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kdeploy-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// `len` random bytes: incompressible, so the layer needs several upload parts.
    fn binary(&self, len: usize) -> PathBuf {
        let mut bytes = vec![0; len];
        rand::rng().fill_bytes(&mut bytes);
        let path = self.0.join("web");
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `provisioner up --aws-only` does plus the site's image, as the full plan registers it
/// (the Kubernetes steps need a cluster API, which these tests do not have).
fn aws_and_image(source: &SiteSource) -> Plan {
    let full = steps::full(PlatformSettings {
        site: source.clone(),
        ..PlatformSettings::default()
    });
    let registered = full.steps().find(|s| s.id() == site_image::ID).unwrap();
    assert_eq!(registered.removed_after(), [cluster::ID]);
    steps::infrastructure().with(SiteImageStep {
        source: source.clone(),
    })
}

/// Calls that change something in ECR.
const ECR_CHANGES: [&str; 8] = [
    "ECR:CreateRepository",
    "ECR:TagResource",
    "ECR:InitiateLayerUpload",
    "ECR:UploadLayerPart",
    "ECR:CompleteLayerUpload",
    "ECR:PutImage",
    "ECR:DeleteRepository",
    "ECR:BatchDeleteImage",
];

fn calls(run: &Run, op: &str) -> usize {
    run.calls
        .counts()
        .by_operation
        .get(op)
        .copied()
        .unwrap_or(0)
}

fn ecr_changes(run: &Run) -> Vec<(&'static str, usize)> {
    ECR_CHANGES
        .iter()
        .map(|op| (*op, calls(run, op)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn at(events: &[Event], event: &Event) -> usize {
    events
        .iter()
        .position(|e| e == event)
        .unwrap_or_else(|| panic!("{event:?} not in {events:?}"))
}

/// The AWS error code of a DescribeRepositories for `name`, `None` when it exists.
async fn repository_error(run: &Run, name: &str) -> Option<String> {
    let described = run
        .cx
        .aws
        .clients
        .ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await;
    described.err().map(|e| {
        e.as_service_error()
            .and_then(|e| e.code())
            .unwrap_or("?")
            .to_owned()
    })
}

#[tokio::test]
async fn up_pushes_the_site_image_while_eks_is_created_and_down_removes_it_after_the_cluster() {
    let emu = emulator().await;
    let work = Workdir::new("siteimage");
    let source = SiteSource::Binary {
        path: work.binary(12 * 1024 * 1024),
        layout: Some(work.0.join("oci")),
    };
    let plan = aws_and_image(&source);

    let first = run(&emu, config("siteimg")).await;
    plan.up(&first.cx)
        .await
        .unwrap_or_else(|e| panic!("up failed: {e}"));
    let events = first.progress.events();
    assert!(
        at(&events, &Event::Started("site-image"))
            < at(&events, &Event::Finished("cluster", Outcome::Done)),
        "the image is pushed while EKS is being created: {events:?}"
    );
    // Config and two parts of the layer, at least.
    assert!(
        calls(&first, "ECR:UploadLayerPart") >= 3,
        "{:?}",
        first.calls.counts()
    );

    // What ECR has, through plain ECR calls: the reference handed to the platform step is the
    // repository's URI pinned by the digest of the manifest ECR holds under the version tag.
    let client = &first.cx.aws.clients.ecr;
    let repositories = client
        .describe_repositories()
        .repository_names("siteimg/web")
        .send()
        .await
        .unwrap();
    let uri = repositories.repositories()[0].repository_uri().unwrap();
    let got = client
        .batch_get_image()
        .repository_name("siteimg/web")
        .image_ids(
            ImageIdentifier::builder()
                .image_tag(site_image::TAG)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let manifest = got.images()[0].image_manifest().unwrap();
    let digest = Digest::of(manifest.as_bytes());
    let details = client
        .describe_images()
        .repository_name("siteimg/web")
        .send()
        .await
        .unwrap();
    let tagged: Vec<(Option<&str>, &[String])> = details
        .image_details()
        .iter()
        .map(|d| (d.image_digest(), d.image_tags()))
        .collect();
    assert_eq!(
        tagged,
        [(Some(digest.as_str()), &[site_image::TAG.to_owned()][..])]
    );
    let handed = first.cx.outputs.get::<SiteImage>().unwrap();
    assert_eq!(handed.reference, format!("{uri}@{digest}"));
    // The same image in the layout, for the local simulator, under `uri:version`.
    let written = layout::read(&work.0.join("oci"), &format!("{uri}:{}", site_image::TAG)).unwrap();
    assert_eq!(written.manifest_digest, digest);
    assert_eq!(written.manifest, manifest.as_bytes());

    // Again: everything is found, nothing in ECR changes.
    let again = run(&emu, config("siteimg")).await;
    plan.up(&again.cx).await.unwrap();
    assert_eq!(ecr_changes(&again), [], "{:?}", again.calls.counts());
    for read in [
        "ECR:DescribeRepositories",
        "ECR:ListTagsForResource",
        "ECR:DescribeImages",
    ] {
        assert!(
            calls(&again, read) >= 1,
            "{read}: {:?}",
            again.calls.counts()
        );
    }
    assert_eq!(
        again.cx.outputs.get::<SiteImage>().unwrap().reference,
        handed.reference
    );

    // Down: the repository and its image go, once the cluster is gone.
    let gone = run(&emu, config("siteimg")).await;
    plan.down(&gone.cx)
        .await
        .unwrap_or_else(|e| panic!("down failed: {e}"));
    let events = gone.progress.events();
    assert!(
        at(&events, &Event::Finished("cluster", Outcome::Done))
            < at(&events, &Event::Started("site-image")),
        "{events:?}"
    );
    assert!(
        gone.progress
            .changes()
            .iter()
            .any(|c| c.step == "site-image"
                && c.action == Action::Deleted
                && c.id == "siteimg/web")
    );
    assert_eq!(calls(&gone, "ECR:DeleteRepository"), 1);
    assert_eq!(
        repository_error(&gone, "siteimg/web").await.as_deref(),
        Some("RepositoryNotFoundException")
    );
    let left = remaining(&plan, &gone.cx).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    common::assert_nothing_left(&emu, "siteimg", "down with the site image").await;
}

#[tokio::test]
async fn a_given_image_is_used_as_it_is_and_a_foreign_repository_is_never_touched() {
    let emu = emulator().await;
    let given = "registry.example/kdeploy/web@sha256:0123";
    let plan = |source: SiteSource| {
        steps::full(PlatformSettings {
            site: source,
            ..PlatformSettings::default()
        })
        .through(site_image::ID)
        .unwrap()
    };

    // --site-image: no build, no repository, the platform gets the reference as given.
    let image = run(&emu, config("given")).await;
    plan(SiteSource::Image(given.to_owned()))
        .up(&image.cx)
        .await
        .unwrap();
    assert_eq!(
        image.cx.outputs.get::<SiteImage>().unwrap().reference,
        given
    );
    assert_eq!(ecr_changes(&image), []);
    assert_eq!(
        repository_error(&image, "given/web").await.as_deref(),
        Some("RepositoryNotFoundException")
    );

    // Someone else's repository under the stack's repository name.
    let foreign = run(&emu, config("foreign")).await;
    foreign
        .cx
        .aws
        .clients
        .ecr
        .create_repository()
        .repository_name("foreign/web")
        .send()
        .await
        .unwrap();
    let before = ecr_changes(&foreign);
    let work = Workdir::new("foreignimage");
    let binary = SiteSource::Binary {
        path: work.binary(1024),
        layout: None,
    };
    let err = plan(binary.clone()).up(&foreign.cx).await.unwrap_err();
    assert!(
        matches!(err.failed[0].1, StepError::NotOwned { .. }),
        "{err}"
    );
    // Status tells it apart from the stack's own, and it is not left over by the stack.
    let inspected = plan(SiteSource::Unset).inspect(&foreign.cx).await;
    let found = inspected[0].1.as_ref().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, None);
    assert!(
        found[0].state.contains("NOT tagged for this stack"),
        "{found:?}"
    );
    // Down, whatever the flags, says so and leaves it.
    plan(SiteSource::Unset).down(&foreign.cx).await.unwrap();
    let said = foreign.progress.changes();
    assert!(
        said.iter()
            .any(|c| c.step == "site-image" && c.kind.contains("left alone")),
        "{said:?}"
    );
    assert_eq!(ecr_changes(&foreign), before, "nothing changed in ECR");
    assert_eq!(repository_error(&foreign, "foreign/web").await, None);
    // In the whole account, only the foreign repository (counted by its name) is left.
    assert_eq!(
        common::observed(&emu, "foreign").await,
        ["ECR repository foreign/web"],
        "down left the foreign repository and nothing else"
    );
}
