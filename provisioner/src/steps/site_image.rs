//! The deploy site's image: built in memory from the site's static binary (see [`crate::image`]),
//! pushed to the stack's ECR repository `<stack>/web` under the version tag, and handed to the
//! platform step as a digest-pinned reference. It needs only AWS credentials, so it runs while
//! EKS is being created. `down` deletes the repository with its images.

use std::path::PathBuf;
use std::sync::Arc;

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
    /// `repositoryUri@sha256:…`, for the site's Deployment.
    pub reference: String,
}

impl Output for SiteImage {
    const STEP: StepId = ID;
}

pub struct SiteImageStep {
    /// The site's statically linked `x86_64-unknown-linux-musl` binary.
    pub binary: PathBuf,
    /// An OCI image layout to write the image into as well, under `repositoryUri:TAG`, so the
    /// local cluster simulator can run the pushed image; `None` on a real account.
    pub layout: Option<PathBuf>,
}

const KIND: &str = "ECR repository";

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

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = site_repository(&s.stack);
            let resource = format!("{KIND} {name}");
            let (image, (repository, created)) = tokio::try_join!(self.build(s), async {
                s.aws
                    .ecr()
                    .ensure_stack_repository(&s.stack)
                    .await
                    .map_err(|e| ecr_error(&resource, e))
            })?;
            s.kept_or_created(created, KIND, &repository.name);
            if let Some(dir) = &self.layout {
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
            let action = match removal {
                RepositoryRemoval::Deleted => Action::Deleted,
                RepositoryRemoval::Absent => Action::Absent,
                RepositoryRemoval::NotOwned => {
                    tracing::warn!(
                        "{KIND} {name} is not tagged as part of this stack; leaving it alone"
                    );
                    Action::Absent
                }
            };
            s.record(action, KIND, name);
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
                // Someone else's repository of that name is not the stack's.
                Err(EcrError::NotOwned { .. }) => None,
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

impl SiteImageStep {
    /// Reads the binary and builds its image off the async runtime (gzip of tens of MiB).
    async fn build(&self, s: &Scope<'_>) -> Result<Arc<Image>, StepError> {
        let what = format!("site binary {}", self.binary.display());
        s.waiting("building the image");
        let binary = tokio::fs::read(&self.binary).await.map_err(|e| {
            StepError::conflict(
                &what,
                format!("cannot be read ({e}); build the site's static binary first"),
            )
        })?;
        blocking(&what, move || Recipe::site().build(&binary).map(Arc::new)).await
    }
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
