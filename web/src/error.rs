//! One error type for every user-facing outcome; the rendering middleware turns it into a page or JSON.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::repositories::store::{CreateStep, StoreError};

pub use crate::field_error::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} was not found")]
    NotFound(String),
    /// Something named by a field of the request does not exist (for this user).
    #[error("{}", .0.message)]
    NotFoundField(FieldError),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("sign in to continue")]
    Unauthenticated,
    #[error("this form has expired or did not come from this site: reload the page and try again")]
    Csrf,
    #[error("{}", .0.first().map_or("invalid input", |e| e.message.as_str()))]
    Invalid(Vec<FieldError>),
    #[error("{}", .0.message)]
    Conflict(FieldError),
    #[error("wrong username or password")]
    BadCredentials,
    #[error("too many failed sign-ins: wait {} minutes and try again", retry_after_secs.div_ceil(60))]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("{step} failed, so nothing was created: {}", KubeMessage(source))]
    Deploy {
        step: &'static str,
        source: kube::Error,
    },
    #[error("the cluster did not answer as expected: {}", KubeMessage(.0))]
    Kube(#[from] kube::Error),
    #[error("the cookie signing key is too short: it needs at least 64 bytes")]
    SessionKey,
    #[error("password hashing failed: {0}")]
    PasswordHash(argon2::password_hash::Error),
    #[error(
        "the console sends at most {max} requests a minute per user (window {window_secs} s): wait {retry_after_secs} s and try again"
    )]
    ConsoleRateLimited {
        max: u32,
        window_secs: u64,
        retry_after_secs: u64,
    },
    #[error(
        "your service did not answer within {secs} seconds, the console's time limit: check that it is Ready and responds on this path"
    )]
    ConsoleTimeout { secs: u64 },
    #[error(
        "your service could not be reached through the ingress: check that the repository is Ready"
    )]
    ConsoleUnreachable,
    #[error("the OpenAPI document could not be imported: {0}")]
    Import(#[from] crate::console::openapi::ImportError),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(
        "the {what} stored in {object} cannot be read ({reason}), so nothing was changed: ask the platform operator to repair or delete {object}"
    )]
    StoredDataUnreadable {
        what: &'static str,
        object: String,
        reason: String,
    },
    #[error("the body is over {limit_kib} KiB: send a smaller one")]
    BodyTooLarge { limit_kib: usize },
    #[error(
        "the cluster is not answering (no reply within {secs} s), so nothing was changed: try again in a minute"
    )]
    ClusterNotAnswering { secs: u64 },
    #[error(
        "the cluster stopped answering (no reply within {secs} s) before the repository was complete; what was created is being removed: try again in a minute"
    )]
    ClusterStoppedMidway { secs: u64 },
    #[error(
        "you have {max} live pages open, the most one user may: close some of them (this page still refreshes every few seconds)"
    )]
    TooManyStreams { max: usize },
    #[error("the site is starting and still reading the cluster's state: try again in a moment")]
    Starting,
    #[error("the cluster is not answering, so this cannot be shown now; it comes back by itself")]
    ClusterAway,
    /// Deliberately the same for an unknown repository, a webhook that is off and a wrong token.
    #[error(
        "this webhook URL is not valid (or no longer): copy the current one from the repository's page, or make a new one there"
    )]
    WebhookRefused,
    /// A request body that cannot be read as what the route takes.
    #[error("{}", .0.message)]
    Malformed(FieldError),
    #[error(
        "a repository is redeployed by its webhook at most {max} times a minute: wait {retry_after_secs} s and send it again"
    )]
    WebhookRateLimited { max: usize, retry_after_secs: u64 },
    /// One service of a compose file could not be created; the repositories the file had made
    /// before it were deleted again.
    #[error("the compose file was not deployed: creating {service} failed ({cause}); {}", removed_text(.removed))]
    GroupFailed {
        service: String,
        removed: Vec<String>,
        cause: Box<AppError>,
    },
    /// A compose service waits for its dependency to be healthy, which did not happen in time.
    #[error(
        "{dependent} waits until {dependency} is healthy (depends_on condition service_healthy), but {dependency} was not Ready within {secs} s: check that its image starts and listens on its port (deploy it alone to read its logs)"
    )]
    DependencyNotReady {
        dependency: String,
        dependent: String,
        secs: u64,
    },
}

/// What a failed compose deploy removed again, in a sentence.
fn removed_text(removed: &[String]) -> String {
    match removed {
        [] => "nothing had been created".to_string(),
        names => format!(
            "the repositories it had made ({}) were removed again, so nothing was left",
            names.join(", ")
        ),
    }
}

impl From<StoreError> for AppError {
    /// The repository store says what happened; here it becomes the sentence the developer reads.
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(name) => Self::NotFound(format!("Repository {name}")),
            StoreError::NameTaken(name) => Self::Conflict(FieldError::new(
                "name",
                format!(
                    "You already have a repository named {name}: choose another name, or open it from the list to change it."
                ),
            )),
            StoreError::Busy { name, .. } if name == crate::repositories::registries::SECRET => {
                Self::Conflict(FieldError::new(
                    "server",
                    "Your registry logins kept changing while this was saved (another request is saving them too): try again in a moment.",
                ))
            }
            StoreError::Busy { .. } => Self::Conflict(FieldError::new(
                "repository",
                "The repository is changing too often to apply this: try again in a moment.",
            )),
            StoreError::Create { step, source } => Self::Deploy {
                step: match step {
                    CreateStep::Deployment => "Creating the Deployment",
                    CreateStep::Service => "Creating the Service",
                    CreateStep::Ingress => "Creating the Ingress",
                    CreateStep::Secret => "Creating the Secret of the secret variables",
                },
                source,
            },
            // Names are validated before they reach the store; this is the builder's own check.
            StoreError::Unroutable(e) => {
                Self::Invalid(vec![FieldError::new("name", e.to_string())])
            }
            StoreError::Kube(source) => Self::Kube(source),
            StoreError::NotAnswering { secs } => Self::ClusterNotAnswering { secs },
            StoreError::StoppedMidway { secs } => Self::ClusterStoppedMidway { secs },
            StoreError::Starting => Self::Starting,
            StoreError::Invalid(errors) => Self::Invalid(errors),
            StoreError::NoSuchRevision { revision, existing } => {
                Self::NotFoundField(FieldError::new(
                    "revision",
                    if existing.is_empty() {
                        format!(
                            "Revision {revision} does not exist: this repository has no revisions to roll back to."
                        )
                    } else {
                        format!(
                            "Revision {revision} does not exist (a repository keeps its last ten old revisions): choose one of {}.",
                            existing
                                .iter()
                                .map(i64::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                ))
            }
            StoreError::WebhookRefused => Self::WebhookRefused,
            StoreError::WebhookMalformed(e) => Self::Malformed(e),
            StoreError::WebhookRateLimited { retry_after_secs } => Self::WebhookRateLimited {
                max: crate::repositories::webhook::RATE_MAX,
                retry_after_secs,
            },
            StoreError::AlreadyRunning(revision) => Self::Conflict(FieldError::new(
                "revision",
                format!(
                    "Revision {revision} is already running: choose an older revision to roll back to."
                ),
            )),
            StoreError::SecretsGone { revision, missing } => Self::Conflict(FieldError::new(
                "revision",
                format!(
                    "Revision {revision} needs the secret variables {} whose values are no longer stored: roll back to another revision, or set them on the variables page.",
                    missing.join(", ")
                ),
            )),
            StoreError::GroupNamesTaken(names) => Self::Conflict(FieldError::new(
                "services",
                format!(
                    "You already have repositories named {}: rename those services in the file (and where others use them) or delete the repositories first. Nothing was created.",
                    names.join(", ")
                ),
            )),
            StoreError::GroupOverQuota(reason) => {
                Self::Invalid(vec![FieldError::new("services", reason)])
            }
            StoreError::GroupFailed {
                service,
                removed,
                source,
            } => Self::GroupFailed {
                service,
                removed,
                cause: Box::new(Self::from(*source)),
            },
            StoreError::DependencyNotReady {
                dependency,
                dependent,
                secs,
            } => Self::DependencyNotReady {
                dependency,
                dependent,
                secs,
            },
            StoreError::Task(e) => Self::Task(e),
            StoreError::NoSuchRegistry(server) => Self::NotFoundField(FieldError::new(
                "server",
                format!("No login for the registry {server} is saved in your namespace."),
            )),
            StoreError::RegistryInUse {
                server,
                repositories,
            } => Self::Conflict(FieldError::new(
                "server",
                format!(
                    "The repositories {} pull from {server} with this login, so it was kept: change their image or delete them first.",
                    repositories.join(", ")
                ),
            )),
            StoreError::RegistryNotApplied {
                server,
                pending,
                cause,
            } => Self::Conflict(FieldError::new(
                "server",
                format!(
                    "The login for {server} was saved, but the repositories {} could not yet be changed to pull with it ({cause}): save it again to retry.",
                    pending.join(", ")
                ),
            )),
        }
    }
}

/// The API server's own sentence for an API error (not the whole debug dump of its Status).
struct KubeMessage<'a>(&'a kube::Error);

impl std::fmt::Display for KubeMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            kube::Error::Api(s) if !s.message.is_empty() => {
                write!(f, "{} ({})", s.message, s.code)
            }
            other => write!(f, "{other}"),
        }
    }
}

/// What the rendering middleware needs to describe an error, kept in the response's extensions.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub field: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    pub redirect_to_login: bool,
    #[serde(skip)]
    pub internal: bool,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) | Self::NotFoundField(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) | Self::Csrf => StatusCode::FORBIDDEN,
            Self::Unauthenticated | Self::BadCredentials | Self::WebhookRefused => {
                StatusCode::UNAUTHORIZED
            }
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooManyAttempts { .. }
            | Self::ConsoleRateLimited { .. }
            | Self::WebhookRateLimited { .. }
            | Self::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ConsoleTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ConsoleUnreachable => StatusCode::BAD_GATEWAY,
            Self::Import(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Deploy { source, .. } | Self::Kube(source) => match source {
                kube::Error::Api(s) if s.is_forbidden() => StatusCode::BAD_GATEWAY,
                kube::Error::Api(s) if s.code == 422 => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::SessionKey
            | Self::PasswordHash(_)
            | Self::Task(_)
            | Self::StoredDataUnreadable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ClusterNotAnswering { .. } | Self::ClusterStoppedMidway { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::Starting | Self::ClusterAway => StatusCode::SERVICE_UNAVAILABLE,
            Self::GroupFailed { cause, .. } => cause.status(),
            Self::DependencyNotReady { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let errors = self.field_errors();
        // The developer's own service failing is their outcome to see, not the site's fault.
        let internal = self.status().is_server_error()
            && !matches!(
                self,
                Self::ConsoleTimeout { .. }
                    | Self::ConsoleUnreachable
                    | Self::DependencyNotReady { .. }
            )
            && !matches!(self, Self::GroupFailed { cause, .. } if !cause.body().internal);
        let message = if matches!(self, Self::PasswordHash(_) | Self::Task(_)) {
            "Something went wrong on our side; try again, and tell the operator if it keeps happening."
                .to_string()
        } else {
            self.to_string()
        };
        ErrorBody {
            field: errors.first().map(|e| e.field.clone()),
            message,
            errors,
            redirect_to_login: matches!(self, Self::Unauthenticated),
            internal,
        }
    }

    /// The fields this error belongs next to, so a form can show it inline.
    /// The field errors a form shows next to its fields, or the error itself when it has none
    /// (a page-wide failure the error page renders).
    pub fn into_field_errors(self) -> Result<Vec<FieldError>, Self> {
        let errors = self.field_errors();
        if errors.is_empty() {
            Err(self)
        } else {
            Ok(errors)
        }
    }

    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            Self::Invalid(errors) => errors.clone(),
            Self::Conflict(e) | Self::NotFoundField(e) | Self::Malformed(e) => vec![e.clone()],
            Self::BodyTooLarge { .. } => vec![FieldError::new("body", self.to_string())],
            Self::GroupFailed { service, .. } => vec![FieldError::new(
                &format!("services.{service}"),
                self.to_string(),
            )],
            _ => Vec::new(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status(), body.message.clone()).into_response();
        response.extensions_mut().insert(body);
        if let Self::TooManyAttempts { retry_after_secs }
        | Self::ConsoleRateLimited {
            retry_after_secs, ..
        }
        | Self::WebhookRateLimited {
            retry_after_secs, ..
        } = self
            && let Ok(v) = http::HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        response
    }
}
