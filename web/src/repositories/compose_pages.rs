//! The Compose page (`/compose`) and API (`/api/v1/compose`, `/api/v1/compose/preview`): a
//! compose file previewed as the repositories it becomes, and deployed as one group.

use axum::Form;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Redirect, Response};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::compose::{self, Effect, Finding, Malformed, Plan, PlannedService};
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::layout::{Frame, csrf_field, field_error, general_error, page};
use crate::state::{AppState, CsrfToken};

/// A JSON body: the file as text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComposeBody {
    compose: String,
}

/// One service of the preview: the repository it becomes and its public address, if it has one.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePreview {
    #[serde(flatten)]
    pub service: PlannedService,
    /// The public route of a service that publishes its port.
    pub route: Option<String>,
    /// The name the other services reach it by, with its port (`db:5432`).
    pub internal_address: String,
}

/// What the preview shows: the repositories in rollout order, every key not deployed as
/// written, and whether the deploy would go ahead.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub project: String,
    pub deployable: bool,
    pub services: Vec<ServicePreview>,
    pub findings: Vec<Finding>,
}

/// The file of an API request: `application/json` as `{"compose": "…"}`, YAML or text as is.
fn file_of(headers: &HeaderMap, body: &[u8]) -> Result<String, AppError> {
    // JSON escapes a file's newlines and quotes, so its body may be somewhat larger.
    let limit = compose::MAX_FILE_BYTES * 2;
    if body.len() > limit {
        return Err(AppError::BodyTooLarge {
            limit_kib: limit / 1024,
        });
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "application/json" => crate::json::decode::<ComposeBody>(body).map(|b| b.compose),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain"
        | "" => String::from_utf8(body.to_vec()).map_err(|_| {
            AppError::Malformed(FieldError::new(
                "compose",
                "The file is not UTF-8 text: save it as UTF-8.",
            ))
        }),
        other => Err(AppError::Malformed(FieldError::new(
            "body",
            format!(
                "{other} is not read here: send the file as application/yaml, or as JSON {{\"compose\": \"…\"}}."
            ),
        ))),
    }
}

/// A file that cannot be read, as the error the API and the page show (400, naming the line).
fn malformed(e: Malformed) -> AppError {
    let message = match (e.line, e.column) {
        (Some(line), Some(column)) if !e.message.contains(&format!("line {line}")) => {
            format!("{} (line {line}, column {column})", e.message)
        }
        (Some(line), None) => format!("{} (line {line})", e.message),
        _ => e.message,
    };
    AppError::Malformed(FieldError::new("compose", message))
}

/// Reads and plans a file for this site.
fn plan_of(state: &AppState, text: &str) -> Result<Plan, AppError> {
    compose::plan(text, state.config.max_replicas).map_err(malformed)
}

/// The preview of a plan for a user's namespace (with the namespace's own findings).
async fn preview_of(state: &AppState, user: &CurrentUser, plan: Plan) -> Result<Preview, AppError> {
    let namespace = user.namespace();
    let findings = state
        .repositories
        .compose_findings(namespace, &plan)
        .await?;
    let public_url = &state.config.public_url;
    let deployable = !plan.services.is_empty() && !findings.iter().any(|f| f.effect.blocks());
    Ok(Preview {
        project: plan.project,
        deployable,
        services: plan
            .services
            .into_iter()
            .map(|s| ServicePreview {
                route: s.public.then(|| public_url.endpoint(namespace, &s.name)),
                internal_address: format!("{}:{}", s.name, s.port),
                service: s,
            })
            .collect(),
        findings,
    })
}

/// `POST /api/v1/compose/preview`: what the file would create; creates nothing.
pub async fn api_preview(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Preview>, AppError> {
    let text = file_of(&headers, &body)?;
    let plan = plan_of(&state, &text)?;
    Ok(Json(preview_of(&state, &user, plan).await?))
}

/// `POST /api/v1/compose`: deploys the file as a group, or refuses it whole.
pub async fn api_deploy(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let text = file_of(&headers, &body)?;
    let plan = plan_of(&state, &text)?;
    let deployed = state
        .repositories
        .deploy_compose(user.namespace(), &plan)
        .await?;
    Ok((StatusCode::CREATED, Json(deployed)).into_response())
}

/// The page's form (the CSRF field aside).
#[derive(Debug, Default, Deserialize)]
pub struct ComposeForm {
    #[serde(default)]
    compose: String,
}

/// `GET /compose`.
pub async fn page_get(user: CurrentUser, CsrfToken(csrf): CsrfToken) -> Markup {
    compose_page(&Frame::signed_in(&user, &csrf), "", None, &[])
}

/// `POST /compose/preview`: the page again, with the file and its preview.
pub async fn page_preview(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Form(form): Form<ComposeForm>,
) -> Result<Response, AppError> {
    let frame = Frame::signed_in(&user, &csrf);
    let preview = match plan_of(&state, &form.compose) {
        Ok(plan) => preview_of(&state, &user, plan).await?,
        Err(e) => {
            let errors = e.field_errors();
            let page = compose_page(&frame, &form.compose, None, &errors);
            return Ok((e.status(), page).into_response());
        }
    };
    Ok(compose_page(&frame, &form.compose, Some(&preview), &[]).into_response())
}

/// `POST /compose`: deploys and goes to the list; on a refusal the page again with the file,
/// its preview and the reason.
pub async fn page_deploy(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Form(form): Form<ComposeForm>,
) -> Result<Response, AppError> {
    let frame = Frame::signed_in(&user, &csrf);
    let plan = match plan_of(&state, &form.compose) {
        Ok(plan) => plan,
        Err(e) => {
            let errors = e.field_errors();
            let page = compose_page(&frame, &form.compose, None, &errors);
            return Ok((e.status(), page).into_response());
        }
    };
    let error = match state
        .repositories
        .deploy_compose(user.namespace(), &plan)
        .await
    {
        Ok(_) => return Ok(Redirect::to("/repos").into_response()),
        Err(e) => AppError::from(e),
    };
    let status = error.status();
    let errors = error.into_field_errors()?;
    let preview = preview_of(&state, &user, plan).await?;
    let page = compose_page(&frame, &form.compose, Some(&preview), &errors);
    Ok((status, page).into_response())
}

fn effect_pill(effect: Effect) -> (&'static str, &'static str) {
    match effect {
        Effect::Invalid => ("pill failing", "invalid"),
        Effect::Unsupported => ("pill failing", "unsupported"),
        Effect::Ignored => ("pill updating", "ignored"),
    }
}

fn compose_page(
    frame: &Frame,
    text: &str,
    preview: Option<&Preview>,
    errors: &[FieldError],
) -> Markup {
    // A refusal of the file as a whole sits by the text; one of the group above the preview.
    // (Refusals of single keys are already rows of the preview's table.)
    let general: Vec<&FieldError> = errors
        .iter()
        .filter(|e| e.field != "compose")
        .filter(|e| !preview.is_some_and(|p| p.findings.iter().any(|f| f.path == e.field)))
        .collect();
    page(
        frame,
        "Deploy a compose file",
        html! {
            p { a href="/repos" { "← All repositories" } }
            h1 { "Deploy a compose file" }
            p { "Each service of a " code { "compose.yaml" } " becomes a repository of your namespace. Services reach each other by their service names, as in compose (" code { "http://api:3000" } "); a service that publishes a port under " code { "ports" } " also gets a public route, " code { "/<namespace>/<service>/" } " on this site's host. Host port numbers do not apply there: every route shares the one host." }
            p.muted { "Supported: image, ports, expose, environment, deploy.replicas, depends_on (service_started, service_healthy). Everything else is listed in the preview with the reason; the deploy waits until the keys marked unsupported or invalid are removed. Nothing is created by the preview, and a deploy that fails midway removes what it made." }
            @for e in &general { (general_error(Some(&e.message))) }
            form.stack method="post" action="/compose" data-busy novalidate {
                (csrf_field(frame.csrf))
                label for="compose-file" { "Upload a file (optional)" }
                input #compose-file type="file" accept=".yaml,.yml,application/yaml,text/yaml" data-load-into="compose";
                label for="compose" { "compose.yaml" }
                textarea #compose name="compose" rows="18" spellcheck="false" autocomplete="off" aria-describedby="compose-rule" { (text) }
                p.rule id="compose-rule" { "At most " (compose::MAX_FILE_BYTES / 1024) " KiB and " (compose::MAX_SERVICES) " services; service names become repository names (lowercase letters, digits and '-')." }
                (field_error(errors, "compose"))
                div.buttons {
                    button type="submit" formaction="/compose/preview" data-action="preview" { "Preview" }
                    " "
                    button.primary type="submit" data-action="deploy" { "Deploy" }
                }
            }
            @if let Some(p) = preview { (preview_section(p)) }
        },
    )
}

fn preview_section(p: &Preview) -> Markup {
    let pods: i64 = p
        .services
        .iter()
        .map(|s| i64::from(s.service.replicas))
        .sum();
    html! {
        section #preview data-deployable=(p.deployable) {
            h2 { "Preview: project " code { (p.project) } }
            @if p.deployable {
                div.banner.ok role="status" { "Ready to deploy: " (p.services.len()) " repositories, " (pods) " pods, created in the order below." }
            } @else {
                div.banner.error role="alert" { "This file cannot be deployed yet: fix or remove what is marked invalid or unsupported below, then preview again." }
            }
            div.scroll { table.compose {
                thead { tr { th { "Order" } th { "Service" } th { "Image" } th { "Port and route" } th { "Replicas" } th { "Environment" } th { "Waits for" } } }
                tbody {
                    @for s in &p.services {
                        tr data-service=(s.service.name) {
                            td { (s.service.order) }
                            td { strong { (s.service.name) } }
                            td { code { (s.service.image) } }
                            td {
                                "port " (s.service.port) ", reached as " code { (s.internal_address) }
                                br;
                                @match &s.route {
                                    Some(r) => { "public: " code data-field="route" { (r) } }
                                    None => { span.muted data-field="route" { "internal only (no port published)" } }
                                }
                                @if !s.service.published.is_empty() {
                                    br; small.muted { "host port " (s.service.published.join(", ")) " is not used: the route above is its address" }
                                }
                            }
                            td { (s.service.replicas) }
                            td {
                                @if s.service.environment.is_empty() { "—" }
                                @for v in &s.service.environment { code { (v.name) "=" (v.value) } br; }
                            }
                            td {
                                @if s.service.depends_on.is_empty() { "—" }
                                @for d in &s.service.depends_on {
                                    (d.service)
                                    @if d.condition == compose::Condition::ServiceHealthy { " (until Ready)" }
                                    br;
                                }
                            }
                        }
                    }
                }
            } }
            @if !p.findings.is_empty() {
                h3 { "Not deployed as written" }
                div.scroll { table.findings {
                    thead { tr { th { "Key" } th { "Line" } th { "Effect" } th { "Why" } } }
                    tbody {
                        @for f in &p.findings {
                            @let (class, label) = effect_pill(f.effect);
                            tr data-finding=(f.path) {
                                td { code { (f.path) } }
                                td { @if let Some(l) = f.line { (l) } @else { "—" } }
                                td { span class=(class) { (label) } }
                                td { (f.reason) }
                            }
                        }
                    }
                } }
            }
        }
    }
}
