//! The NGINX configuration NIC generates from the hosts it assigned: one `server` per owned host,
//! its `location`s in the order NIC writes them (NIC 5.5.4 `internal/configs/ingress.go`
//! generateNginxCfg / generateNginxCfgForMergeableIngresses, createLocation, generateIngressPath;
//! `internal/configs/version1/template_helper.go` makeLocationPath / makeRewritePattern;
//! `nginx.ingress.tmpl`: `rewrite <pattern> <target> break;` and `proxy_pass http://<upstream><rewrite>;`).

use crate::meta::Lookup;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::annotations::{self as ann, PATH_REGEX, REWRITES, parse_rewrite_list};
use super::configuration::{IngressConfiguration, rule_host};
use crate::meta;

/// How an nginx `location` matches the normalized request URI.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// `location /path` (Prefix and ImplementationSpecific paths).
    Prefix(String),
    /// `location = /path` (Exact paths, or `path-regex: exact`).
    Exact(String),
    /// `location ~ "^..."` / `location ~* "^..."`.
    Regex(regex_lite::Regex),
}

/// Where a location proxies to: NIC's upstream for one Service port of one Ingress.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
    /// `backend.service.port`: `{"number": n}` or `{"name": "..."}`.
    pub port: Value,
    /// getNameForUpstream: `namespace-ingress-host-service-port`.
    pub upstream: String,
}

#[derive(Debug, Clone)]
pub struct Location {
    pub matcher: Matcher,
    /// `proxy_pass` URI part from `nginx.org/rewrites` (replaces the matched location name).
    pub proxy_uri: Option<String>,
    /// `rewrite <pattern> <target> break;` from `nginx.org/rewrite-target`.
    pub rewrite: Option<(regex_lite::Regex, String)>,
    pub backend: Backend,
}

impl Location {
    /// The location's name as nginx keeps it (`clcf->name`), for auto-redirects and proxy_pass.
    pub fn name(&self) -> Option<&str> {
        match &self.matcher {
            Matcher::Prefix(n) | Matcher::Exact(n) => Some(n),
            Matcher::Regex(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Server {
    pub locations: Vec<Location>,
}

/// All `server` blocks by `server_name`.
#[derive(Debug, Clone, Default)]
pub struct NginxConfig {
    pub servers: BTreeMap<String, Server>,
}

impl NginxConfig {
    /// nginx server_name selection: the exact name, else the longest `*.` wildcard that matches
    /// (any depth, as nginx does), else the default server.
    pub fn server(&self, host: &str) -> Option<&Server> {
        if let Some(s) = self.servers.get(host) {
            return Some(s);
        }
        self.servers
            .iter()
            .filter(|(name, _)| {
                name.strip_prefix('*')
                    .is_some_and(|suffix| suffix.starts_with('.') && host.ends_with(suffix))
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, s)| s)
    }
}

/// generateIngressPath + pathOrDefault: `= /path` for Exact, the path itself otherwise.
fn location_path(path: &Value) -> String {
    let raw = path.get("path").and_then(Value::as_str).unwrap_or("");
    let raw = if raw.is_empty() { "/" } else { raw };
    match path.get("pathType").and_then(Value::as_str) {
        Some("Exact") => format!("= {raw}"),
        _ => raw.to_string(),
    }
}

/// Compiles a PCRE-style pattern; a `{` that starts no quantifier is a literal, as in PCRE.
fn compile(pattern: &str) -> Option<regex_lite::Regex> {
    match regex_lite::Regex::new(&super::validation::as_dotnet_braces(pattern)) {
        Ok(re) => Some(re),
        Err(e) => {
            tracing::warn!(pattern, error = %e, "nginx would refuse this regex; location skipped");
            None
        }
    }
}

/// makeLocationPath: the `location` a path becomes, given the path-regex mode that applies.
fn matcher(loc_path: &str, regex_mode: Option<&str>) -> Option<Matcher> {
    Some(match regex_mode {
        Some("case_sensitive") => Matcher::Regex(compile(&format!("^{loc_path}"))?),
        Some("case_insensitive") => Matcher::Regex(compile(&format!("(?i)^{loc_path}"))?),
        Some("exact") => Matcher::Exact(loc_path.to_string()),
        _ => match loc_path.strip_prefix("= ") {
            Some(exact) => Matcher::Exact(exact.to_string()),
            None => Matcher::Prefix(loc_path.to_string()),
        },
    })
}

/// makeRewritePattern: the regex of `rewrite ... break;` (unanchored without path-regex).
fn rewrite_pattern(loc_path: &str, regex_mode: Option<&str>) -> String {
    match regex_mode {
        Some("case_sensitive") => format!("^{loc_path}"),
        Some("case_insensitive") => format!("(?i)^{loc_path}"),
        _ => loc_path.to_string(),
    }
}

/// What an Ingress contributes to its locations: its (filtered) annotations.
struct Source<'a> {
    ingress: &'a Value,
    annotations: Map<String, Value>,
    /// The path-regex mode of the location itself (makeLocationPath).
    location_regex: Option<String>,
    /// The path-regex mode of its rewrite (makeRewritePattern: a minion without one falls back
    /// to the master's).
    rewrite_regex: Option<String>,
}

fn location(source: &Source, host: &str, path: &Value, backend_value: &Value) -> Option<Location> {
    let service = backend_value
        .at("/service/name")
        .and_then(Value::as_str)?
        .to_string();
    let port = backend_value
        .at("/service/port")
        .cloned()
        .unwrap_or(Value::Null);
    let port_text = port
        .get("number")
        .map(|n| n.to_string())
        .or_else(|| port.get("name").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let loc_path = location_path(path);
    let rewrites = ann::get(&source.annotations, REWRITES)
        .and_then(|r| parse_rewrite_list(r).ok())
        .unwrap_or_default();
    let (target, _) = ann::rewrite_target(&source.annotations);
    let rewrite = match target {
        Some(t) => Some((
            compile(&rewrite_pattern(&loc_path, source.rewrite_regex.as_deref()))?,
            t,
        )),
        None => None,
    };
    Some(Location {
        matcher: matcher(&loc_path, source.location_regex.as_deref())?,
        proxy_uri: rewrites.get(&service).cloned(),
        rewrite,
        backend: Backend {
            namespace: meta::namespace(source.ingress).to_string(),
            upstream: format!(
                "{}-{}-{host}-{service}-{port_text}",
                meta::namespace(source.ingress),
                meta::name(source.ingress)
            ),
            service,
            port,
        },
    })
}

fn paths_of(rule: &Value) -> Vec<Value> {
    rule.at("/http/paths")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// generateNginxCfg for a regular Ingress: its paths, then the default backend as `/` when no
/// path is `/`.
fn regular_server(resource: &IngressConfiguration, host: &str) -> Server {
    let annotations = ann::annotations(&resource.ingress);
    let regex = ann::get(&annotations, PATH_REGEX).map(str::to_string);
    let source = Source {
        ingress: &resource.ingress,
        location_regex: regex.clone(),
        rewrite_regex: regex,
        annotations,
    };
    let mut locations = Vec::new();
    let rules = resource
        .ingress
        .at("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut root = false;
    for rule in rules.iter().filter(|r| rule_host(r) == host) {
        for p in paths_of(rule) {
            root |= location_path(&p) == "/";
            if let Some(loc) = location(&source, host, &p, p.get("backend").unwrap_or(&Value::Null))
            {
                locations.push(loc);
            }
        }
    }
    if let Some(default) = resource
        .ingress
        .at("/spec/defaultBackend")
        .filter(|_| !root)
    {
        let root_path = serde_json::json!({"path": "/", "pathType": "Prefix"});
        // The default backend's upstream is named for the empty host.
        if let Some(loc) = location(&source, "", &root_path, default) {
            locations.push(loc);
        }
    }
    Server { locations }
}

/// generateNginxCfgForMergeableIngresses: the master's own locations are dropped; each minion's
/// valid paths follow, minions in `namespace/name` order.
fn master_server(resource: &IngressConfiguration, host: &str) -> Server {
    let master_regex =
        ann::get(&ann::annotations(&resource.ingress), PATH_REGEX).map(str::to_string);
    let mut locations = Vec::new();
    for minion in &resource.minions {
        let annotations = ann::effective_annotations(&minion.ingress, false, true);
        let own = ann::get(&annotations, PATH_REGEX).map(str::to_string);
        let source = Source {
            ingress: &minion.ingress,
            location_regex: own.clone(),
            rewrite_regex: own.or_else(|| master_regex.clone()),
            annotations,
        };
        let rules = minion
            .ingress
            .at("/spec/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for p in rules.first().map(paths_of).unwrap_or_default() {
            let raw = p.get("path").and_then(Value::as_str).unwrap_or("");
            if !minion.valid_paths.get(raw).copied().unwrap_or(false) {
                continue;
            }
            if let Some(loc) = location(&source, host, &p, p.get("backend").unwrap_or(&Value::Null))
            {
                locations.push(loc);
            }
        }
    }
    Server { locations }
}

/// The configuration NGINX runs for the hosts the controller assigned.
pub fn build(hosts: &BTreeMap<String, Arc<IngressConfiguration>>) -> NginxConfig {
    let servers = hosts
        .iter()
        .map(|(host, resource)| {
            let server = if resource.is_master {
                master_server(resource, host)
            } else {
                regular_server(resource, host)
            };
            (host.clone(), server)
        })
        .collect();
    NginxConfig { servers }
}
