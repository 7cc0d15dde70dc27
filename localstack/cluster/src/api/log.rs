//! The pod `log` subresource, as the API server and the kubelet serve it together:
//! the options are decoded and validated (staging/src/k8s.io/api/core/v1 `PodLogOptions`,
//! pkg/apis/core/validation `ValidatePodLogOptions`, pkg/registry/core/pod/rest/log.go), the
//! container is chosen (pkg/registry/core/pod/strategy.go `LogLocation`), the container's state
//! decides which instance's output is read (pkg/kubelet/kubelet_pods.go
//! `validateContainerLogStatus`), and the output is read with tail, since, timestamps, limit
//! and follow as the kubelet reads a container's log (pkg/kubelet/kuberuntime/logs/logs.go
//! `ReadLogs`).

use crate::meta::Lookup;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::request::Params;
use crate::error::{ApiError, ApiResult, Cause};
use crate::logs::{ContainerLog, ContainerLogs, LogLine};
use crate::meta;

/// The decoded `PodLogOptions` of a request.
#[derive(Debug, Default)]
pub(super) struct LogOptions {
    container: Option<String>,
    follow: bool,
    previous: bool,
    since: Option<SystemTime>,
    timestamps: bool,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
}

/// Query parameters decode as the parameter codec converts them (strconv.ParseInt,
/// strconv.ParseBool, metav1.Time's RFC 3339); a value that does not convert is a 400.
fn int(params: &Params, key: &str) -> ApiResult<Option<i64>> {
    params
        .get(key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            })
        })
        .transpose()
}

fn boolean(params: &Params, key: &str) -> ApiResult<bool> {
    match params.get(key).map(String::as_str) {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!(
            "strconv.ParseBool: parsing {v:?}: invalid syntax"
        ))),
    }
}

/// Decodes and validates the options (ValidatePodLogOptions: a 422 `PodLogOptions` Invalid
/// naming each field), before the pod is looked up, as log.go's Get does.
pub(super) fn options(params: &Params, pod: &str) -> ApiResult<LogOptions> {
    let since_seconds = int(params, "sinceSeconds")?;
    let since_time = match params.get("sinceTime") {
        Some(v) => Some(parse_rfc3339(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "parsing time {v:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {v:?} as RFC 3339"
            ))
        })?),
        None => None,
    };
    let opts = LogOptions {
        container: params.get("container").filter(|c| !c.is_empty()).cloned(),
        follow: boolean(params, "follow")?,
        previous: boolean(params, "previous")?,
        since: None,
        timestamps: boolean(params, "timestamps")?,
        tail_lines: int(params, "tailLines")?,
        limit_bytes: int(params, "limitBytes")?,
    };
    let mut causes = Vec::new();
    if let Some(n) = opts.tail_lines.filter(|n| *n < 0) {
        causes.push(Cause::invalid(
            "tailLines",
            &json!(n),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = opts.limit_bytes.filter(|n| *n < 1) {
        causes.push(Cause::invalid(
            "limitBytes",
            &json!(n),
            "must be greater than 0",
        ));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => causes.push(Cause::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(n), None) if n < 1 => causes.push(Cause::invalid(
            "sinceSeconds",
            &json!(n),
            "must be greater than 0",
        )),
        _ => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_kind("PodLogOptions", "", pod, causes));
    }
    // The kubelet turns sinceSeconds into a time when it reads (server.go getContainerLogs).
    let since = match (since_seconds, since_time) {
        (Some(n), _) => SystemTime::now().checked_sub(Duration::from_secs(n.unsigned_abs())),
        (None, t) => t,
    };
    Ok(LogOptions { since, ..opts })
}

/// Every container name of the pod: init, regular and ephemeral containers.
fn container_names<'a>(pod: &'a Value, list: &str) -> Vec<&'a str> {
    pod.at(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect()
}

/// strategy.go `LogLocation`: the container asked for must exist; without one, a pod of one
/// container means that one.
fn choose_container(pod: &Value, asked: Option<&str>) -> ApiResult<String> {
    let name = meta::name(pod);
    let containers = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    let Some(asked) = asked else {
        return match containers.as_slice() {
            [only] => Ok((*only).to_string()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => {
                let mut message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                );
                if !init.is_empty() {
                    message.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                Err(ApiError::bad_request(message))
            }
        };
    };
    let ephemeral = container_names(pod, "ephemeralContainers");
    if containers
        .iter()
        .chain(&init)
        .chain(&ephemeral)
        .any(|c| *c == asked)
    {
        Ok(asked.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "container {asked} is not valid for pod {name}"
        )))
    }
}

/// kubelet_pods.go `validateContainerLogStatus`: the containerID whose output is read, by the
/// container's status, or the kubelet's error (which the API server passes on as a 400).
fn container_id(pod: &Value, container: &str, previous: bool) -> ApiResult<String> {
    let pod_name = meta::name(pod);
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|list| pod.at(&format!("/status/{list}")).and_then(Value::as_array))
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        ))
    })?;
    let id_of = |state: &Value| {
        state
            .get("containerID")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let last = status.at("/lastState/terminated");
    let state = status.get("state").cloned().unwrap_or(json!({}));
    let terminated_error = || {
        ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is terminated"
        ))
    };
    if previous {
        return match last.map(id_of).filter(|id| !id.is_empty()) {
            Some(id) => Ok(id),
            None => Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ))),
        };
    }
    if state.get("running").is_some() {
        return Ok(id_of(status));
    }
    if let Some(terminated) = state.get("terminated") {
        let id = id_of(terminated);
        if !id.is_empty() {
            return Ok(id);
        }
        return last
            .map(id_of)
            .filter(|id| !id.is_empty())
            .ok_or_else(terminated_error);
    }
    if let Some(last) = last {
        let id = id_of(last);
        return if id.is_empty() {
            Err(terminated_error())
        } else {
            Ok(id)
        };
    }
    if let Some(waiting) = state.get("waiting") {
        let reason = waiting
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let why = match reason {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            other => other.to_string(),
        };
        return Err(ApiError::bad_request(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        )));
    }
    Err(ApiError::bad_request(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
    )))
}

/// Serves `GET .../pods/{name}/log` for `pod` with validated `opts`.
pub(super) fn pod_log(logs: &ContainerLogs, pod: &Value, opts: LogOptions) -> ApiResult<Response> {
    let container = choose_container(pod, opts.container.as_deref())?;
    let scheduled = pod
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    // A pod not bound to a node has no log location: an empty answer (LogLocation returns
    // none, and the LocationStreamer streams nothing).
    if !scheduled {
        return Ok(text_response(Body::empty()));
    }
    let id = container_id(pod, &container, opts.previous)?;
    let Some(log) = logs.find(meta::uid(pod), &container, &id) else {
        // A container the simulator does not run as a process writes nothing.
        return Ok(text_response(Body::empty()));
    };
    let (lines, next, ended) = log.read_from(0);
    let mut reader = Reader {
        since: opts.since,
        timestamps: opts.timestamps,
        remaining: opts.limit_bytes.map(|n| n.unsigned_abs()),
    };
    let tail = match opts.tail_lines {
        Some(n) => lines
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
        None => 0,
    };
    let first = reader.render(&lines[tail..]);
    if !opts.follow || ended || reader.remaining == Some(0) {
        return Ok(text_response(Body::from(first)));
    }
    let rx = log.subscribe();
    let follow = Follow {
        log,
        rx,
        next,
        reader,
        first: Some(first),
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        let chunk = f.next_chunk().await?;
        Some((Ok::<_, std::io::Error>(chunk), f))
    });
    Ok(text_response(Body::from_stream(stream)))
}

fn text_response(body: Body) -> Response {
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "text/plain")],
        body,
    )
        .into_response()
}

/// Turns entries into the bytes the client gets.
struct Reader {
    since: Option<SystemTime>,
    timestamps: bool,
    /// What `limitBytes` still allows.
    remaining: Option<u64>,
}

impl Reader {
    fn render(&mut self, lines: &[LogLine]) -> Bytes {
        let mut out = Vec::new();
        for line in lines {
            if self.since.is_some_and(|since| line.at < since) {
                continue;
            }
            if self.timestamps {
                out.extend_from_slice(format_rfc3339_nano(line.at).as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&line.text);
        }
        if let Some(remaining) = self.remaining.as_mut() {
            let keep = out
                .len()
                .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
            out.truncate(keep);
            *remaining -= keep as u64;
        }
        Bytes::from(out)
    }
}

/// A `follow=true` read: what was there, then every new entry until the container's output
/// ends, the limit is reached or the client goes away (the body is dropped).
struct Follow {
    log: Arc<ContainerLog>,
    rx: tokio::sync::watch::Receiver<(u64, bool)>,
    next: u64,
    reader: Reader,
    first: Option<Bytes>,
}

impl Follow {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take()
            && !first.is_empty()
        {
            return Some(first);
        }
        loop {
            if self.reader.remaining == Some(0) {
                return None;
            }
            self.rx.borrow_and_update();
            let (lines, next, ended) = self.log.read_from(self.next);
            self.next = next;
            let chunk = self.reader.render(&lines);
            if !chunk.is_empty() {
                return Some(chunk);
            }
            if ended {
                return None;
            }
            self.rx.changed().await.ok()?;
        }
    }
}

/// Go's `time.RFC3339Nano` in UTC: the fraction without trailing zeros, none when zero.
fn format_rfc3339_nano(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let base = meta::format_rfc3339(since_epoch.as_secs());
    let fraction = format!("{:09}", since_epoch.subsec_nanos());
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        base
    } else {
        format!("{}.{fraction}Z", base.trim_end_matches('Z'))
    }
}

/// RFC 3339 (`2006-01-02T15:04:05.999999999Z07:00`): an optional fraction, `Z` or an offset.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let secs = meta::parse_rfc3339(s)?;
    let bytes = s.as_bytes();
    if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't') {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = fraction[..digits].parse::<u32>().ok()? * 10u32.pow(9 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = match rest.as_bytes().first()? {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let (h, m) = hm.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let utc = i64::try_from(secs).ok()? - offset;
    UNIX_EPOCH.checked_add(Duration::new(u64::try_from(utc).ok()?, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_nano_trims_trailing_zeros_like_go() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(format_rfc3339_nano(at), "2023-11-14T22:13:20.12Z");
        let whole = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_rfc3339_nano(whole), "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20.12Z"), Some(at));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20.12+01:00"), Some(at));
        assert_eq!(parse_rfc3339("2023-11-14 22:13:20Z"), None);
    }

    #[test]
    fn pod_log_options_are_validated_like_validate_pod_log_options() {
        let params = |pairs: &[(&str, &str)]| -> Params {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        let err = options(&params(&[("tailLines", "-1")]), "p").unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "PodLogOptions \"p\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        let err = options(&params(&[("sinceSeconds", "0"), ("limitBytes", "0")]), "p").unwrap_err();
        assert_eq!(
            err.message,
            "PodLogOptions \"p\" is invalid: [limitBytes: Invalid value: 0: must be greater than 0, sinceSeconds: Invalid value: 0: must be greater than 0]"
        );
        let err = options(
            &params(&[("sinceSeconds", "5"), ("sinceTime", "2024-01-01T00:00:00Z")]),
            "p",
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "PodLogOptions \"p\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        let err = options(&params(&[("tailLines", "ten")]), "p").unwrap_err();
        assert_eq!(err.code, 400);
        let err = options(&params(&[("follow", "yes")]), "p").unwrap_err();
        assert_eq!(err.code, 400);
        assert!(options(&params(&[("tailLines", "0"), ("follow", "true")]), "p").is_ok());
    }
}
