//! The deploy site's image: built in memory from the site's static binary (see [`crate::image`]),
//! pushed to the stack's ECR repository `<stack>/web` under the version tag, and handed to the
//! platform step as a digest-pinned reference. It needs only AWS credentials, so it runs while
//! EKS is being created. `down` deletes the repository with its images once the cluster, whose
//! nodes pull from it, is gone, whatever image `up` was given.

use std::path::PathBuf;
use std::sync::Arc;

use super::cluster;
use crate::aws::ecr::{EcrError, RepositoryRemoval, site_repository};
use crate::image::{Image, ImageError, Recipe, layout};
use crate::plan::{Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;

pub const ID: StepId = StepId::new("site-image");

/// The tag the image is pushed under: the version of this build of kdeploy.
pub const TAG: &str = env!("CARGO_PKG_VERSION");

/// What the site-image step produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteImage {
    /// `repositoryUri@sha256:…` for the site's Deployment, or the image given as it is.
    pub reference: String,
}

impl Output for SiteImage {
    const STEP: StepId = ID;
}

/// Where the deploy site's image comes from (the CLI's `--site-binary` and `--site-image`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SiteSource {
    /// An image built and published elsewhere: used as it is, nothing built or pushed.
    Image(String),
    /// The site's statically linked `x86_64-unknown-linux-musl` binary: built into an image and
    /// pushed to the stack's repository.
    Binary {
        path: PathBuf,
        /// An OCI image layout to write the image into as well, under `repositoryUri:TAG`, so
        /// the local cluster simulator can run the pushed image; `None` on a real account.
        layout: Option<PathBuf>,
    },
    /// Neither: enough for `down`, `plan` and `status`; `up` stops at this step.
    #[default]
    Unset,
}

pub struct SiteImageStep {
    pub source: SiteSource,
}

const KIND: &str = "ECR repository";
/// `down`'s word on a repository of the stack's name that the stack does not own.
const NOT_OWNED: &str =
    "ECR repository (one of that name is not tagged for this stack: left alone)";
/// `status`'s.
const NOT_OWNED_STATE: &str = "exists, NOT tagged for this stack: never adopted or deleted";

impl Step for SiteImageStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "deploy site image in ECR"
    }

    fn needs(&self) -> &[StepId] {
        &[]
    }

    fn removed_after(&self) -> &[StepId] {
        &[cluster::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let (binary, layout) = match &self.source {
                SiteSource::Binary { path, layout } => (path, layout),
                SiteSource::Image(reference) => {
                    s.record(Action::Kept, "site image (given, not built)", reference);
                    s.outputs.put(SiteImage {
                        reference: reference.clone(),
                    });
                    return Ok(());
                }
                SiteSource::Unset => {
                    return Err(StepError::conflict(
                        "deploy site image",
                        "neither the site's binary nor an image was given",
                    ));
                }
            };
            let name = site_repository(&s.stack);
            let resource = format!("{KIND} {name}");
            let (image, (repository, created)) = tokio::try_join!(build(s, binary), async {
                s.aws
                    .ecr()
                    .ensure_stack_repository(&s.stack)
                    .await
                    .map_err(|e| ecr_error(&resource, e))
            })?;
            s.kept_or_created(created, KIND, &repository.name);
            if let Some(dir) = layout {
                let (dir, image) = (dir.clone(), Arc::clone(&image));
                let name = format!("{}:{TAG}", repository.uri);
                let what = format!("image layout {}", dir.display());
                blocking(&what, move || layout::write(&dir, &name, &image)).await?;
            }
            s.waiting("pushing the image");
            let pushed = s
                .aws
                .ecr()
                .push(&repository, &image, TAG)
                .await
                .map_err(|e| ecr_error(&resource, e))?;
            s.kept_or_created(pushed.put, "image", &pushed.reference);
            s.outputs.put(SiteImage {
                reference: pushed.reference,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = site_repository(&s.stack);
            let removal = s
                .aws
                .ecr()
                .delete_stack_repository(&s.stack)
                .await
                .map_err(|e| ecr_error(&format!("{KIND} {name}"), e))?;
            match removal {
                RepositoryRemoval::Deleted => s.record(Action::Deleted, KIND, name),
                RepositoryRemoval::Absent => s.record(Action::Absent, KIND, name),
                RepositoryRemoval::NotOwned => {
                    tracing::warn!("{KIND} {name} is not tagged for this stack; left alone");
                    s.record(Action::Absent, NOT_OWNED, name);
                }
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let ecr = s.aws.ecr();
            let name = site_repository(&s.stack);
            let resource = format!("{KIND} {name}");
            let repository = match ecr.stack_repository(&s.stack).await {
                Ok(found) => found,
                // Someone else's repository of that name: not the stack's, not left over by it.
                Err(EcrError::NotOwned { .. }) => {
                    return Ok(vec![Resource {
                        state: NOT_OWNED_STATE.to_owned(),
                        ..Resource::missing(KIND, name)
                    }]);
                }
                Err(e) => return Err(ecr_error(&resource, e)),
            };
            let Some(repository) = repository else {
                return Ok(vec![Resource::missing(KIND, name)]);
            };
            let digest = ecr
                .tagged_digest(&repository.name, TAG)
                .await
                .map_err(|e| ecr_error(&resource, e.into()))?;
            let state = match digest {
                Some(digest) => format!("{TAG} = {digest}"),
                None => format!("no image tagged {TAG}"),
            };
            Ok(vec![Resource::found(KIND, name, repository.arn, state)])
        })
    }
}

/// Reads the binary and builds its image off the async runtime (gzip of tens of MiB).
async fn build(s: &Scope<'_>, binary: &std::path::Path) -> Result<Arc<Image>, StepError> {
    let what = format!("site binary {}", binary.display());
    s.waiting("building the image");
    let binary = tokio::fs::read(binary).await.map_err(|e| {
        StepError::conflict(
            &what,
            format!("cannot be read ({e}); build the site's static binary first"),
        )
    })?;
    blocking(&what, move || Recipe::site().build(&binary).map(Arc::new)).await
}

/// Runs blocking image work (compression, file writes) on the blocking pool.
async fn blocking<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, StepError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(StepError::conflict(what, e.to_string())),
        Err(e) => Err(StepError::conflict(what, format!("stopped: {e}"))),
    }
}

fn ecr_error(resource: &str, e: EcrError) -> StepError {
    match e {
        EcrError::Aws(source) => StepError::Aws {
            resource: resource.to_owned(),
            source,
        },
        EcrError::NotOwned { .. } => StepError::NotOwned {
            resource: resource.to_owned(),
        },
        other => StepError::conflict(resource, other.to_string()),
    }
}
