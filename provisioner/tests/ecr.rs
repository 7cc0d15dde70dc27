//! The site image's repository and push against the local AWS emulator (moto computes layer
//! digests from the uploaded bytes), checked with plain ECR calls rather than the provisioner's.

mod common;

use aws_sdk_ecr::types::{ImageIdentifier, LayerAvailability};
use common::{config, emulator, run};
use provisioner::aws::ecr::{self, EcrError, RepositoryRemoval, site_repository};
use provisioner::image::{Image, MANIFEST_MEDIA_TYPE, Recipe};
use provisioner::stack::STACK_TAG;
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
