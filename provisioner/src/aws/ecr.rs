//! ECR: the stack's repository for the site's image, owned by the stack's tag, and the push of an
//! [`Image`] through the registry's API (no Docker engine, no registry login): check which blobs
//! ECR has, upload the missing ones in parts, compare the digests ECR computes with ours, and put
//! the manifest under the version tag. Everything already present is skipped, so a re-run makes
//! no changing call.

use std::ops::RangeInclusive;

use aws_sdk_ecr::types::{ImageIdentifier, LayerAvailability, LayerFailureCode, Tag};

use super::{AwsError, NotFoundExt, SdkResultExt, Tags, required_str};
use crate::image::{Blob, Digest, Image, ImageError};
use crate::stack::Stack;

/// The ECR layer; see [`super::Aws::ecr`].
pub struct Ecr<'a>(pub(super) &'a aws_sdk_ecr::Client);

/// A repository as ECR describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub arn: String,
    /// `<account>.dkr.ecr.<region>.amazonaws.com/<name>`: what image references start with.
    pub uri: String,
}

/// The repository of the stack's deploy site: `<stack>/web`.
pub fn site_repository(stack: &Stack) -> String {
    format!("{}/web", stack.name)
}

/// The `kdeploy.io/part` of the repository's tags.
const PART: &str = "site-image";

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// `repositoryUri@sha256:…`, the digest-pinned reference a Deployment uses.
    pub reference: String,
    /// The blobs ECR did not have yet.
    pub uploaded: Vec<Digest>,
    /// Whether the manifest was put (`false`: the tag already named this digest).
    pub put: bool,
}

/// What `delete_stack_repository` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryRemoval {
    Deleted,
    Absent,
    /// A repository of that name without the stack's tag: someone else's, left alone.
    NotOwned,
}

/// Why the stack's repository or a push failed.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "ECR repository {name} exists but is not tagged as part of this stack; rename the stack or remove it by hand"
    )]
    NotOwned { name: String },
    #[error("ECR computed {ecr} for the blob pushed as {local}: the uploaded bytes differ")]
    DigestMismatch { local: Digest, ecr: String },
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// `UploadLayerPart`: parts of at least 5 MiB except the last, and at most 20 MiB.
pub const MIN_PART: u64 = 5 * MIB;
pub const MAX_PART: u64 = 20 * MIB;
/// The part size when ECR advises none.
pub const DEFAULT_PART: u64 = 10 * MIB;
const MIB: u64 = 1024 * 1024;

/// The part size to use, from the one InitiateLayerUpload advised, clamped to ECR's limits.
pub fn part_size(advised: Option<i64>) -> u64 {
    advised
        .and_then(|size| u64::try_from(size).ok())
        .filter(|size| *size > 0)
        .unwrap_or(DEFAULT_PART)
        .clamp(MIN_PART, MAX_PART)
}

/// The inclusive byte ranges (`partFirstByte..=partLastByte`) of a blob of `len` bytes.
pub fn part_ranges(len: u64, advised: Option<i64>) -> Vec<RangeInclusive<u64>> {
    let size = part_size(advised);
    (0..len.div_ceil(size))
        .map(|i| {
            let first = i * size;
            first..=(first + size).min(len) - 1
        })
        .collect()
}

const DESCRIBE_REPOSITORIES: &str = "ecr:DescribeRepositories";
const CREATE_REPOSITORY: &str = "ecr:CreateRepository";

fn repository(
    r: &aws_sdk_ecr::types::Repository,
    op: &'static str,
) -> Result<Repository, AwsError> {
    Ok(Repository {
        name: required_str(r.repository_name(), op, "repositoryName")?,
        arn: required_str(r.repository_arn(), op, "repositoryArn")?,
        uri: required_str(r.repository_uri(), op, "repositoryUri")?,
    })
}

impl Ecr<'_> {
    /// The repository of that name, if any (whoever owns it).
    pub async fn repository(&self, name: &str) -> Result<Option<Repository>, AwsError> {
        let Some(out) = self
            .0
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
            .op(DESCRIBE_REPOSITORIES)
            .found()?
        else {
            return Ok(None);
        };
        out.repositories()
            .iter()
            .find(|r| r.repository_name() == Some(name))
            .map(|r| repository(r, DESCRIBE_REPOSITORIES))
            .transpose()
    }

    pub async fn tags(&self, arn: &str) -> Result<Tags, AwsError> {
        let out = self
            .0
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .op("ecr:ListTagsForResource")?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    /// Creates a repository with its tags in the same call, so it is never untagged.
    pub async fn create_repository(
        &self,
        name: &str,
        tags: &[(String, String)],
    ) -> Result<Repository, AwsError> {
        let tags = tags
            .iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        let out = self
            .0
            .create_repository()
            .repository_name(name)
            .set_tags(Some(tags))
            .send()
            .await
            .op(CREATE_REPOSITORY)?;
        let created = out
            .repository()
            .ok_or_else(|| AwsError::missing(CREATE_REPOSITORY, "repository"))?;
        repository(created, CREATE_REPOSITORY)
    }

    /// Deletes a repository with all its images.
    pub async fn delete_repository(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .delete_repository()
            .repository_name(name)
            .force(true)
            .send()
            .await
            .op("ecr:DeleteRepository")
            .map(drop)
    }

    /// The digest of the image `tag` names, if the tag exists.
    pub async fn tagged_digest(&self, name: &str, tag: &str) -> Result<Option<String>, AwsError> {
        let Some(out) = self
            .0
            .describe_images()
            .repository_name(name)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await
            .op("ecr:DescribeImages")
            .found()?
        else {
            return Ok(None);
        };
        Ok(out
            .image_details()
            .iter()
            .find(|d| d.image_tags().iter().any(|t| t == tag))
            .and_then(|d| d.image_digest())
            .map(str::to_owned))
    }

    /// Which of `digests` the repository does not have.
    pub async fn missing_blobs(
        &self,
        name: &str,
        digests: &[&Digest],
    ) -> Result<Vec<Digest>, AwsError> {
        const OP: &str = "ecr:BatchCheckLayerAvailability";
        let out = self
            .0
            .batch_check_layer_availability()
            .repository_name(name)
            .set_layer_digests(Some(digests.iter().map(|d| d.to_string()).collect()))
            .send()
            .await
            .op(OP)?;
        if let Some(failure) = out
            .failures()
            .iter()
            .find(|f| f.failure_code() != Some(&LayerFailureCode::MissingLayerDigest))
        {
            return Err(AwsError::new(
                OP,
                failure.failure_code().map_or("", |c| c.as_str()),
                failure.failure_reason().unwrap_or(""),
            ));
        }
        let available: Vec<&str> = out
            .layers()
            .iter()
            .filter(|l| l.layer_availability() == Some(&LayerAvailability::Available))
            .filter_map(|l| l.layer_digest())
            .collect();
        Ok(digests
            .iter()
            .filter(|d| !available.contains(&d.as_str()))
            .map(|d| (*d).clone())
            .collect())
    }

    /// Starts an upload; answers its id and the part size ECR advises.
    pub async fn initiate_upload(&self, name: &str) -> Result<(String, Option<i64>), AwsError> {
        const OP: &str = "ecr:InitiateLayerUpload";
        let out = self
            .0
            .initiate_layer_upload()
            .repository_name(name)
            .send()
            .await
            .op(OP)?;
        Ok((
            required_str(out.upload_id(), OP, "uploadId")?,
            out.part_size(),
        ))
    }

    pub async fn upload_part(
        &self,
        name: &str,
        upload_id: &str,
        range: RangeInclusive<u64>,
        bytes: &[u8],
    ) -> Result<(), AwsError> {
        self.0
            .upload_layer_part()
            .repository_name(name)
            .upload_id(upload_id)
            .part_first_byte(*range.start() as i64)
            .part_last_byte(*range.end() as i64)
            .layer_part_blob(aws_smithy_types::Blob::new(bytes))
            .send()
            .await
            .op("ecr:UploadLayerPart")
            .map(drop)
    }

    /// Finishes an upload; answers the digest ECR computed from the bytes it received.
    pub async fn complete_upload(
        &self,
        name: &str,
        upload_id: &str,
        digest: &Digest,
    ) -> Result<String, AwsError> {
        const OP: &str = "ecr:CompleteLayerUpload";
        let out = self
            .0
            .complete_layer_upload()
            .repository_name(name)
            .upload_id(upload_id)
            .layer_digests(digest.as_str())
            .send()
            .await
            .op(OP)?;
        required_str(out.layer_digest(), OP, "layerDigest")
    }

    /// Puts a manifest under a tag; answers the image digest ECR recorded.
    pub async fn put_image(
        &self,
        name: &str,
        manifest: &str,
        media_type: &str,
        digest: &Digest,
        tag: &str,
    ) -> Result<Option<String>, AwsError> {
        let out = self
            .0
            .put_image()
            .repository_name(name)
            .image_manifest(manifest)
            .image_manifest_media_type(media_type)
            .image_digest(digest.as_str())
            .image_tag(tag)
            .send()
            .await
            .op("ecr:PutImage")?;
        Ok(out
            .image()
            .and_then(|i| i.image_id())
            .and_then(|id| id.image_digest())
            .map(str::to_owned))
    }

    /// The stack's repository: `None` when there is none, an error when one of that name is
    /// not the stack's (the stack never adopts what it did not tag).
    pub async fn stack_repository(&self, stack: &Stack) -> Result<Option<Repository>, EcrError> {
        let name = site_repository(stack);
        let Some(found) = self.repository(&name).await? else {
            return Ok(None);
        };
        if stack.owns(&self.tags(&found.arn).await?) {
            Ok(Some(found))
        } else {
            Err(EcrError::NotOwned { name })
        }
    }

    /// Finds the stack's repository or creates it, tagged; `true` when it was created.
    pub async fn ensure_stack_repository(
        &self,
        stack: &Stack,
    ) -> Result<(Repository, bool), EcrError> {
        if let Some(found) = self.stack_repository(stack).await? {
            return Ok((found, false));
        }
        match self
            .create_repository(&site_repository(stack), &stack.tags(PART))
            .await
        {
            Ok(created) => Ok((created, true)),
            // CreateRepository is not idempotent: when an earlier attempt reached ECR but its
            // answer did not reach us (the SDK retried after a 5xx or a timeout, or the previous
            // run was stopped mid-call), the retry answers RepositoryAlreadyExistsException.
            // Read it again: it is ours only if it carries the stack's tag.
            Err(e) if e.is("RepositoryAlreadyExistsException") => {
                match self.stack_repository(stack).await? {
                    Some(found) => Ok((found, false)),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the stack's repository and its images; one of that name without the stack's tag
    /// is left alone.
    pub async fn delete_stack_repository(
        &self,
        stack: &Stack,
    ) -> Result<RepositoryRemoval, EcrError> {
        match self.stack_repository(stack).await {
            Ok(None) => Ok(RepositoryRemoval::Absent),
            Err(EcrError::NotOwned { .. }) => Ok(RepositoryRemoval::NotOwned),
            Err(e) => Err(e),
            Ok(Some(repository)) => match self.delete_repository(&repository.name).await {
                Ok(()) => Ok(RepositoryRemoval::Deleted),
                Err(e) if e.is_not_found() => Ok(RepositoryRemoval::Absent),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Pushes `image` into `repository` under `tag`, uploading only what ECR lacks; answers the
    /// digest-pinned reference. When the tag already names the image, nothing changes.
    pub async fn push(
        &self,
        repository: &Repository,
        image: &Image,
        tag: &str,
    ) -> Result<Pushed, EcrError> {
        image.verify()?;
        let manifest = image.manifest_text()?;
        let name = repository.name.as_str();
        let reference = format!("{}@{}", repository.uri, image.manifest_digest);
        if self.tagged_digest(name, tag).await?.as_deref() == Some(image.manifest_digest.as_str()) {
            return Ok(Pushed {
                reference,
                uploaded: Vec::new(),
                put: false,
            });
        }
        let digests: Vec<&Digest> = image.blobs().map(|b| &b.digest).collect();
        let missing = self.missing_blobs(name, &digests).await?;
        // Every blob the manifest references is in ECR before PutImage names it.
        for blob in image.blobs().filter(|b| missing.contains(&b.digest)) {
            self.upload(name, blob).await?;
        }
        let recorded = match self
            .put_image(
                name,
                manifest,
                crate::image::MANIFEST_MEDIA_TYPE,
                &image.manifest_digest,
                tag,
            )
            .await
        {
            Ok(recorded) => recorded,
            // The same manifest under the same tag, put by a run that never heard the answer.
            Err(e) if e.is("ImageAlreadyExistsException") => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(recorded) = recorded
            && recorded != image.manifest_digest.as_str()
        {
            return Err(EcrError::DigestMismatch {
                local: image.manifest_digest.clone(),
                ecr: recorded,
            });
        }
        Ok(Pushed {
            reference,
            uploaded: missing,
            put: true,
        })
    }

    /// One blob: InitiateLayerUpload, its parts in order, CompleteLayerUpload.
    async fn upload(&self, name: &str, blob: &Blob) -> Result<(), EcrError> {
        let (upload_id, advised) = self.initiate_upload(name).await?;
        for range in part_ranges(blob.size(), advised) {
            let bytes = &blob.data[*range.start() as usize..=*range.end() as usize];
            self.upload_part(name, &upload_id, range, bytes).await?;
        }
        let computed = match self.complete_upload(name, &upload_id, &blob.digest).await {
            Ok(computed) => computed,
            // Another push completed the same blob first: ECR has it, under this digest.
            Err(e) if e.is("LayerAlreadyExistsException") => blob.digest.to_string(),
            Err(e) => return Err(e.into()),
        };
        if computed != blob.digest.as_str() {
            return Err(EcrError::DigestMismatch {
                local: blob.digest.clone(),
                ecr: computed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
