//! `?watch=1`: newline-delimited JSON watch events, resumable from a resourceVersion.

use crate::meta::Lookup;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::request::{Params, flag, list_options};
use super::{ApiState, table};
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::store::{Change, ChangeKind, StoreError};

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(rt: &ResourceType, revision: u64, initial_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata})
}

pub(super) fn watch(
    state: &Arc<ApiState>,
    rt: &'static ResourceType,
    ns: Option<&str>,
    params: &Params,
    as_table: bool,
) -> ApiResult<Response> {
    let opts = list_options(params, rt)?;
    let registry = state.registry.clone();
    let requested = params
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let send_initial =
        flag(params, "sendInitialEvents") || requested.is_empty() || requested == "0";
    let bookmarks = flag(params, "allowWatchBookmarks");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));

    let (initial, start) = if send_initial {
        let list = registry.list(
            rt,
            ns,
            &crate::registry::ListOptions {
                label_selector: opts.label_selector.clone(),
                field_selector: opts.field_selector.clone(),
                limit: None,
                continue_token: None,
            },
        )?;
        let revision: u64 = list["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let start = registry
            .store
            .watch_from(revision)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        (list["items"].as_array().cloned().unwrap_or_default(), start)
    } else {
        let since: u64 = requested
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {requested:?}")))?;
        match registry.store.watch_from(since) {
            Ok(start) => (Vec::new(), start),
            Err(StoreError::Expired { requested, oldest }) => {
                // Like the real server: HTTP 200, then one ERROR event carrying a 410 Expired Status.
                let status =
                    ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
                        .status_json();
                return Ok((
                    StatusCode::OK,
                    [(http::header::CONTENT_TYPE, "application/json")],
                    event_line("ERROR", &status),
                )
                    .into_response());
            }
            Err(e) => return Err(ApiError::internal(e.to_string())),
        }
    };

    let ns = ns.map(str::to_string);
    let passes = move |object: &Value| {
        opts.label_selector
            .as_ref()
            .is_none_or(|s| s.matches_object(object))
            && opts
                .field_selector
                .as_ref()
                .is_none_or(|s| s.matches(object))
    };
    // What a filtered watcher is sent for one change, as the watch cache decides it
    // (kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go,
    // `convertToWatchEvent`): a modified object that starts to pass the selectors is ADDED, one
    // that stops passing is DELETED (the previous object at the new resourceVersion), and one that
    // passes neither before nor after is not sent.
    let event = move |change: &Change| -> Option<(&'static str, Value)> {
        if change.key.resource != rt.key()
            || ns.as_deref().is_some_and(|n| change.key.namespace != n)
        {
            return None;
        }
        let now = passes(&change.object);
        match (change.kind, &change.previous) {
            (ChangeKind::Modified, Some(previous)) => match (passes(previous), now) {
                (true, true) => Some(("MODIFIED", change.object.clone())),
                (false, true) => Some(("ADDED", change.object.clone())),
                (true, false) => {
                    let mut gone = previous.clone();
                    if let Some(rv) = change.object.at("/metadata/resourceVersion")
                        && let Some(meta) = gone.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        meta.insert("resourceVersion".into(), rv.clone());
                    }
                    Some(("DELETED", gone))
                }
                (false, false) => None,
            },
            (kind, _) => now.then(|| (kind.watch_type(), change.object.clone())),
        }
    };
    let render = move |object: &Value| {
        if as_table {
            table::table(rt, std::slice::from_ref(object), None)
        } else {
            object.clone()
        }
    };

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let interval = state.bookmark_interval;
    let explicit_initial = flag(params, "sendInitialEvents");
    tokio::spawn(async move {
        let mut last_revision = start.revision;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        for object in &initial {
            if tx.send(event_line("ADDED", &render(object))).await.is_err() {
                return;
            }
        }
        if explicit_initial
            && bookmarks
            && tx
                .send(event_line("BOOKMARK", &bookmark(rt, last_revision, true)))
                .await
                .is_err()
        {
            return;
        }
        for change in &start.backlog {
            let Some((kind, object)) = event(change) else {
                continue;
            };
            last_revision = change.revision;
            if tx.send(event_line(kind, &render(&object))).await.is_err() {
                return;
            }
        }
        let mut feed = start.feed;
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let rev = last_revision.max(start.revision);
                    if tx.send(event_line("BOOKMARK", &bookmark(rt, rev, false))).await.is_err() {
                        return;
                    }
                }
                received = feed.recv() => match received {
                    Ok(change) => {
                        if change.revision <= start.revision {
                            continue;
                        }
                        let Some((kind, object)) = event(&change) else {
                            continue;
                        };
                        last_revision = change.revision;
                        if tx.send(event_line(kind, &render(&object))).await.is_err() {
                            return;
                        }
                    }
                    // A watcher that fell behind is closed; clients re-watch from their last revision.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok((
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}
