//! One console call: the values the console sends, the checked request they become, sending it
//! through the ingress, recording it in the user's history, and sending a recorded call again.

use serde::{Deserialize, Serialize};

use super::model::{
    self, Endpoint, EndpointInput, Pair, RequestParts, header_pairs, lines_to_pairs,
    optional_header_lines, optional_query_lines, query_pairs,
};
use super::request::{self, fill_path};
use super::rules::check_request;
use super::send::{self, Outcome};
use super::store::{self, Call};
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::json_fields::{optional_body_text, optional_text, text};
use crate::state::AppState;

/// Longest body kept in the history; longer ones are cut (and the call can still be re-run
/// from its endpoint).
const HISTORY_BODY: usize = 4096;
/// What the console form sends: values for the path parameters and the request as edited; the
/// API may leave fields out, which keep the endpoint's registered values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendInput {
    /// `name=value` lines for `{name}` placeholders.
    #[serde(default, deserialize_with = "optional_query_lines")]
    pub params: Option<String>,
    #[serde(default, deserialize_with = "optional_query_lines")]
    pub query: Option<String>,
    #[serde(default, deserialize_with = "optional_header_lines")]
    pub headers: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    pub body_kind: Option<String>,
    #[serde(default, deserialize_with = "optional_body_text")]
    pub body: Option<String>,
}

impl SendInput {
    pub fn from_endpoint(e: &Endpoint) -> Self {
        let i = EndpointInput::from_endpoint(e);
        Self {
            params: Some(
                request::path_params(&e.path)
                    .iter()
                    .map(|p| format!("{p}="))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            query: Some(i.query),
            headers: Some(i.headers),
            body_kind: Some(i.body_kind),
            body: Some(i.body),
        }
    }

    /// These values, with the endpoint's registered ones where a field was left out.
    pub fn or_endpoint(&self, e: &Endpoint) -> Self {
        let defaults = Self::from_endpoint(e);
        Self {
            params: self.params.clone().or(defaults.params),
            query: self.query.clone().or(defaults.query),
            headers: self.headers.clone().or(defaults.headers),
            body_kind: self.body_kind.clone().or(defaults.body_kind),
            body: self.body.clone().or(defaults.body),
        }
    }
}

/// An ad-hoc request of the API's `send`, without a registered endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdhocRequest {
    #[serde(default, deserialize_with = "text")]
    pub method: String,
    #[serde(default, deserialize_with = "text")]
    pub path: String,
    #[serde(default, deserialize_with = "query_pairs")]
    pub query: Vec<Pair>,
    #[serde(default, deserialize_with = "header_pairs")]
    pub headers: Vec<Pair>,
    #[serde(default, deserialize_with = "text")]
    pub body_kind: String,
    #[serde(default, deserialize_with = "crate::json_fields::body_text")]
    pub body: String,
}

/// The request an endpoint becomes with the console's values, checked again in full.
pub fn request_for(endpoint: &Endpoint, input: &SendInput) -> Result<RequestParts, AppError> {
    let input = input.or_endpoint(endpoint);
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    let params = lines_to_pairs(&field(&input.params), '=');
    let path = fill_path(&endpoint.path, &params).map_err(|e| AppError::Invalid(vec![e]))?;
    let body_kind = body_kind(&field(&input.body_kind))?;
    let parts = RequestParts {
        method: endpoint.method.clone(),
        path,
        query: lines_to_pairs(&field(&input.query), '='),
        headers: lines_to_pairs(&field(&input.headers), ':'),
        body_kind,
        body: field(&input.body),
    };
    checked(parts).map_err(|e| match e {
        // A parameter value that decodes into a dot segment is the parameter's fault.
        AppError::Invalid(mut errors) if !request::path_params(&endpoint.path).is_empty() => {
            for e in errors.iter_mut().filter(|e| e.field == "path") {
                e.field = "params".into();
            }
            AppError::Invalid(errors)
        }
        other => other,
    })
}

fn body_kind(raw: &str) -> Result<model::BodyKind, AppError> {
    model::BodyKind::parse(raw).ok_or_else(|| {
        AppError::Invalid(vec![FieldError::new(
            "body_kind",
            "Choose none, JSON, form or raw.",
        )])
    })
}

/// The parts, if they pass every request rule; otherwise every problem with its field.
fn checked(parts: RequestParts) -> Result<RequestParts, AppError> {
    let errors = check_request(&parts);
    if errors.is_empty() {
        Ok(parts)
    } else {
        Err(AppError::Invalid(errors))
    }
}

/// The result of one console call: the answer (or why there is none) and how to repeat it.
#[derive(Debug, Serialize)]
pub struct Sent {
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub curl: String,
}

/// Sends the request and records it in the user's history, whatever happened upstream.
pub async fn send(
    state: &AppState,
    user: &CurrentUser,
    repo: &str,
    endpoint: Option<&str>,
    parts: &RequestParts,
) -> Result<Sent, AppError> {
    let namespace = user.namespace();
    state.repositories.repository_uid(namespace, repo).await?;
    let sender = &state.sender;
    let url = sender.public_url(namespace, repo, &parts.path, &parts.query);
    let curl = request::curl(&url, parts);
    let result = sender.send(&user.name, namespace, repo, parts).await;
    let (outcome, error) = match result {
        Ok(o) => (Some(o), None),
        Err(e @ (AppError::ConsoleTimeout { .. } | AppError::ConsoleUnreachable)) => {
            (None, Some(e.to_string()))
        }
        Err(e) => return Err(e),
    };
    let call = Call {
        at: k8s_openapi::jiff::Timestamp::now().to_string(),
        repo: repo.to_string(),
        endpoint: endpoint.map(str::to_string),
        method: parts.method.clone(),
        path: parts.path.clone(),
        query: parts.query.clone(),
        headers: parts.headers.clone(),
        body_kind: parts.body_kind,
        body: parts.body.chars().take(HISTORY_BODY).collect(),
        status: outcome.as_ref().map(|o| o.status),
        elapsed_ms: outcome.as_ref().map(|o| o.elapsed_ms),
        outcome: match (&outcome, &error) {
            (Some(o), _) => format!("{} {}", o.status, o.reason),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        },
    };
    // The answer matters more than its history entry: a failed write is logged, not shown.
    if let Err(e) = store::record(
        &state.repositories,
        namespace,
        call,
        state.config.console.history_len,
    )
    .await
    {
        tracing::warn!(namespace, repo, error = %e, "console history not recorded");
    }
    Ok(Sent {
        outcome,
        error,
        curl,
    })
}

/// Sends a history entry again, exactly as it was sent.
pub async fn rerun(
    state: &AppState,
    user: &CurrentUser,
    index: usize,
) -> Result<(Call, Sent), AppError> {
    let calls = store::history(&state.repositories, user.namespace()).await?;
    let call = calls
        .get(index)
        .cloned()
        .ok_or_else(|| AppError::NotFound("That history entry".into()))?;
    let parts = RequestParts {
        method: call.method.clone(),
        path: call.path.clone(),
        query: call.query.clone(),
        headers: call.headers.clone(),
        body_kind: call.body_kind,
        body: call.body.clone(),
    };
    let parts = checked(parts)?;
    let sent = send(state, user, &call.repo, call.endpoint.as_deref(), &parts).await?;
    Ok((call, sent))
}

/// The parts of an ad-hoc request (the API's `send` without a registered endpoint).
pub fn adhoc(request: AdhocRequest) -> Result<RequestParts, AppError> {
    let AdhocRequest {
        method,
        path,
        query,
        headers,
        body_kind,
        body,
    } = request;
    let body_kind = self::body_kind(&body_kind)?;
    let parts = RequestParts {
        method: method.trim().to_ascii_uppercase(),
        path: path.trim().to_string(),
        query,
        headers,
        body_kind,
        body,
    };
    checked(parts)
}

/// Fetches an OpenAPI document from a path of the deployed service, through the same checks,
/// limits and route as any console call.
pub async fn fetch_document(
    state: &AppState,
    user: &CurrentUser,
    repo: &str,
    path: &str,
) -> Result<String, AppError> {
    let request = AdhocRequest {
        method: "GET".into(),
        path: path.into(),
        ..AdhocRequest::default()
    };
    let parts = adhoc(request).map_err(|e| match e {
        AppError::Invalid(mut errors) => {
            for err in &mut errors {
                err.field = "fetch".into();
            }
            AppError::Invalid(errors)
        }
        other => other,
    })?;
    let sent = send(state, user, repo, None, &parts).await?;
    let fail = |m: String| AppError::Invalid(vec![FieldError::new("fetch", m)]);
    let outcome = match (sent.outcome, sent.error) {
        (Some(o), _) => o,
        (None, e) => return Err(fail(e.unwrap_or_default())),
    };
    if outcome.status != 200 {
        return Err(fail(format!(
            "{} answered {} {}: check the path of the document.",
            path, outcome.status, outcome.reason
        )));
    }
    if outcome.truncated {
        return Err(fail(format!(
            "The document is larger than the console's response limit of {} KiB: paste it instead.",
            state.config.console.max_response_bytes / 1024
        )));
    }
    match outcome.body {
        send::Shown::Json(t) | send::Shown::Text(t) => Ok(t),
        send::Shown::Empty | send::Shown::Binary(_) => {
            Err(fail(format!("{path} did not return a text document.")))
        }
    }
}
