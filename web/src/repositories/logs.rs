//! A repository's recent logs: the page (a pod chooser, tail, since, follow), the stream the
//! page's follow mode reads, and the JSON API. Logs are read through the Kubernetes API with the
//! site's client, only in the signed-in user's namespace and only from pods of that repository
//! (its labels and its ReplicaSet as the pod's controller).

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};

use super::objects::LABEL_MANAGED_BY;
use crate::accounts::CurrentUser;
use crate::config::MANAGED_BY;
use crate::error::{AppError, FieldError};
use crate::layout::{Frame, field_error, page};
use crate::state::{AppState, CsrfToken};

pub const DEFAULT_TAIL: i64 = 200;
pub const MAX_TAIL: i64 = 5000;
/// One day: older lines are rarely still kept by the kubelet (its files rotate at 10 MiB).
pub const MAX_SINCE: i64 = 86_400;

pub const POD_RULE: &str = "A pod name: lowercase letters, digits, '-' and '.', at most 253 characters (a DNS-1123 subdomain).";
pub fn tail_rule() -> String {
    format!("A whole number of lines from 1 to {MAX_TAIL}.")
}
pub fn since_rule() -> String {
    format!("Optional: a whole number of seconds from 1 to {MAX_SINCE}.")
}

/// The query as typed: strings, so a bad value is refused with its field, not by the extractor.
#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    pub pod: Option<String>,
    pub tail: Option<String>,
    pub since: Option<String>,
    pub follow: Option<String>,
}

/// A validated request for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    pub pod: Option<String>,
    pub tail: i64,
    pub since: Option<i64>,
    pub follow: bool,
}

/// Kubernetes names of pods are DNS-1123 subdomains (k8s.io/apimachinery validation
/// `IsDNS1123Subdomain`).
pub fn check_dns1123_subdomain(name: &str) -> Result<(), String> {
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if name.is_empty() || name.len() > 253 || !labels_ok {
        return Err(POD_RULE.to_string());
    }
    Ok(())
}

fn number(raw: &str, field: &str, max: i64, rule: String) -> Result<i64, FieldError> {
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(FieldError::new(
            field,
            format!("{raw:?} is not allowed: {rule}"),
        )),
    }
}

pub fn validate(query: &LogQuery) -> Result<LogRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let pod = query.pod.as_deref().filter(|p| !p.is_empty());
    if let Some(p) = pod
        && let Err(rule) = check_dns1123_subdomain(p)
    {
        errors.push(FieldError::new("pod", rule));
    }
    let tail = match query.tail.as_deref().filter(|t| !t.trim().is_empty()) {
        None => DEFAULT_TAIL,
        Some(raw) => number(raw, "tail", MAX_TAIL, tail_rule()).unwrap_or_else(|e| {
            errors.push(e);
            DEFAULT_TAIL
        }),
    };
    let since = match query.since.as_deref().filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(raw) => match number(raw, "since", MAX_SINCE, since_rule()) {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    let follow = matches!(query.follow.as_deref(), Some("on" | "true" | "1"));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(LogRequest {
        pod: pod.map(str::to_string),
        tail,
        since,
        follow,
    })
}

/// A pod of another repository (or none at all) is not found, naming the field.
fn pod_not_found(repo: &str, pod: &str) -> AppError {
    AppError::NotFoundField(FieldError::new(
        "pod",
        format!(
            "Pod {pod} of repository {repo} was not found: choose one of the repository's pods"
        ),
    ))
}

/// Whether `pod` belongs to repository `repo`: the site's labels for it, and a ReplicaSet of
/// its Deployment (named `<repo>-<hash>`) as its controller.
fn belongs_to(pod: &Pod, repo: &str) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    label("app") == Some(repo)
        && label(LABEL_MANAGED_BY) == Some(MANAGED_BY)
        && controller.is_some_and(|o| {
            o.kind == "ReplicaSet"
                && o.name
                    .strip_prefix(repo)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
}

/// What the logs of one pod are read from: the repository's pods (from the site's views) and
/// the chosen one, checked against the cluster.
struct Target {
    pods: Vec<String>,
    pod: Option<String>,
    api: Api<Pod>,
}

async fn target(
    state: &AppState,
    user: &CurrentUser,
    repo: &str,
    asked: Option<&str>,
) -> Result<Target, AppError> {
    let detail = state
        .repositories
        .repository(user.namespace(), repo)
        .await?;
    let pods: Vec<String> = detail.pods.iter().map(|p| p.name.clone()).collect();
    let api: Api<Pod> = Api::namespaced(state.repositories.client.clone(), user.namespace());
    let pod = match asked {
        Some(p) => {
            let found = api.get_opt(p).await?;
            if !found.as_ref().is_some_and(|pod| belongs_to(pod, repo)) {
                return Err(pod_not_found(repo, p));
            }
            Some(p.to_string())
        }
        None => pods.first().cloned(),
    };
    Ok(Target { pods, pod, api })
}

fn params(request: &LogRequest, follow: bool) -> LogParams {
    LogParams {
        tail_lines: Some(request.tail),
        since_seconds: request.since,
        follow,
        ..LogParams::default()
    }
}

/// The log text, or why there is none yet (the container has not started: the API server's
/// 400, such as "is waiting to start: ContainerCreating").
async fn read(
    api: &Api<Pod>,
    pod: &str,
    request: &LogRequest,
) -> Result<Result<String, String>, AppError> {
    match api.logs(pod, &params(request, false)).await {
        Ok(text) => Ok(Ok(text)),
        Err(kube::Error::Api(s)) if s.code == 400 => Ok(Err(s.message)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Serialize)]
pub struct LogsBody {
    pub repository: String,
    pub pods: Vec<String>,
    pub pod: Option<String>,
    pub tail: i64,
    pub since: Option<i64>,
    pub lines: Vec<String>,
    /// Why there are no lines yet, when the container has not started.
    pub waiting: Option<String>,
}

/// `GET /api/v1/repos/{name}/logs?pod=&tail=&since=`
pub async fn api(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<impl IntoResponse, AppError> {
    let request = validate(&query).map_err(AppError::Invalid)?;
    let t = target(&state, &user, &name, request.pod.as_deref()).await?;
    let (lines, waiting) = match &t.pod {
        Some(pod) => match read(&t.api, pod, &request).await? {
            Ok(text) => (text.lines().map(str::to_string).collect(), None),
            Err(why) => (Vec::new(), Some(why)),
        },
        None => (Vec::new(), None),
    };
    Ok(Json(LogsBody {
        repository: name,
        pods: t.pods,
        pod: t.pod,
        tail: request.tail,
        since: request.since,
        lines,
        waiting,
    }))
}

/// `GET /repos/{name}/logs/stream`: the chosen tail, then every new line until the container
/// stops or the reader goes away (chunked `text/plain`, read by the page's follow mode).
pub async fn stream(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, AppError> {
    let request = validate(&query).map_err(AppError::Invalid)?;
    let t = target(&state, &user, &name, request.pod.as_deref()).await?;
    let Some(pod) = t.pod else {
        return Err(AppError::Invalid(vec![FieldError::new(
            "pod",
            "The repository has no pods to follow yet.",
        )]));
    };
    let reader = match t.api.log_stream(&pod, &params(&request, true)).await {
        Ok(reader) => reader,
        Err(kube::Error::Api(s)) if s.code == 400 => {
            return Err(AppError::Conflict(FieldError::new("pod", s.message)));
        }
        Err(e) => return Err(e.into()),
    };
    let lines = reader
        .lines()
        .map(|line| line.map(|l| Bytes::from(format!("{l}\n"))));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}

/// `GET /repos/{name}/logs`: the page; without JavaScript it shows the tail, with it the
/// follow mode streams new lines into it.
pub async fn page_handler(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, AppError> {
    let frame = Frame::signed_in(&user, &csrf);
    let request = match validate(&query) {
        Ok(r) => r,
        Err(errors) => {
            let detail = state
                .repositories
                .repository(user.namespace(), &name)
                .await?;
            let pods: Vec<String> = detail.pods.iter().map(|p| p.name.clone()).collect();
            let view = LogsView {
                repo: &name,
                pods: &pods,
                query: &query,
                pod: query.pod.as_deref(),
                text: None,
                errors: &errors,
                follow: false,
                stream_url: None,
            };
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, view.render(&frame)).into_response());
        }
    };
    let t = target(&state, &user, &name, request.pod.as_deref()).await?;
    let text = match &t.pod {
        Some(pod) => Some(read(&t.api, pod, &request).await?),
        None => None,
    };
    // The pod name is a checked DNS-1123 subdomain and the numbers are numbers: nothing to escape.
    let stream_url = t.pod.as_deref().map(|pod| {
        let mut url = format!("/repos/{name}/logs/stream?pod={pod}&tail={}", request.tail);
        if let Some(since) = request.since {
            url.push_str(&format!("&since={since}"));
        }
        url
    });
    let view = LogsView {
        repo: &name,
        pods: &t.pods,
        query: &query,
        pod: t.pod.as_deref(),
        text,
        errors: &[],
        follow: request.follow,
        stream_url,
    };
    Ok(view.render(&frame).into_response())
}

struct LogsView<'a> {
    repo: &'a str,
    pods: &'a [String],
    query: &'a LogQuery,
    pod: Option<&'a str>,
    /// The log text, or why there is none yet; None without a pod.
    text: Option<Result<String, String>>,
    errors: &'a [FieldError],
    follow: bool,
    /// Where the follow mode reads new lines from (validated values only).
    stream_url: Option<String>,
}

impl LogsView<'_> {
    fn render(&self, frame: &Frame) -> Markup {
        let tail = self
            .query
            .tail
            .clone()
            .unwrap_or_else(|| DEFAULT_TAIL.to_string());
        let since = self.query.since.clone().unwrap_or_default();
        let stream_url = self.stream_url.as_deref();
        page(
            frame,
            &format!("Logs of {}", self.repo),
            html! {
                p { a href={ "/repos/" (self.repo) } { "← " (self.repo) } }
                h1 { "Logs of " (self.repo) }
                form.stack method="get" action={ "/repos/" (self.repo) "/logs" } {
                    label for="pod" { "Pod" }
                    @if self.pods.is_empty() {
                        p.muted { "The repository has no pods yet." }
                    } @else {
                        select #pod name="pod" {
                            @for p in self.pods {
                                option value=(p) selected[Some(p.as_str()) == self.pod] { (p) }
                            }
                        }
                    }
                    p.rule { (POD_RULE) }
                    (field_error(self.errors, "pod"))
                    label for="tail" { "Last lines" }
                    p.rule { (tail_rule()) }
                    input #tail name="tail" type="number" min="1" max=(MAX_TAIL) value=(tail);
                    (field_error(self.errors, "tail"))
                    label for="since" { "Only lines newer than (seconds)" }
                    p.rule { (since_rule()) }
                    input #since name="since" type="number" min="1" max=(MAX_SINCE) value=(since);
                    (field_error(self.errors, "since"))
                    label { input name="follow" type="checkbox" value="on" checked[self.follow]; " Follow: keep adding new lines (needs JavaScript)" }
                    button.primary type="submit" { "Show logs" }
                }
                section {
                    h2 { "Output" @if let Some(p) = self.pod { " of " code { (p) } } }
                    @match &self.text {
                        None => p.muted { "No pod to read logs from." },
                        Some(Err(why)) => div.banner.warn role="status" { "No logs yet: " (why) },
                        Some(Ok(text)) => {
                            @if text.is_empty() && !self.follow { p.muted { "No lines in this range." } }
                            // maud escapes the text: a log line is never markup.
                            pre #log-text data-log-follow=[self.follow.then_some(stream_url).flatten()] { (text) }
                        },
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pod: Option<&str>, tail: Option<&str>, since: Option<&str>) -> LogQuery {
        LogQuery {
            pod: pod.map(String::from),
            tail: tail.map(String::from),
            since: since.map(String::from),
            follow: None,
        }
    }

    #[test]
    fn inputs_are_checked_with_the_field_and_the_rule() {
        let ok = validate(&q(Some("web-7d9f-abcde"), None, None)).unwrap();
        assert_eq!((ok.tail, ok.since), (DEFAULT_TAIL, None));
        let ok = validate(&q(None, Some("5000"), Some("86400"))).unwrap();
        assert_eq!((ok.tail, ok.since), (5000, Some(86_400)));
        for (query, field) in [
            (q(Some("Web_1"), None, None), "pod"),
            (q(Some("-web"), None, None), "pod"),
            (q(None, Some("0"), None), "tail"),
            (q(None, Some("5001"), None), "tail"),
            (q(None, Some("ten"), None), "tail"),
            (q(None, None, Some("0")), "since"),
            (q(None, None, Some("86401")), "since"),
        ] {
            let errors = validate(&query).unwrap_err();
            assert_eq!(errors.len(), 1, "{query:?}");
            assert_eq!(errors[0].field, field, "{query:?}");
        }
        assert!(check_dns1123_subdomain(&"a".repeat(254)).is_err());
    }
}
