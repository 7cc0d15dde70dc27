//! The Kubernetes REST API over HTTP: routing, authentication, authorization and the verbs.

mod discovery;
mod log;
mod openapi;
mod protobuf;
mod request;
mod route;
mod table;
mod watch;

use crate::meta::Lookup;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::auth::{self, Attributes, Authenticator, User};
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::registry::{Deletion, PatchKind, Registry, WriteOptions};
use crate::resources::{ResourceType, known};
use request::{
    Params, content_type, decode_object, delete_options, field_manager, flag, list_options, params,
};
use route::{Route, parse_route};

/// Everything a request handler needs.
pub struct ApiState {
    pub registry: Arc<Registry>,
    /// The containers' output, for the pod `log` subresource.
    pub logs: Arc<crate::logs::ContainerLogs>,
    pub authenticator: Arc<Authenticator>,
    pub server_address: String,
    pub bookmark_interval: std::time::Duration,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { json_response(StatusCode::OK, &discovery::version()) }),
        )
        .route(
            "/openapi/v3",
            get(|| async { json_response(StatusCode::OK, &openapi::root()) }),
        )
        .route("/openapi/v3/{*group_version}", get(openapi_document))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .fallback(dispatch)
        .with_state(state)
}

async fn openapi_document(
    axum::extract::Path(group_version): axum::extract::Path<String>,
) -> Response {
    match openapi::document(&group_version) {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => ApiError::not_found_path(&format!("/openapi/v3/{group_version}")).into_response(),
    }
}

/// `?fieldValidation=`: Strict rejects bodies with undeclared fields, Warn (the server default)
/// drops them and says so in `Warning` headers, Ignore drops them silently.
fn validate_fields(
    params: &Params,
    rt: &ResourceType,
    obj: &mut Value,
    apply: bool,
) -> ApiResult<Vec<String>> {
    let directive = params
        .get("fieldValidation")
        .map(String::as_str)
        .unwrap_or("Warn");
    if !matches!(directive, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {directive:?}: supported values: \"Ignore\", \"Warn\", \"Strict\""
        )));
    }
    let unknown = protobuf::prune_unknown_fields(&rt.api_version(), rt.kind, obj);
    if unknown.is_empty() || directive == "Ignore" {
        return Ok(Vec::new());
    }
    let described: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    if directive == "Warn" {
        return Ok(described);
    }
    Err(ApiError::bad_request(if apply {
        unknown
            .iter()
            .map(|p| format!(".{p}: field not declared in schema"))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
            described.join(", "),
            kind = rt.kind,
            version = rt.version,
        )
    }))
}

/// Adds one `Warning: 299 - "..."` header per warning, as the API server reports dropped fields.
fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = http::HeaderValue::from_str(&format!("299 - {w:?}")) {
            response.headers_mut().append(http::header::WARNING, v);
        }
    }
    response
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn dispatch(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let result = handle(&state, &method, &uri, &headers, body).await;
    let response = result.unwrap_or_else(IntoResponse::into_response);
    tracing::debug!(%method, %uri, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "api request");
    response
}

async fn handle(
    state: &Arc<ApiState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = state
        .authenticator
        .authenticate(authorization)
        .await
        .ok_or_else(ApiError::unauthorized)?;
    let route = parse_route(uri.path())?;
    let target = match route {
        Route::CoreVersions => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::core_versions(&state.server_address),
            ));
        }
        Route::Groups => return Ok(json_response(StatusCode::OK, &discovery::group_list())),
        Route::Group(g) => return Ok(json_response(StatusCode::OK, &discovery::group(&g))),
        Route::ResourceList(g, v) => {
            return discovery::resource_list(&g, &v)
                .map(|l| json_response(StatusCode::OK, &l))
                .ok_or_else(|| ApiError::not_found_path(uri.path()));
        }
        Route::Resource(t) => t,
    };
    let params = params(uri);
    let verb = match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if flag(&params, "watch") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("POST", true) if target.subresource.is_some() => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
    };
    let rt = target.rt;
    if !rt.verbs.contains(&verb) && target.subresource.is_none() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            method,
            rt.qualified()
        )));
    }
    let name = target.name.clone().unwrap_or_default();
    let attrs = Attributes {
        verb,
        group: rt.group,
        resource: rt.plural,
        subresource: target.subresource.as_deref(),
        namespace: &target.namespace,
        name: &name,
    };
    if !auth::authorize(&state.registry, &user, &attrs) {
        return Err(forbidden(&user, &attrs, rt));
    }
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let wants_table = accept.contains("as=Table");
    let opts = WriteOptions {
        manager: field_manager(&params, headers),
        dry_run: params.get("dryRun").is_some_and(|v| v == "All"),
    };
    let ns = target.namespace.as_str();
    let registry = &state.registry;
    let sub = target.subresource.as_deref();
    match verb {
        "get" if sub == Some("log") => {
            // log.go: the options are validated before the pod is read.
            let opts = log::options(&params, &name)?;
            log::pod_log(&state.logs, &registry.get(rt, ns, &name)?, opts)
        }
        "get" => {
            let obj = registry.get(rt, ns, &name)?;
            let obj = match sub {
                Some("scale") => scale_of(rt, &obj),
                _ => obj,
            };
            Ok(if wants_table && sub.is_none() {
                json_response(StatusCode::OK, &table::table(rt, &[obj], None))
            } else {
                json_response(StatusCode::OK, &obj)
            })
        }
        "list" => {
            let list = registry.list(rt, non_empty(ns), &list_options(&params, rt)?)?;
            if wants_table {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(rt, &items, Some(&list["metadata"])),
                ));
            }
            Ok(json_response(StatusCode::OK, &list))
        }
        "watch" => watch::watch(state, rt, non_empty(ns), &params, wants_table),
        "create" if sub == Some("token") => {
            registry.get(rt, ns, &name)?;
            let token = state.authenticator.issue_service_account_token(ns, &name);
            let expiry = meta::format_rfc3339(meta::unix_now() + 3600);
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {"name": name, "namespace": ns}, "spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}, "status": {"token": token, "expirationTimestamp": expiry}}),
            ))
        }
        "create" => {
            let mut obj = decode_object(headers, &body, rt)?;
            let warnings = validate_fields(&params, rt, &mut obj, false)?;
            if rt.is("authorization.k8s.io", "selfsubjectaccessreviews") {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &self_subject_access_review(registry, &user, obj),
                ));
            }
            let created = registry.create(rt, ns, obj, &opts)?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &created),
                &warnings,
            ))
        }
        "update" => {
            let mut obj = decode_object(headers, &body, rt)?;
            if sub == Some("scale") {
                let replicas = obj.at("/spec/replicas").cloned().unwrap_or(json!(0));
                let patch = json!({"spec": {"replicas": replicas}}).to_string();
                let updated = registry.patch(
                    rt,
                    ns,
                    &name,
                    PatchKind::Merge,
                    patch.as_bytes(),
                    None,
                    &opts,
                )?;
                return Ok(json_response(StatusCode::OK, &scale_of(rt, &updated)));
            }
            let warnings = match sub {
                None => validate_fields(&params, rt, &mut obj, false)?,
                Some(_) => Vec::new(),
            };
            Ok(with_warnings(
                json_response(
                    StatusCode::OK,
                    &registry.update(rt, ns, &name, obj, sub, &opts)?,
                ),
                &warnings,
            ))
        }
        "patch" => {
            let kind = match content_type(headers).as_str() {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                    if !params.contains_key("fieldManager") {
                        return Err(ApiError::bad_request(
                            "PATCH, application/apply-patch+yaml requires fieldManager to be set",
                        ));
                    }
                    PatchKind::Apply {
                        force: flag(&params, "force"),
                    }
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            if sub == Some("scale") {
                let current = scale_of(rt, &registry.get(rt, ns, &name)?);
                let mut scaled = current;
                let patch: Value = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                json_patch::merge(&mut scaled, &patch);
                let replicas = scaled.at("/spec/replicas").cloned().unwrap_or(json!(0));
                let p = json!({"spec": {"replicas": replicas}}).to_string();
                let updated =
                    registry.patch(rt, ns, &name, PatchKind::Merge, p.as_bytes(), None, &opts)?;
                return Ok(json_response(StatusCode::OK, &scale_of(rt, &updated)));
            }
            let mut body = body;
            let mut warnings = Vec::new();
            let parsed: Option<Value> = match kind {
                PatchKind::Merge | PatchKind::Strategic if sub.is_none() => {
                    serde_json::from_slice(&body).ok()
                }
                PatchKind::Apply { .. } if sub.is_none() => serde_yaml::from_slice(&body).ok(),
                _ => None,
            };
            if let Some(original) = parsed.filter(Value::is_object) {
                let apply = matches!(kind, PatchKind::Apply { .. });
                let mut patch = original.clone();
                warnings = validate_fields(&params, rt, &mut patch, apply)?;
                if patch != original {
                    body = Bytes::from(patch.to_string());
                }
            }
            let existed = registry.try_get(rt, ns, &name).is_some();
            let patched = registry.patch(rt, ns, &name, kind, &body, sub, &opts)?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(with_warnings(json_response(code, &patched), &warnings))
        }
        "delete" => {
            let delete_opts = delete_options(&params, &body, rt)?;
            match registry.delete(rt, ns, &name, &delete_opts)? {
                Deletion::Pending(obj) => Ok(json_response(StatusCode::OK, &obj)),
                Deletion::Removed(obj) => {
                    Ok(json_response(StatusCode::OK, &success_status(rt, &obj)))
                }
            }
        }
        "deletecollection" => {
            let delete_opts = delete_options(&params, &body, rt)?;
            let list = registry.list(rt, non_empty(ns), &list_options(&params, rt)?)?;
            let mut deleted = Vec::new();
            for item in list["items"].as_array().into_iter().flatten() {
                match registry.delete(rt, meta::namespace(item), meta::name(item), &delete_opts) {
                    Ok(Deletion::Removed(o) | Deletion::Pending(o)) => deleted.push(o),
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": registry.store.revision().to_string()}, "items": deleted}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{verb} is not supported"
        ))),
    }
}

fn non_empty(ns: &str) -> Option<&str> {
    (!ns.is_empty()).then_some(ns)
}

fn forbidden(user: &User, attrs: &Attributes, rt: &ResourceType) -> ApiError {
    let resource = match attrs.subresource {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.to_string(),
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    let what = if attrs.name.is_empty() {
        rt.qualified()
    } else {
        format!("{} {:?}", rt.qualified(), attrs.name)
    };
    let mut err = ApiError::forbidden(format!(
        "{what} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        user.name, attrs.verb, rt.group
    ));
    err.details = Some(json!({"name": attrs.name, "group": rt.group, "kind": rt.plural}));
    err
}

fn success_status(rt: &ResourceType, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": meta::name(obj), "group": rt.group, "kind": rt.plural, "uid": meta::uid(obj)}
    })
}

fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let selector = obj
        .at("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let _ = rt;
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta::name(obj),
            "namespace": meta::namespace(obj),
            "uid": meta::uid(obj),
            "resourceVersion": obj.at("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            "creationTimestamp": obj.at("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
        },
        "spec": {"replicas": obj.at("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.at("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector}
    })
}

fn self_subject_access_review(registry: &Registry, user: &User, mut review: Value) -> Value {
    let ra = review
        .at("/spec/resourceAttributes")
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| {
        ra.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (verb, group, resource, subresource, namespace, name) = (
        s("verb"),
        s("group"),
        s("resource"),
        s("subresource"),
        s("namespace"),
        s("name"),
    );
    let attrs = Attributes {
        verb: &verb,
        group: &group,
        resource: &resource,
        subresource: (!subresource.is_empty()).then_some(subresource.as_str()),
        namespace: &namespace,
        name: &name,
    };
    let allowed =
        review.at("/spec/resourceAttributes").is_some() && auth::authorize(registry, user, &attrs);
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["kind"] = json!("SelfSubjectAccessReview");
    meta::metadata_mut(&mut review).insert("creationTimestamp".into(), Value::Null);
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "allowed by RBAC"})
    } else {
        json!({"allowed": false})
    };
    let _ = known::pods();
    review
}
