//! Page handlers: forms in, pages or redirects out.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::SignedCookieJar;
use serde::Deserialize;

use crate::app::{AppState, CsrfToken};
use crate::auth::{self, Admin, CurrentUser, SESSION_COOKIE};
use crate::cluster::Change;
use crate::console;
use crate::error::AppError;
use crate::validation::{
    ChangeInput, FieldError, RepositoryInput, validate_change, validate_repository,
};
use crate::views::{self, ChangeValues, Frame};

pub async fn home(user: Result<CurrentUser, AppError>) -> Redirect {
    match user {
        Ok(_) => Redirect::to("/repos"),
        Err(_) => Redirect::to("/login"),
    }
}

#[derive(Debug, Deserialize)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

pub async fn login_form(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
) -> Result<impl IntoResponse, AppError> {
    let registration = state.accounts.self_registration().await?;
    Ok(views::login(
        &Frame {
            user: None,
            csrf: &csrf,
        },
        "",
        None,
        registration,
    ))
}

pub async fn login(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    jar: SignedCookieJar,
    Form(form): Form<Credentials>,
) -> Result<Response, AppError> {
    let username = form.username.trim();
    match state.accounts.sign_in(username, &form.password).await {
        Ok((user, epoch)) => {
            let jar = jar.add(auth::session_cookie(&state.config, &user, epoch));
            Ok((jar, Redirect::to("/repos")).into_response())
        }
        Err(e @ (AppError::BadCredentials | AppError::TooManyAttempts { .. })) => {
            let registration = state.accounts.self_registration().await?;
            let page = views::login(
                &Frame {
                    user: None,
                    csrf: &csrf,
                },
                username,
                Some(&e.to_string()),
                registration,
            );
            Ok((e.status(), page).into_response())
        }
        Err(e) => Err(e),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    user: Result<CurrentUser, AppError>,
    jar: SignedCookieJar,
) -> Result<impl IntoResponse, AppError> {
    if let Ok(user) = user {
        state.accounts.end_sessions(&user.name).await?;
        tracing::info!(username = %user.name, "signed out");
    }
    Ok((
        jar.remove(auth::removal(SESSION_COOKIE)),
        Redirect::to("/login"),
    ))
}

pub async fn register_form(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
) -> Result<impl IntoResponse, AppError> {
    if !state.accounts.self_registration().await? {
        return Err(AppError::Forbidden(
            "Self-registration is turned off: ask an administrator for an account.",
        ));
    }
    Ok(views::register(
        &Frame {
            user: None,
            csrf: &csrf,
        },
        "",
        &[],
    ))
}

pub async fn register(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    jar: SignedCookieJar,
    Form(form): Form<Credentials>,
) -> Result<Response, AppError> {
    if !state.accounts.self_registration().await? {
        return Err(AppError::Forbidden(
            "Self-registration is turned off: ask an administrator for an account.",
        ));
    }
    let username = form.username.trim();
    match state
        .accounts
        .create_user(username, &form.password, false)
        .await
    {
        Ok(()) => {
            let (user, epoch) = state.accounts.sign_in(username, &form.password).await?;
            let jar = jar.add(auth::session_cookie(&state.config, &user, epoch));
            Ok((jar, Redirect::to("/repos")).into_response())
        }
        Err(AppError::Invalid(errors)) => Ok(form_failed(views::register(
            &Frame {
                user: None,
                csrf: &csrf,
            },
            username,
            &errors,
        ))),
        Err(AppError::Conflict(e)) => Ok((
            StatusCode::CONFLICT,
            views::register(
                &Frame {
                    user: None,
                    csrf: &csrf,
                },
                username,
                &[e],
            ),
        )
            .into_response()),
        Err(e) => Err(e),
    }
}

fn form_failed(page: maud::Markup) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
}

pub async fn repositories(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
) -> Result<impl IntoResponse, AppError> {
    let rows = state.cluster.list_repositories(user.namespace()).await?;
    Ok(views::repositories(
        &Frame {
            user: Some(&user),
            csrf: &csrf,
        },
        &rows,
    ))
}

pub async fn new_repository(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
) -> impl IntoResponse {
    views::new_repository(
        &Frame {
            user: Some(&user),
            csrf: &csrf,
        },
        &RepositoryInput::default(),
        &[],
        None,
        state.config.max_replicas,
    )
}

/// Creates a repository; on any failure the form comes back with what was typed and the reason.
pub async fn create_repository(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Form(input): Form<RepositoryInput>,
) -> Result<Response, AppError> {
    let max = state.config.max_replicas;
    let frame = Frame {
        user: Some(&user),
        csrf: &csrf,
    };
    let spec = match validate_repository(&input, max) {
        Ok(spec) => spec,
        Err(errors) => {
            return Ok(form_failed(views::new_repository(
                &frame, &input, &errors, None, max,
            )));
        }
    };
    match state
        .cluster
        .create_repository(user.namespace(), &spec)
        .await
    {
        Ok(()) => Ok(Redirect::to(&format!("/repos/{}", spec.name)).into_response()),
        Err(AppError::Conflict(e)) => Ok((
            StatusCode::CONFLICT,
            views::new_repository(&frame, &input, &[e], None, max),
        )
            .into_response()),
        Err(e) => {
            let status = e.status();
            let message =
                format!("{e}. Nothing was left half-created; check the values and try again.");
            Ok((
                status,
                views::new_repository(&frame, &input, &[], Some(&message), max),
            )
                .into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Notice {
    pub done: Option<String>,
}

fn notice_text(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "redeploy" => Some("Redeploy started: new pods replace the old ones one at a time."),
        "change" => Some("Changes applied: the rollout is under way."),
        _ => None,
    }
}

/// "imported-3-1-0": added, already there, skipped.
fn import_notice(done: Option<&str>) -> Option<String> {
    let mut n = done?.strip_prefix("imported-")?.split('-');
    let (added, there, skipped) = (n.next()?, n.next()?, n.next()?);
    Some(format!(
        "Import done: {added} endpoints added, {there} already registered, {skipped} skipped for breaking a rule."
    ))
}

pub async fn repository(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<impl IntoResponse, AppError> {
    let detail = state.cluster.repository(user.namespace(), &name).await?;
    let endpoints = console::store::endpoints(&state.cluster, user.namespace(), &name).await?;
    let port = detail.summary.port.to_string();
    let replicas = detail.summary.replicas.desired.to_string();
    let values = ChangeValues {
        image: &detail.summary.image,
        port: &port,
        replicas: &replicas,
    };
    let imported = import_notice(notice.done.as_deref());
    Ok(views::repository(
        &Frame {
            user: Some(&user),
            csrf: &csrf,
        },
        &detail,
        &values,
        &[],
        notice_text(notice.done.as_deref()).or(imported.as_deref()),
        state.config.max_replicas,
        &console::views::Section {
            endpoints: &endpoints,
            document: "",
            fetch: "",
            errors: &[],
        },
    ))
}

/// The detail page with the import form's values and errors (a failed import).
pub async fn repository_page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &str,
    name: &str,
    errors: &[FieldError],
    form: &console::pages::ImportForm,
) -> Result<maud::Markup, AppError> {
    let detail = state.cluster.repository(user.namespace(), name).await?;
    let endpoints = console::store::endpoints(&state.cluster, user.namespace(), name).await?;
    let port = detail.summary.port.to_string();
    let replicas = detail.summary.replicas.desired.to_string();
    let values = ChangeValues {
        image: &detail.summary.image,
        port: &port,
        replicas: &replicas,
    };
    Ok(views::repository(
        &Frame {
            user: Some(user),
            csrf,
        },
        &detail,
        &values,
        &[],
        None,
        state.config.max_replicas,
        &console::views::Section {
            endpoints: &endpoints,
            document: &form.document,
            fetch: &form.fetch,
            errors,
        },
    ))
}

pub async fn redeploy(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let change = Change {
        restart: true,
        ..Change::default()
    };
    state
        .cluster
        .change_repository(user.namespace(), &name, &change)
        .await?;
    Ok(Redirect::to(&format!("/repos/{name}?done=redeploy")))
}

#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    pub image: Option<String>,
    pub port: Option<String>,
    pub replicas: Option<String>,
}

/// Image, port and replicas from the detail page; errors re-render the page with what was typed.
pub async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
    Form(form): Form<ChangeForm>,
) -> Result<Response, AppError> {
    let input = ChangeInput {
        image: form.image.clone(),
        port: form.port.clone(),
        replicas: form.replicas.clone(),
    };
    let errors = match validate_change(&input, state.config.max_replicas) {
        Ok(valid) => {
            let change = Change {
                image: valid.image,
                port: valid.port,
                replicas: valid.replicas,
                restart: false,
            };
            match state
                .cluster
                .change_repository(user.namespace(), &name, &change)
                .await
            {
                Ok(_) => {
                    return Ok(Redirect::to(&format!("/repos/{name}?done=change")).into_response());
                }
                Err(AppError::Conflict(e)) => vec![e],
                Err(e) => return Err(e),
            }
        }
        Err(errors) => errors,
    };
    // The scale control sends only `replicas`: its errors belong next to it, not the change form.
    let scale_only = form.image.is_none() && form.port.is_none();
    let errors: Vec<FieldError> = errors
        .into_iter()
        .map(|mut e| {
            if scale_only && e.field == "replicas" {
                e.field = "scale".into();
            }
            e
        })
        .collect();
    let detail = state.cluster.repository(user.namespace(), &name).await?;
    let port = detail.summary.port.to_string();
    let replicas = detail.summary.replicas.desired.to_string();
    let values = ChangeValues {
        image: form.image.as_deref().unwrap_or(&detail.summary.image),
        port: form.port.as_deref().unwrap_or(&port),
        replicas: if scale_only {
            &replicas
        } else {
            form.replicas.as_deref().unwrap_or(&replicas)
        },
    };
    let endpoints = console::store::endpoints(&state.cluster, user.namespace(), &name).await?;
    let page = views::repository(
        &Frame {
            user: Some(&user),
            csrf: &csrf,
        },
        &detail,
        &values,
        &errors,
        None,
        state.config.max_replicas,
        &console::views::Section {
            endpoints: &endpoints,
            document: "",
            fetch: "",
            errors: &[],
        },
    );
    Ok(form_failed(page))
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .cluster
        .delete_repository(user.namespace(), &name)
        .await?;
    Ok(Redirect::to("/repos"))
}

#[derive(Debug, Deserialize)]
pub struct AdminNotice {
    pub created: Option<String>,
}

pub async fn admin(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfToken(csrf): CsrfToken,
    Query(q): Query<AdminNotice>,
) -> Result<impl IntoResponse, AppError> {
    let users = state.accounts.list_users().await?;
    let registration = state.accounts.self_registration().await?;
    let notice = q
        .created
        .map(|u| format!("User {u} created; they can sign in now."));
    Ok(views::admin(
        &Frame {
            user: Some(&user),
            csrf: &csrf,
        },
        &users,
        registration,
        "",
        &[],
        notice.as_deref(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    pub admin: Option<String>,
}

pub async fn admin_create_user(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfToken(csrf): CsrfToken,
    Form(form): Form<NewUserForm>,
) -> Result<Response, AppError> {
    let username = form.username.trim();
    let errors: Vec<FieldError> = match state
        .accounts
        .create_user(username, &form.password, form.admin.is_some())
        .await
    {
        Ok(()) => return Ok(Redirect::to(&format!("/admin?created={username}")).into_response()),
        Err(AppError::Invalid(errors)) => errors,
        Err(AppError::Conflict(e)) => vec![e],
        Err(e) => return Err(e),
    };
    let users = state.accounts.list_users().await?;
    let registration = state.accounts.self_registration().await?;
    Ok(form_failed(views::admin(
        &Frame {
            user: Some(&user),
            csrf: &csrf,
        },
        &users,
        registration,
        username,
        &errors,
        None,
    )))
}

#[derive(Debug, Deserialize)]
pub struct RegistrationForm {
    #[serde(default)]
    pub enabled: String,
}

pub async fn admin_registration(
    State(state): State<AppState>,
    Admin(_): Admin,
    Form(form): Form<RegistrationForm>,
) -> Result<impl IntoResponse, AppError> {
    state
        .accounts
        .set_self_registration(form.enabled == "true")
        .await?;
    Ok(Redirect::to("/admin"))
}
