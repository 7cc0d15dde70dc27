//! The API test console (issue 7): a repository's registered endpoints, sent through the
//! ingress to the repository's public route, with a per-user history.

pub mod api;
pub mod model;
pub mod openapi;
pub mod pages;
pub mod send;
pub mod store;
pub mod views;

use serde::{Deserialize, Serialize};

use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::json_fields::{optional_body_text, optional_text, text};
use crate::state::AppState;
use model::{
    Endpoint, EndpointInput, Pair, RequestParts, check_request, fill_path, header_pairs,
    lines_to_pairs, optional_header_lines, optional_query_lines, query_pairs, validate_endpoint,
};
use send::Outcome;
use store::Call;

/// Longest body kept in the history; longer ones are cut (and the call can still be re-run
/// from its endpoint).
const HISTORY_BODY: usize = 4096;

fn new_id() -> String {
    crate::accounts::session::random_token()
        .chars()
        .take(12)
        .collect()
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("Endpoint {id}"))
}

pub async fn add(
    state: &AppState,
    namespace: &str,
    repo: &str,
    input: &EndpointInput,
) -> Result<Endpoint, AppError> {
    let endpoint = validate_endpoint(input, new_id()).map_err(AppError::Invalid)?;
    store::update_endpoints(&state.repositories, namespace, repo, |list| {
        if list.len() >= store::MAX_ENDPOINTS {
            return Err(AppError::Invalid(vec![FieldError::new(
                "name",
                format!(
                    "A repository can hold {} endpoints: delete one first.",
                    store::MAX_ENDPOINTS
                ),
            )]));
        }
        list.push(endpoint.clone());
        Ok(endpoint.clone())
    })
    .await
}

pub async fn edit(
    state: &AppState,
    namespace: &str,
    repo: &str,
    id: &str,
    input: &EndpointInput,
) -> Result<Endpoint, AppError> {
    let endpoint = validate_endpoint(input, id.to_string()).map_err(AppError::Invalid)?;
    store::update_endpoints(&state.repositories, namespace, repo, |list| {
        let slot = list
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| not_found(id))?;
        *slot = endpoint.clone();
        Ok(endpoint.clone())
    })
    .await
}

pub async fn duplicate(
    state: &AppState,
    namespace: &str,
    repo: &str,
    id: &str,
) -> Result<Endpoint, AppError> {
    let fresh = new_id();
    store::update_endpoints(&state.repositories, namespace, repo, |list| {
        if list.len() >= store::MAX_ENDPOINTS {
            return Err(AppError::Conflict(FieldError::new(
                "endpoint",
                "This repository already has the most endpoints allowed.",
            )));
        }
        let at = list
            .iter()
            .position(|e| e.id == id)
            .ok_or_else(|| not_found(id))?;
        let mut copy = list[at].clone();
        copy.id.clone_from(&fresh);
        copy.name = format!("{} (copy)", copy.name).chars().take(80).collect();
        list.insert(at + 1, copy.clone());
        Ok(copy)
    })
    .await
}

/// Moves an endpoint one place up (`-1`) or down (`1`).
pub async fn shift(
    state: &AppState,
    namespace: &str,
    repo: &str,
    id: &str,
    by: isize,
) -> Result<(), AppError> {
    store::update_endpoints(&state.repositories, namespace, repo, |list| {
        let at = list
            .iter()
            .position(|e| e.id == id)
            .ok_or_else(|| not_found(id))?;
        let to = at
            .saturating_add_signed(by)
            .min(list.len().saturating_sub(1));
        list.swap(at, to);
        Ok(())
    })
    .await
}

/// Puts the endpoints in the given order; every id must be listed exactly once.
pub async fn reorder(
    state: &AppState,
    namespace: &str,
    repo: &str,
    ids: &[String],
) -> Result<Vec<Endpoint>, AppError> {
    store::update_endpoints(&state.repositories, namespace, repo, |list| {
        let mut sorted_ids = ids.to_vec();
        sorted_ids.sort();
        sorted_ids.dedup();
        let mut have: Vec<String> = list.iter().map(|e| e.id.clone()).collect();
        have.sort();
        if sorted_ids != have || ids.len() != list.len() {
            return Err(AppError::Invalid(vec![FieldError::new(
                "ids",
                "List every endpoint id exactly once.",
            )]));
        }
        list.sort_by_key(|e| ids.iter().position(|i| *i == e.id));
        Ok(list.clone())
    })
    .await
}

pub async fn remove(
    state: &AppState,
    namespace: &str,
    repo: &str,
    id: &str,
) -> Result<(), AppError> {
    store::update_endpoints(&state.repositories, namespace, repo, |list| {
        let before = list.len();
        list.retain(|e| e.id != id);
        if list.len() == before {
            return Err(not_found(id));
        }
        Ok(())
    })
    .await
}

pub async fn find(
    state: &AppState,
    namespace: &str,
    repo: &str,
    id: &str,
) -> Result<Endpoint, AppError> {
    store::endpoints(&state.repositories, namespace, repo)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| not_found(id))
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub added: usize,
    /// Operations already registered (same method and path).
    pub already_there: usize,
    /// Operations that break a rule, with the reason.
    pub skipped: Vec<String>,
}

/// Adds the document's operations that are not registered yet.
pub async fn import(
    state: &AppState,
    namespace: &str,
    repo: &str,
    document: &str,
) -> Result<ImportReport, AppError> {
    let inputs = openapi::endpoints_from(document)?;
    let mut report = ImportReport::default();
    let mut valid = Vec::new();
    for input in &inputs {
        match validate_endpoint(input, new_id()) {
            Ok(e) => valid.push(e),
            Err(errors) => report.skipped.push(format!(
                "{} {}: {}",
                input.method,
                input.path,
                errors.first().map_or("invalid", |e| e.message.as_str())
            )),
        }
    }
    store::update_endpoints(&state.repositories, namespace, repo, |list| {
        let mut r = report.clone();
        for e in &valid {
            if list
                .iter()
                .any(|x| x.method == e.method && x.path == e.path)
            {
                r.already_there += 1;
            } else if list.len() < store::MAX_ENDPOINTS {
                list.push(e.clone());
                r.added += 1;
            } else {
                r.skipped.push(format!(
                    "{} {}: the endpoint limit is reached",
                    e.method, e.path
                ));
            }
        }
        Ok(r)
    })
    .await
}

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
                model::path_params(&e.path)
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
    let body_kind = model::BodyKind::parse(&field(&input.body_kind)).ok_or_else(|| {
        AppError::Invalid(vec![FieldError::new(
            "body_kind",
            "Choose none, JSON, form or raw.",
        )])
    })?;
    let parts = RequestParts {
        method: endpoint.method.clone(),
        path,
        query: lines_to_pairs(&field(&input.query), '='),
        headers: lines_to_pairs(&field(&input.headers), ':'),
        body_kind,
        body: field(&input.body),
    };
    let mut errors = check_request(&parts);
    // A parameter value that decodes into a dot segment is the parameter's fault.
    for e in &mut errors {
        if e.field == "path" && !model::path_params(&endpoint.path).is_empty() {
            e.field = "params".into();
        }
    }
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
    let curl = model::curl(&url, parts);
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
    let errors = check_request(&parts);
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
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
    let body_kind = model::BodyKind::parse(&body_kind).ok_or_else(|| {
        AppError::Invalid(vec![FieldError::new(
            "body_kind",
            "Choose none, JSON, form or raw.",
        )])
    })?;
    let parts = RequestParts {
        method: method.trim().to_ascii_uppercase(),
        path: path.trim().to_string(),
        query,
        headers,
        body_kind,
        body,
    };
    let errors = check_request(&parts);
    if errors.is_empty() {
        Ok(parts)
    } else {
        Err(AppError::Invalid(errors))
    }
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
