//! A repository's registered endpoints: add, edit, duplicate, order, delete and import them, each
//! as one resourceVersion-guarded write of the stored list.

use serde::Serialize;

use super::model::{Endpoint, EndpointInput};
use super::rules::validate_endpoint;
use super::{openapi, store};
use crate::error::{AppError, FieldError};
use crate::state::AppState;

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
