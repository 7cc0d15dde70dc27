//! docker compose files: read with serde-saphyr into typed structures after the Compose
//! Specification (`compose-spec/compose-spec` `spec.md`, `05-services.md`), checked, and planned as
//! one repository per service in rollout order. Pure: no cluster and no I/O here; the group's
//! deploy is in `compose_store`, its pages and API in `compose_pages`.
//!
//! Every key of the file is either deployed, or listed with its path, line and reason: as
//! `unsupported` (the deploy is refused until it is removed, since the services would not run
//! as written) or as `ignored` (left out because it makes no difference on the platform, such as
//! `restart: always` or `container_name`). Nothing is dropped without saying so.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_saphyr::Spanned;

use super::env::{self, EnvInput, VarInput};
use super::image::normalise_image;
use super::validation::{check_dns1035_label, check_route_segment};
use crate::config::QuotaPolicy;
use crate::field_error::FieldError;

/// Largest compose file read (a file of 50 services with their variables is about 20 KiB).
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Most services one file may deploy (the namespace's quota usually allows fewer pods).
pub const MAX_SERVICES: usize = 100;
/// The project name when the file has no top-level `name`.
pub const DEFAULT_PROJECT: &str = "compose";
pub const PROJECT_RULE: &str = "Lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters (the Compose Specification's project name, kept in a label).";

/// A file that cannot be read as a compose file at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Malformed {
    pub message: String,
    /// 1-based line and column of the fault, when known.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl Malformed {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

/// What a finding does to the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// A value breaks a rule: the deploy is refused until it is fixed.
    Invalid,
    /// A key the site cannot deploy as written: the deploy is refused until it is removed.
    Unsupported,
    /// Left out, because it makes no difference on the platform; the deploy goes ahead.
    Ignored,
}

impl Effect {
    pub fn blocks(self) -> bool {
        self != Self::Ignored
    }
}

/// One key or value of the file that is not deployed as written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Where in the file, as a path: `services.web.build`.
    pub path: String,
    /// The 1-based line of the key, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub effect: Effect,
    pub reason: String,
}

impl Finding {
    fn new(path: &str, line: Option<u64>, effect: Effect, reason: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            line,
            effect,
            reason: reason.into(),
        }
    }

    /// The finding as a field error of the API and the form: the path is the field.
    pub fn field_error(&self) -> FieldError {
        let at = self
            .line
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        FieldError::new(&self.path, format!("{}{at}: {}", self.path, self.reason))
    }
}

/// How a service waits for one it depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its objects exist first (compose: its container was started).
    ServiceStarted,
    /// Its pods are Ready first (readiness: a TCP connection to its port).
    ServiceHealthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    pub name: String,
    pub value: String,
}

/// One service of the file as the repository it becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedService {
    /// The service's name: the repository's, and so its Service's, by which the others reach it.
    pub name: String,
    /// The image, normalised (`:latest` added when no tag is given).
    pub image: String,
    /// The one container port, which the Service also listens on.
    pub port: i32,
    /// Whether it publishes its port: then it gets a public route.
    pub public: bool,
    /// Host ports the file publishes on, which a shared public host cannot honour.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<String>,
    pub replicas: i32,
    pub environment: Vec<Variable>,
    pub depends_on: Vec<Dependency>,
    /// 1-based place in the rollout.
    pub order: usize,
}

/// What a compose file would create, in rollout order, and everything not deployed as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub project: String,
    pub services: Vec<PlannedService>,
    pub findings: Vec<Finding>,
}

impl Plan {
    /// Whether nothing stops the deploy.
    pub fn deployable(&self) -> bool {
        !self.services.is_empty() && !self.findings.iter().any(|f| f.effect.blocks())
    }

    /// The findings that stop the deploy, as field errors.
    pub fn problems(&self) -> Vec<FieldError> {
        self.findings
            .iter()
            .filter(|f| f.effect.blocks())
            .map(Finding::field_error)
            .collect()
    }

    /// Pods the group runs once rolled out.
    pub fn pods(&self) -> i64 {
        self.services.iter().map(|s| i64::from(s.replicas)).sum()
    }
}

/// The file as YAML gives it: typed where the specification fixes the shape, each key of a
/// service with its location so that every finding can name its line.
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    name: Option<Spanned<Value>>,
    #[serde(default)]
    services: Option<Spanned<Option<RawServices>>>,
    /// Every other top-level key (`version`, `volumes`, `x-…`), each judged.
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// A service's keys, each with where it is; `null` (a service written as `web:`) is no keys.
type RawService = Option<BTreeMap<String, Spanned<Value>>>;

/// The services by name, each with where it is.
type RawServices = BTreeMap<String, Spanned<RawService>>;

/// A port in the long syntax (`05-services.md`, "ports", "Long syntax").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: NumberOrText,
    #[serde(default)]
    published: Option<NumberOrText>,
    #[serde(default)]
    host_ip: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    app_protocol: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// A `depends_on` entry in the long syntax.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LongDependency {
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    restart: Option<bool>,
    #[serde(default)]
    required: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    fn text(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

/// One `ports` or `expose` entry, read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortEntry {
    target: u16,
    published: Option<String>,
    host_ip: Option<String>,
    protocol: String,
}

/// Reads a compose file and plans it; `max_replicas` is the site's bound for one repository.
pub fn plan(text: &str, max_replicas: i32) -> Result<Plan, Malformed> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Malformed::new(format!(
            "The file is {} KiB; a compose file may have at most {} KiB.",
            text.len().div_ceil(1024),
            MAX_FILE_BYTES / 1024
        )));
    }
    if text.trim().is_empty() {
        return Err(Malformed::new(
            "The file is empty: paste a compose file with a services section.",
        ));
    }
    let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| {
        let location = e.location();
        let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
        let rendered = e.render_with_options(options);
        Malformed {
            message: format!("This is not a compose file YAML can read: {rendered}"),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
        }
    })?;
    let mut findings = Vec::new();
    let project = project_name(raw.name.as_ref(), &mut findings);
    for key in raw.other.keys() {
        if let Some((effect, reason)) = top_level_key(key) {
            findings.push(Finding::new(key, None, effect, reason));
        }
    }
    let Some(services) = raw.services else {
        return Err(Malformed::new(
            "The file has no services: a compose file names its services under services:.",
        ));
    };
    let line = Some(services.referenced.line());
    let Some(services) = services.value.filter(|s| !s.is_empty()) else {
        return Err(Malformed {
            message: "The services section is empty: name at least one service.".into(),
            line,
            column: None,
        });
    };
    if services.len() > MAX_SERVICES {
        return Err(Malformed {
            message: format!(
                "The file has {} services; one file may deploy at most {MAX_SERVICES}.",
                services.len()
            ),
            line,
            column: None,
        });
    }
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    let mut planned = Vec::new();
    for (name, service) in &services {
        let line = Some(service.referenced.line());
        planned.push(plan_service(
            name,
            line,
            service.value.as_ref(),
            &names,
            max_replicas,
            &mut findings,
        ));
    }
    let services = rollout_order(planned, &mut findings);
    Ok(Plan {
        project,
        services,
        findings,
    })
}

/// The top-level `name`, or the default; an invalid one is a finding.
fn project_name(name: Option<&Spanned<Value>>, findings: &mut Vec<Finding>) -> String {
    let Some(name) = name else {
        return DEFAULT_PROJECT.to_string();
    };
    let line = Some(name.referenced.line());
    let Value::String(text) = &name.value else {
        findings.push(Finding::new(
            "name",
            line,
            Effect::Invalid,
            format!("Write the project name as text. {PROJECT_RULE}"),
        ));
        return DEFAULT_PROJECT.to_string();
    };
    let ok = !text.is_empty()
        && text.len() <= 63
        && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !text.ends_with(['-', '_']);
    if !ok {
        findings.push(Finding::new(
            "name",
            line,
            Effect::Invalid,
            format!("{text:?} is not a project name. {PROJECT_RULE}"),
        ));
        return DEFAULT_PROJECT.to_string();
    }
    text.clone()
}

/// What becomes of a top-level key other than `name` and `services`.
fn top_level_key(key: &str) -> Option<(Effect, &'static str)> {
    use Effect::{Ignored, Unsupported};
    Some(match key {
        "version" => (Ignored, "obsolete in the Compose Specification; not needed"),
        "networks" => (
            Ignored,
            "every service of the file shares your namespace's network: each reaches the others by its service name",
        ),
        "volumes" => (
            Unsupported,
            "volumes are not supported: a repository's containers keep no storage; keep state in a database outside the cluster",
        ),
        "secrets" => (
            Unsupported,
            "compose secrets are files on your machine: remove them, then set secret variables on each repository's Variables page after the deploy",
        ),
        "configs" => (
            Unsupported,
            "compose configs are files on your machine: build them into the image or pass them as environment",
        ),
        "include" => (
            Unsupported,
            "include reads other files, which the site does not have: paste one file with every service",
        ),
        "models" => (Unsupported, "AI models are not supported"),
        k if k.starts_with("x-") => (Ignored, "an extension field: compose itself ignores it"),
        _ => (
            Unsupported,
            "not a top-level key of the Compose Specification (check the spelling)",
        ),
    })
}

/// What becomes of a service's key the site does not deploy.
fn service_key(key: &str) -> (Effect, &'static str) {
    use Effect::{Ignored, Unsupported};
    const RESOURCES: &str = "every container gets the namespace's defaults (requests 50m CPU and 64 MiB, limits 500m CPU and 256 MiB)";
    const HOST: &str = "sharing the node's or another container's namespaces is not allowed: containers are isolated from the node";
    const KERNEL: &str = "changing the container's security or kernel settings is not allowed";
    match key {
        "build" => (
            Unsupported,
            "building images is not supported: push the image to a registry and name it in image",
        ),
        "volumes" | "volumes_from" | "tmpfs" => (
            Unsupported,
            "storage is not supported: a repository's containers have no volumes; keep state in a database outside the cluster",
        ),
        "privileged" => (
            Unsupported,
            "privileged containers are not allowed: they could take over the node",
        ),
        "cap_add" | "cap_drop" => (
            Unsupported,
            "changing the container's Linux capabilities is not allowed",
        ),
        "network_mode" => (
            Unsupported,
            "network_mode is not supported: network_mode: host would give the container the node's network; every service shares your namespace's network, where each reaches the others by name",
        ),
        "pid" | "ipc" | "uts" | "userns_mode" | "cgroup" | "cgroup_parent" => (Unsupported, HOST),
        "devices" | "device_cgroup_rules" | "gpus" => (
            Unsupported,
            "the node's devices are not available to containers",
        ),
        "security_opt" | "sysctls" | "ulimits" | "isolation" | "runtime" | "storage_opt"
        | "credential_spec" | "oom_kill_disable" | "oom_score_adj" | "read_only" => {
            (Unsupported, KERNEL)
        }
        "secrets" => (
            Unsupported,
            "compose secrets are files on your machine: remove them, then set secret variables on the repository's Variables page after the deploy",
        ),
        "configs" => (
            Unsupported,
            "compose configs are files on your machine: build them into the image or pass them as environment",
        ),
        "env_file" => (
            Unsupported,
            "files on your machine cannot be read: write the variables under environment",
        ),
        "command" | "entrypoint" => (
            Unsupported,
            "a repository runs its image's own entrypoint and command: build an image whose CMD does this",
        ),
        "user" | "group_add" => (Unsupported, "the container runs as its image's user"),
        "working_dir" => (
            Unsupported,
            "the container starts in its image's working directory: set WORKDIR in the image",
        ),
        "extra_hosts" | "dns" | "dns_opt" | "dns_search" => (
            Unsupported,
            "name resolution is the cluster's: services reach each other by their names",
        ),
        "external_links" => (
            Unsupported,
            "containers outside this file cannot be linked: deploy them as services of the file",
        ),
        "extends" => (
            Unsupported,
            "extends reads another service or file: write the service out in full",
        ),
        "profiles" => (
            Unsupported,
            "a service with profiles starts only when its profile is enabled: remove the service, or its profiles to deploy it",
        ),
        "post_start" | "pre_stop" => (
            Unsupported,
            "lifecycle hooks are not supported (a stopping container gets 5 s while its route drains, then SIGTERM)",
        ),
        "mac_address" | "provider" | "models" | "use_api_socket" | "label_file" | "driver_opts"
        | "blkio_config" | "cpu_rt_runtime" | "cpu_rt_period" | "platform" => {
            (Unsupported, "not supported by the deploy site")
        }
        "container_name" => (
            Ignored,
            "pods are named by Kubernetes; the others reach this service by its service name",
        ),
        "hostname" | "domainname" => (
            Ignored,
            "a pod's hostname is its own name; the others reach this service by its service name",
        ),
        "labels" | "annotations" => (
            Ignored,
            "container labels are not carried over; the site labels the repository's objects itself",
        ),
        "healthcheck" => (
            Ignored,
            "readiness is checked by connecting to the service's port; the healthcheck command is not run",
        ),
        "logging" => (Ignored, "logs are read on the repository's Logs page"),
        "stdin_open" | "tty" | "attach" => (
            Ignored,
            "no terminal is attached; output goes to the repository's logs",
        ),
        "stop_grace_period" | "stop_signal" => (
            Ignored,
            "a stopping container gets SIGTERM and 25 s to finish, after 5 s while its route drains",
        ),
        "init" => (
            Ignored,
            "no init process is added: the image's entrypoint runs as process 1",
        ),
        "pull_policy" => (
            Ignored,
            "images tagged latest are pulled on every start, others when the node lacks them",
        ),
        "networks" => (
            Ignored,
            "every service of the file shares your namespace's network: each reaches the others by its service name",
        ),
        "develop" => (Ignored, "compose watch is for local development"),
        "mem_limit" | "mem_reservation" | "memswap_limit" | "mem_swappiness" | "cpus"
        | "cpu_shares" | "cpu_quota" | "cpu_period" | "cpuset" | "cpu_count" | "cpu_percent"
        | "pids_limit" | "shm_size" => (Ignored, RESOURCES),
        k if k.starts_with("x-") => (Ignored, "an extension field: compose itself ignores it"),
        _ => (
            Unsupported,
            "not a key of a service in the Compose Specification (check the spelling)",
        ),
    }
}

/// A text of the file with compose's `$$` escape undone; `${NAME}` and `$NAME` are read from the
/// shell or a `.env` file, which the site does not have, so they are refused.
fn literal(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some(n) if *n == '{' || *n == '_' || n.is_ascii_alphabetic() => {
                return Err("${…} is filled in from your shell or a .env file, which the site does not have: write the value itself (or $$ for a literal $)".into());
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// The text of a scalar (compose accepts numbers and booleans where it reads text).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A container port number, 1 to 65535, from a text; a range of more than one port is refused.
fn port_number(text: &str) -> Result<u16, String> {
    let text = text.trim();
    if let Some((from, to)) = text.split_once('-') {
        if from.trim() == to.trim() {
            return port_number(from);
        }
        return Err(format!(
            "{text} is a range of ports: a repository serves one port"
        ));
    }
    match text.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("{text:?} is not a port: use 1 to 65535")),
    }
}

/// A `ports` entry in the short syntax: `[[HOST_IP:]HOST:]CONTAINER[/PROTOCOL]`.
fn short_port(text: &str) -> Result<PortEntry, String> {
    let (rest, protocol) = match text.rsplit_once('/') {
        Some((rest, protocol)) => (rest, protocol.to_string()),
        None => (text, "tcp".to_string()),
    };
    // An IPv6 host address is written in brackets: `[::1]:8080:80`.
    let (host_ip, rest) = match rest.strip_prefix('[') {
        Some(after) => {
            let (ip, tail) = after
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: close the bracket of the IPv6 address"))?;
            let tail = tail
                .strip_prefix(':')
                .ok_or_else(|| format!("{text:?}: write HOST_IP:HOST_PORT:CONTAINER_PORT"))?;
            (Some(ip.to_string()), tail)
        }
        None => (None, rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (host_ip, published, container) = match parts.as_slice() {
        [container] => (host_ip, None, *container),
        [published, container] => (host_ip, Some(*published), *container),
        [ip, published, container] if host_ip.is_none() => {
            (Some((*ip).to_string()), Some(*published), *container)
        }
        _ => {
            return Err(format!(
                "{text:?} is not a port mapping: write CONTAINER, HOST:CONTAINER or IP:HOST:CONTAINER"
            ));
        }
    };
    Ok(PortEntry {
        target: port_number(container)?,
        published: published.filter(|p| !p.is_empty()).map(str::to_string),
        host_ip: host_ip.filter(|i| !i.is_empty()),
        protocol,
    })
}

/// Reads a service's keys into the repository it becomes, adding a finding for every key and
/// value not deployed as written.
fn plan_service(
    name: &str,
    line: Option<u64>,
    keys: Option<&BTreeMap<String, Spanned<Value>>>,
    names: &BTreeSet<&str>,
    max_replicas: i32,
    findings: &mut Vec<Finding>,
) -> PlannedService {
    let base = format!("services.{name}");
    let mut invalid = |path: &str, line: Option<u64>, reason: String| {
        findings.push(Finding::new(path, line, Effect::Invalid, reason));
    };
    if let Err(rule) = check_dns1035_label(name).and_then(|()| check_route_segment(name)) {
        invalid(
            &base,
            line,
            format!(
                "{name:?} cannot be a repository's name: {rule} The others reach a service by this name, so it is not renamed for you: rename it in the file, and where other services use it."
            ),
        );
    }
    let empty = BTreeMap::new();
    let keys = keys.unwrap_or(&empty);
    let mut service = PlannedService {
        name: name.to_string(),
        image: String::new(),
        port: 0,
        public: false,
        published: Vec::new(),
        replicas: 1,
        environment: Vec::new(),
        depends_on: Vec::new(),
        order: 0,
    };
    let mut ports: Vec<PortEntry> = Vec::new();
    let mut replicas: Option<(String, i64)> = None;
    let mut problems: Vec<Finding> = Vec::new();
    for (key, value) in keys {
        let path = format!("{base}.{key}");
        let at = Some(value.referenced.line());
        let mut invalid =
            |reason: String| problems.push(Finding::new(&path, at, Effect::Invalid, reason));
        match key.as_str() {
            "image" => match scalar(&value.value).map(|i| literal(&i)) {
                Some(Ok(image)) => match normalise_image(image.trim()) {
                    Ok(image) => service.image = image,
                    Err(rule) => {
                        service.image = image;
                        invalid(rule);
                    }
                },
                Some(Err(reason)) => invalid(reason),
                None => invalid("Write the image as text, such as nginx:1.27.".into()),
            },
            "ports" => match &value.value {
                Value::Array(entries) => {
                    for (i, entry) in entries.iter().enumerate() {
                        let read = match entry {
                            Value::Number(_) | Value::String(_) => scalar(entry)
                                .map(|t| literal(&t))
                                .unwrap_or_else(|| Err("Write the port as text.".into()))
                                .and_then(|t| short_port(&t)),
                            Value::Object(_) => serde_json::from_value::<LongPort>(entry.clone())
                                .map_err(|e| format!("{e}"))
                                .and_then(|p| long_port(&p, &format!("{path}[{i}]"), at, &mut problems)),
                            _ => Err("Write each port as \"8080:80\" or as a mapping with target.".into()),
                        };
                        match read {
                            Ok(p) => ports.push(p),
                            Err(reason) => problems.push(Finding::new(
                                &format!("{path}[{i}]"),
                                at,
                                Effect::Invalid,
                                reason,
                            )),
                        }
                    }
                    service.public = !entries.is_empty();
                }
                _ => invalid("Write ports as a list, such as [\"8080:80\"].".into()),
            },
            "expose" => match &value.value {
                Value::Array(entries) => {
                    for (i, entry) in entries.iter().enumerate() {
                        let read = scalar(entry)
                            .ok_or_else(|| "Write the port as a number, such as 5432.".to_string())
                            .and_then(|t| {
                                let (port, protocol) =
                                    t.split_once('/').unwrap_or((t.as_str(), "tcp"));
                                port_number(port).map(|target| PortEntry {
                                    target,
                                    published: None,
                                    host_ip: None,
                                    protocol: protocol.to_string(),
                                })
                            });
                        match read {
                            Ok(p) => ports.push(p),
                            Err(reason) => problems.push(Finding::new(
                                &format!("{path}[{i}]"),
                                at,
                                Effect::Invalid,
                                reason,
                            )),
                        }
                    }
                }
                _ => invalid("Write expose as a list of ports, such as [\"5432\"].".into()),
            },
            "environment" => {
                service.environment = environment(&value.value, &path, at, &mut problems);
            }
            "depends_on" => {
                service.depends_on = depends_on(&value.value, &path, at, names, &mut problems);
            }
            "scale" => match value.value.as_i64() {
                Some(n) => replicas = Some((path.clone(), n)),
                None => invalid("Write scale as a whole number.".into()),
            },
            "deploy" => deploy(&value.value, &path, at, &mut replicas, &mut problems),
            "restart" => match scalar(&value.value).as_deref() {
                Some("always" | "unless-stopped") => problems.push(Finding::new(
                    &path,
                    at,
                    Effect::Ignored,
                    "Kubernetes restarts a container that stops, as restart: always does",
                )),
                _ => problems.push(Finding::new(
                    &path,
                    at,
                    Effect::Unsupported,
                    "a repository's container is always restarted when it stops; only restart: always or unless-stopped can be honoured",
                )),
            },
            "links" => {
                let plain = value.value.as_array().is_some_and(|links| {
                    links
                        .iter()
                        .all(|l| l.as_str().is_some_and(|l| names.contains(l)))
                });
                if plain {
                    problems.push(Finding::new(
                        &path,
                        at,
                        Effect::Ignored,
                        "services reach each other by name without links",
                    ));
                } else {
                    problems.push(Finding::new(
                        &path,
                        at,
                        Effect::Unsupported,
                        "links with an alias (SERVICE:ALIAS) or to services outside this file are not supported: use the service's own name",
                    ));
                }
            }
            other => {
                let (effect, reason) = service_key(other);
                problems.push(Finding::new(&path, at, effect, reason));
            }
        }
    }
    if service.image.is_empty() && !keys.contains_key("image") {
        problems.push(Finding::new(
            &format!("{base}.image"),
            line,
            Effect::Invalid,
            "Name the image to run, such as nginx:1.27 (images are not built here).",
        ));
    }
    if let Some((path, n)) = replicas {
        if n >= 1 && n <= i64::from(max_replicas) {
            service.replicas = n as i32;
        } else {
            problems.push(Finding::new(
                &path,
                line,
                Effect::Invalid,
                format!("{n} replicas: use 1 to {max_replicas}."),
            ));
        }
    }
    let targets: BTreeSet<u16> = ports.iter().map(|p| p.target).collect();
    for p in &ports {
        if !p.protocol.eq_ignore_ascii_case("tcp") {
            problems.push(Finding::new(
                &format!("{base}.ports"),
                line,
                Effect::Unsupported,
                format!(
                    "port {}/{}: only TCP is served (routes carry HTTP)",
                    p.target, p.protocol
                ),
            ));
        }
        if let Some(ip) = &p.host_ip {
            problems.push(Finding::new(
                &format!("{base}.ports"),
                line,
                Effect::Ignored,
                format!("host_ip {ip}: the route is on the site's public host"),
            ));
        }
        if let Some(published) = &p.published {
            service.published.push(published.clone());
        }
    }
    match targets.len() {
        1 => service.port = i32::from(targets.first().copied().unwrap_or(80)),
        0 => problems.push(Finding::new(
            &base,
            line,
            Effect::Invalid,
            "Name the port the container listens on, under ports (to publish it) or expose (for the other services only): the others reach a service through its one Service port.",
        )),
        _ => problems.push(Finding::new(
            &format!("{base}.ports"),
            line,
            Effect::Unsupported,
            format!(
                "this service listens on the ports {}; a repository serves one port: keep the one the others and the route use",
                targets
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
    findings.extend(problems);
    service
}

/// Reads a long-syntax port; its keys the route cannot honour are findings.
fn long_port(
    port: &LongPort,
    path: &str,
    line: Option<u64>,
    findings: &mut Vec<Finding>,
) -> Result<PortEntry, String> {
    if let Some(mode) = &port.mode {
        findings.push(Finding::new(
            &format!("{path}.mode"),
            line,
            Effect::Ignored,
            format!("mode {mode}: the route is on the site's public host"),
        ));
    }
    for (key, set) in [
        ("app_protocol", port.app_protocol.is_some()),
        ("name", port.name.is_some()),
    ] {
        if set {
            findings.push(Finding::new(
                &format!("{path}.{key}"),
                line,
                Effect::Ignored,
                "the Service's one port is named http",
            ));
        }
    }
    Ok(PortEntry {
        target: port_number(&port.target.text())?,
        published: port.published.as_ref().map(NumberOrText::text),
        host_ip: port.host_ip.clone(),
        protocol: port.protocol.clone().unwrap_or_else(|| "tcp".into()),
    })
}

/// Reads `environment` (a mapping, or a list of `NAME=VALUE`), checked by the rules of the
/// site's variables.
fn environment(
    value: &Value,
    path: &str,
    line: Option<u64>,
    findings: &mut Vec<Finding>,
) -> Vec<Variable> {
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pairs.push((k.clone(), if v.is_null() { None } else { scalar(v) }));
                if !v.is_null() && scalar(v).is_none() {
                    findings.push(Finding::new(
                        &format!("{path}.{k}"),
                        line,
                        Effect::Invalid,
                        "Write the value as text.",
                    ));
                }
            }
        }
        Value::Array(list) => {
            for entry in list {
                match entry.as_str() {
                    Some(e) => match e.split_once('=') {
                        Some((k, v)) => pairs.push((k.to_string(), Some(v.to_string()))),
                        None => pairs.push((e.to_string(), None)),
                    },
                    None => findings.push(Finding::new(
                        path,
                        line,
                        Effect::Invalid,
                        "Write each variable as NAME=VALUE.",
                    )),
                }
            }
        }
        _ => findings.push(Finding::new(
            path,
            line,
            Effect::Invalid,
            "Write environment as a mapping (NAME: value) or a list of NAME=VALUE.",
        )),
    }
    let mut vars = Vec::new();
    for (name, value) in pairs {
        let at = format!("{path}.{name}");
        match value.map(|v| literal(&v)) {
            None => findings.push(Finding::new(
                &at,
                line,
                Effect::Invalid,
                format!("{name} has no value: compose would take it from your shell, which the site does not have; write the value"),
            )),
            Some(Err(reason)) => findings.push(Finding::new(&at, line, Effect::Invalid, reason)),
            Some(Ok(value)) => vars.push(VarInput { name, value }),
        }
    }
    let input = EnvInput {
        env: vars.clone(),
        secrets: Vec::new(),
    };
    if let Err(errors) = env::validate_environment(&input, &[]) {
        for e in errors {
            // `env[3].name` belongs to the fourth variable.
            let index = e
                .field
                .strip_prefix("env[")
                .and_then(|r| r.split(']').next())
                .and_then(|i| i.parse::<usize>().ok());
            let field = match index.and_then(|i| vars.get(i)) {
                Some(var) => format!("{path}.{}", var.name),
                None => path.to_string(),
            };
            findings.push(Finding::new(&field, line, Effect::Invalid, e.message));
        }
    }
    vars.into_iter()
        .map(|v| Variable {
            name: v.name,
            value: v.value,
        })
        .collect()
}

/// Reads `depends_on` (a list of names, or a mapping of names to a condition).
fn depends_on(
    value: &Value,
    path: &str,
    line: Option<u64>,
    names: &BTreeSet<&str>,
    findings: &mut Vec<Finding>,
) -> Vec<Dependency> {
    let mut entries: Vec<(String, Option<LongDependency>)> = Vec::new();
    match value {
        Value::Array(list) => {
            for entry in list {
                match entry.as_str() {
                    Some(name) => entries.push((name.to_string(), None)),
                    None => findings.push(Finding::new(
                        path,
                        line,
                        Effect::Invalid,
                        "Write each dependency as a service's name.",
                    )),
                }
            }
        }
        Value::Object(map) => {
            for (name, long) in map {
                match serde_json::from_value::<LongDependency>(long.clone()) {
                    Ok(long) => entries.push((name.clone(), Some(long))),
                    Err(e) => findings.push(Finding::new(
                        &format!("{path}.{name}"),
                        line,
                        Effect::Invalid,
                        format!("{e}"),
                    )),
                }
            }
        }
        _ => findings.push(Finding::new(
            path,
            line,
            Effect::Invalid,
            "Write depends_on as a list of service names, or a mapping of names to a condition.",
        )),
    }
    let mut dependencies = Vec::new();
    for (name, long) in entries {
        let at = format!("{path}.{name}");
        if !names.contains(name.as_str()) {
            findings.push(Finding::new(
                &at,
                line,
                Effect::Invalid,
                format!("there is no service {name:?} in this file"),
            ));
            continue;
        }
        let condition = match long.as_ref().and_then(|l| l.condition.as_deref()) {
            None | Some("service_started") => Condition::ServiceStarted,
            Some("service_healthy") => Condition::ServiceHealthy,
            Some("service_completed_successfully") => {
                findings.push(Finding::new(
                    &at,
                    line,
                    Effect::Unsupported,
                    "service_completed_successfully: a repository runs until it is deleted, so a one-off task that must finish first cannot be waited for",
                ));
                continue;
            }
            Some(other) => {
                findings.push(Finding::new(
                    &at,
                    line,
                    Effect::Invalid,
                    format!("{other:?} is not a condition: use service_started or service_healthy"),
                ));
                continue;
            }
        };
        if let Some(long) = &long {
            if long.restart.is_some() {
                findings.push(Finding::new(
                    &format!("{at}.restart"),
                    line,
                    Effect::Ignored,
                    "a dependency's redeploy does not restart this service",
                ));
            }
            if long.required == Some(false) {
                findings.push(Finding::new(
                    &format!("{at}.required"),
                    line,
                    Effect::Ignored,
                    "every service of the file is deployed, so the dependency is always there",
                ));
            }
        }
        dependencies.push(Dependency {
            service: name,
            condition,
        });
    }
    dependencies
}

/// Reads `deploy`: `replicas` and `mode: replicated` are honoured, the rest listed.
fn deploy(
    value: &Value,
    path: &str,
    line: Option<u64>,
    replicas: &mut Option<(String, i64)>,
    findings: &mut Vec<Finding>,
) {
    let Value::Object(map) = value else {
        findings.push(Finding::new(
            path,
            line,
            Effect::Invalid,
            "Write deploy as a mapping, such as {replicas: 2}.",
        ));
        return;
    };
    for (key, v) in map {
        let at = format!("{path}.{key}");
        let (effect, reason) = match key.as_str() {
            "replicas" => {
                match v.as_i64() {
                    Some(n) => {
                        if let Some((other, m)) = replicas.as_ref().filter(|(_, m)| *m != n) {
                            findings.push(Finding::new(
                                &at,
                                line,
                                Effect::Invalid,
                                format!("{n} replicas, but {other} says {m}: write one of them"),
                            ));
                        }
                        *replicas = Some((at, n));
                    }
                    None => findings.push(Finding::new(
                        &at,
                        line,
                        Effect::Invalid,
                        "Write replicas as a whole number.",
                    )),
                }
                continue;
            }
            "mode" if v.as_str() == Some("replicated") => continue,
            "mode" => (
                Effect::Unsupported,
                "only mode: replicated is supported (a global service would run one pod on every node)",
            ),
            "resources" => (
                Effect::Ignored,
                "every container gets the namespace's defaults (requests 50m CPU and 64 MiB, limits 500m CPU and 256 MiB)",
            ),
            "restart_policy" => (
                Effect::Ignored,
                "Kubernetes restarts a container that stops",
            ),
            "update_config" | "rollback_config" => (
                Effect::Ignored,
                "changes roll out one pod at a time, without downtime",
            ),
            "labels" => (
                Effect::Ignored,
                "the site labels the repository's objects itself",
            ),
            "placement" => (Effect::Ignored, "the cluster's scheduler places the pods"),
            "endpoint_mode" => (
                Effect::Ignored,
                "the Service spreads requests over the pods",
            ),
            _ => (
                Effect::Unsupported,
                "not a key of deploy in the Compose Specification",
            ),
        };
        findings.push(Finding::new(&at, line, effect, reason));
    }
}

/// Orders the services so that each comes after those it depends on (ties by name); a cycle is
/// a finding naming it, and its services go last.
fn rollout_order(
    services: Vec<PlannedService>,
    findings: &mut Vec<Finding>,
) -> Vec<PlannedService> {
    let mut waiting: BTreeMap<String, PlannedService> =
        services.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut ordered: Vec<PlannedService> = Vec::new();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    loop {
        let ready: Vec<String> = waiting
            .values()
            .filter(|s| s.depends_on.iter().all(|d| placed.contains(&d.service)))
            .map(|s| s.name.clone())
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            if let Some(s) = waiting.remove(&name) {
                placed.insert(name);
                ordered.push(s);
            }
        }
    }
    if !waiting.is_empty() {
        let cycle = find_cycle(&waiting);
        findings.push(Finding::new(
            &format!(
                "services.{}.depends_on",
                cycle.first().map_or("", String::as_str)
            ),
            None,
            Effect::Invalid,
            format!(
                "the services depend on each other in a cycle ({}), so none of them could start first",
                cycle.join(" → ")
            ),
        ));
        ordered.extend(waiting.into_values());
    }
    for (i, s) in ordered.iter_mut().enumerate() {
        s.order = i + 1;
    }
    ordered
}

/// One cycle among services that could not be ordered, as `a → b → a`.
fn find_cycle(waiting: &BTreeMap<String, PlannedService>) -> Vec<String> {
    let Some(start) = waiting.keys().next() else {
        return Vec::new();
    };
    // Every waiting service depends on another waiting one; walking those edges from any of
    // them must come back to a service already on the path.
    let mut path: Vec<String> = vec![start.clone()];
    loop {
        let current = &path[path.len() - 1];
        let next = waiting.get(current).and_then(|s| {
            s.depends_on
                .iter()
                .map(|d| &d.service)
                .find(|d| waiting.contains_key(*d))
        });
        let Some(next) = next else {
            return path;
        };
        if let Some(at) = path.iter().position(|p| p == next) {
            let mut cycle = path[at..].to_vec();
            cycle.push(next.clone());
            return cycle;
        }
        path.push(next.clone());
    }
}

/// The requests and limits of one pod (the namespace's LimitRange defaults, which every
/// repository's container states), as the quota counts them.
const POD_REQUESTS_MILLICPU: f64 = 50.0;
const POD_REQUESTS_BYTES: f64 = 64.0 * 1024.0 * 1024.0;
const POD_LIMITS_MILLICPU: f64 = 500.0;
const POD_LIMITS_BYTES: f64 = 256.0 * 1024.0 * 1024.0;

/// A Kubernetes quantity (`500m`, `2`, `3Gi`, `256Mi`, `1G`) as a number: CPU in millicores when
/// `millis`, otherwise in units (bytes).
fn quantity(text: &str, millis: bool) -> Option<f64> {
    let suffixes: [(&str, f64); 10] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("m", 1e-3),
        ("", 1.0),
    ];
    let (number, factor) = suffixes
        .iter()
        .find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f)))?;
    let value = number.parse::<f64>().ok()? * factor;
    Some(if millis { value * 1000.0 } else { value })
}

/// How many pods of the site's size the quota holds, and the tightest of its limits as
/// `name hard`.
pub fn quota_pods(policy: &QuotaPolicy) -> (i64, String) {
    let per_pod = |hard: &str, millis: bool, each: f64| {
        quantity(hard, millis).map_or(i64::MAX, |h| (h / each + 1e-9).floor() as i64)
    };
    let limits = [
        ("pods", policy.pods.to_string(), i64::from(policy.pods)),
        (
            "limits.cpu",
            policy.limits_cpu.clone(),
            per_pod(&policy.limits_cpu, true, POD_LIMITS_MILLICPU),
        ),
        (
            "limits.memory",
            policy.limits_memory.clone(),
            per_pod(&policy.limits_memory, false, POD_LIMITS_BYTES),
        ),
        (
            "requests.cpu",
            policy.requests_cpu.clone(),
            per_pod(&policy.requests_cpu, true, POD_REQUESTS_MILLICPU),
        ),
        (
            "requests.memory",
            policy.requests_memory.clone(),
            per_pod(&policy.requests_memory, false, POD_REQUESTS_BYTES),
        ),
    ];
    limits
        .into_iter()
        .min_by_key(|(_, _, pods)| *pods)
        .map_or((i64::MAX, String::new()), |(name, hard, pods)| {
            (pods, format!("{name} {hard}"))
        })
}

/// Whether `needed` more pods fit beside the `used` ones; otherwise the sentence that names the
/// quota.
pub fn check_quota(policy: &QuotaPolicy, used: i64, needed: i64) -> Result<(), String> {
    let (allowed, tightest) = quota_pods(policy);
    let free = (allowed - used).max(0);
    if needed <= free {
        return Ok(());
    }
    Err(format!(
        "Your namespace's quota (ResourceQuota kdeploy) allows {allowed} pods (its tightest limit is {tightest}); your repositories run {used}, so {free} more fit, and this file needs {needed}: remove services or replicas, or ask the platform operator for a larger quota."
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn planned(text: &str) -> Plan {
        plan(text, 5).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn finding<'p>(plan: &'p Plan, path: &str) -> &'p Finding {
        plan.findings
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no finding at {path}: {:#?}", plan.findings))
    }

    fn service<'p>(plan: &'p Plan, name: &str) -> &'p PlannedService {
        plan.services.iter().find(|s| s.name == name).unwrap()
    }

    const SHOP: &str = r#"
name: shop
services:
  web:
    image: nginx:1.27
    ports:
      - "8080:80"
    depends_on:
      - api
  api:
    image: ghcr.io/example/api
    ports:
      - target: 3000
        published: "3000"
        protocol: tcp
    environment:
      DATABASE_URL: postgres://db:5432/shop
      WORKERS: 4
      DEBUG: false
    deploy:
      replicas: 2
    depends_on:
      db:
        condition: service_healthy
  db:
    image: postgres:16
    expose:
      - "5432"
    environment:
      - POSTGRES_PASSWORD=example
      - PRICE=$$5
"#;

    #[test]
    fn a_file_becomes_repositories_in_rollout_order() {
        let plan = planned(SHOP);
        assert!(plan.deployable(), "{:#?}", plan.findings);
        assert_eq!(plan.project, "shop");
        let order: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["db", "api", "web"]);
        let web = service(&plan, "web");
        assert_eq!((web.port, web.public, web.order), (80, true, 3));
        assert_eq!(web.image, "nginx:1.27");
        assert_eq!(web.published, ["8080"]);
        let api = service(&plan, "api");
        assert_eq!((api.port, api.public, api.replicas), (3000, true, 2));
        assert_eq!(api.image, "ghcr.io/example/api:latest");
        assert_eq!(
            api.depends_on,
            [Dependency {
                service: "db".into(),
                condition: Condition::ServiceHealthy
            }]
        );
        // A mapping's order is serde_json's: sorted, or the file's when another crate of the
        // build turns on its `preserve_order`; the variables are compared as a set.
        let mut env: Vec<(&str, &str)> = api
            .environment
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_str()))
            .collect();
        env.sort_unstable();
        assert_eq!(
            env,
            [
                ("DATABASE_URL", "postgres://db:5432/shop"),
                ("DEBUG", "false"),
                ("WORKERS", "4")
            ]
        );
        let db = service(&plan, "db");
        assert_eq!((db.port, db.public, db.replicas), (5432, false, 1));
        assert_eq!(db.environment[1].value, "$5", "$$ is a literal $");
        assert_eq!(plan.pods(), 4);
    }

    /// A short-syntax port and what it reads as: target, published, host IP, protocol.
    type PortCase<'a> = (
        &'a str,
        Option<(u16, Option<&'a str>, Option<&'a str>, &'a str)>,
    );

    #[test]
    fn short_port_syntax_table() {
        let cases: &[PortCase] = &[
            ("80", Some((80, None, None, "tcp"))),
            ("8080:80", Some((80, Some("8080"), None, "tcp"))),
            (
                "127.0.0.1:8080:80",
                Some((80, Some("8080"), Some("127.0.0.1"), "tcp")),
            ),
            ("127.0.0.1::80", Some((80, None, Some("127.0.0.1"), "tcp"))),
            (
                "[::1]:8080:80/tcp",
                Some((80, Some("8080"), Some("::1"), "tcp")),
            ),
            ("53:53/udp", Some((53, Some("53"), None, "udp"))),
            ("9090-9091:8080-8081", None),
            ("0", None),
            ("70000", None),
            ("http", None),
            ("a:b:c:d", None),
        ];
        for (text, expected) in cases {
            let got = short_port(text);
            match expected {
                Some((target, published, ip, protocol)) => {
                    let p = got.unwrap_or_else(|e| panic!("{text}: {e}"));
                    assert_eq!(p.target, *target, "{text}");
                    assert_eq!(p.published.as_deref(), *published, "{text}");
                    assert_eq!(p.host_ip.as_deref(), *ip, "{text}");
                    assert_eq!(p.protocol, *protocol, "{text}");
                }
                None => assert!(got.is_err(), "{text} should be refused: {got:?}"),
            }
        }
    }

    #[test]
    fn ports_given_as_numbers_and_the_long_syntax() {
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    ports: [80]\n  b:\n    image: nginx\n    ports:\n      - target: 8080\n        host_ip: 127.0.0.1\n        mode: host\n",
        );
        assert_eq!(service(&plan, "a").port, 80);
        assert_eq!(service(&plan, "b").port, 8080);
        assert!(plan.deployable(), "{:#?}", plan.findings);
        assert_eq!(
            finding(&plan, "services.b.ports[0].mode").effect,
            Effect::Ignored
        );
        assert_eq!(finding(&plan, "services.b.ports").effect, Effect::Ignored);
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    ports:\n      - target: 80\n        colour: red\n",
        );
        let f = finding(&plan, "services.a.ports[0]");
        assert_eq!(f.effect, Effect::Invalid);
        assert!(f.reason.contains("colour"), "{f:?}");
    }

    #[test]
    fn one_port_per_service_and_udp_is_refused() {
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    ports: [\"80:80\", \"443:443\"]\n  b:\n    image: dns\n    ports: [\"53:53/udp\"]\n  c:\n    image: worker\n",
        );
        assert!(!plan.deployable());
        let f = finding(&plan, "services.a.ports");
        assert!(f.reason.contains("80, 443"), "{f:?}");
        assert_eq!(f.effect, Effect::Unsupported);
        assert!(
            finding(&plan, "services.b.ports")
                .reason
                .contains("only TCP")
        );
        assert!(
            finding(&plan, "services.c")
                .reason
                .contains("Name the port")
        );
    }

    #[test]
    fn environment_as_a_list_and_bad_names() {
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    expose: [80]\n    environment:\n      - A=1\n      - B=x=y\n      - FROM_SHELL\n      - 1BAD=2\n      - T=${TAG}\n",
        );
        let a = service(&plan, "a");
        assert_eq!(a.environment[0].value, "1");
        assert_eq!(a.environment[1].value, "x=y");
        assert!(
            finding(&plan, "services.a.environment.FROM_SHELL")
                .reason
                .contains("no value")
        );
        assert!(
            finding(&plan, "services.a.environment.1BAD")
                .reason
                .contains("digit")
        );
        assert!(
            finding(&plan, "services.a.environment.T")
                .reason
                .contains(".env")
        );
        assert!(!plan.deployable());
    }

    #[test]
    fn depends_on_lists_maps_unknowns_and_cycles() {
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    expose: [80]\n    depends_on: [b]\n  b:\n    image: nginx\n    expose: [80]\n    depends_on:\n      c: {condition: service_started}\n  c:\n    image: nginx\n    expose: [80]\n    depends_on: {a: {condition: service_healthy}}\n  d:\n    image: nginx\n    expose: [80]\n    depends_on: [ghost]\n",
        );
        let f = plan
            .findings
            .iter()
            .find(|f| f.reason.contains("cycle"))
            .expect("a cycle");
        assert!(f.reason.contains("a → b → c → a"), "{f:?}");
        assert!(
            finding(&plan, "services.d.depends_on.ghost")
                .reason
                .contains("no service")
        );
        assert!(!plan.deployable());
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    expose: [80]\n    depends_on:\n      b: {condition: service_completed_successfully}\n  b:\n    image: nginx\n    expose: [80]\n",
        );
        assert_eq!(
            finding(&plan, "services.a.depends_on.b").effect,
            Effect::Unsupported
        );
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    expose: [80]\n    depends_on:\n      b: {condition: when_ready}\n  b:\n    image: nginx\n    expose: [80]\n",
        );
        assert!(
            finding(&plan, "services.a.depends_on.b")
                .reason
                .contains("not a condition")
        );
    }

    #[test]
    fn every_unsupported_key_is_listed_with_its_path_line_and_reason() {
        let text = "services:\n  web:\n    image: nginx\n    ports: [\"80\"]\n    build: .\n    volumes: [\"./data:/data\"]\n    privileged: true\n    network_mode: host\n    cap_add: [NET_ADMIN]\n    secrets: [token]\n    configs: [conf]\n    env_file: .env\n    command: [\"nginx\", \"-g\", \"daemon off;\"]\n    entrypoint: /bin/sh\n    user: root\n    devices: [\"/dev/kvm\"]\n    pid: host\n    profiles: [debug]\n    colour: blue\n    container_name: my-web\n    restart: always\n    healthcheck: {test: [\"CMD\", \"true\"]}\n    x-note: hello\nvolumes:\n  data: {}\nversion: \"3.9\"\n";
        let plan = planned(text);
        assert!(!plan.deployable());
        for (key, effect, words) in [
            ("build", Effect::Unsupported, "push the image"),
            ("volumes", Effect::Unsupported, "storage"),
            ("privileged", Effect::Unsupported, "privileged"),
            ("network_mode", Effect::Unsupported, "host"),
            ("cap_add", Effect::Unsupported, "capabilities"),
            ("secrets", Effect::Unsupported, "secret variables"),
            ("configs", Effect::Unsupported, "configs"),
            ("env_file", Effect::Unsupported, "environment"),
            ("command", Effect::Unsupported, "CMD"),
            ("entrypoint", Effect::Unsupported, "entrypoint"),
            ("user", Effect::Unsupported, "user"),
            ("devices", Effect::Unsupported, "devices"),
            ("pid", Effect::Unsupported, "namespaces"),
            ("profiles", Effect::Unsupported, "profile"),
            ("colour", Effect::Unsupported, "spelling"),
            ("container_name", Effect::Ignored, "service name"),
            ("restart", Effect::Ignored, "restarts"),
            ("healthcheck", Effect::Ignored, "port"),
            ("x-note", Effect::Ignored, "extension"),
        ] {
            let f = finding(&plan, &format!("services.web.{key}"));
            assert_eq!(f.effect, effect, "{f:?}");
            assert!(f.reason.contains(words), "{key}: {}", f.reason);
            assert!(f.line.is_some_and(|l| l > 2), "{key}: {f:?}");
        }
        assert_eq!(finding(&plan, "services.web.build").line, Some(5));
        assert_eq!(finding(&plan, "volumes").effect, Effect::Unsupported);
        assert_eq!(finding(&plan, "version").effect, Effect::Ignored);
        // The problems name their key and line, as the API returns them.
        let problems = plan.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.field == "services.web.build" && p.message.contains("line 5")),
            "{problems:?}"
        );
        assert!(!problems.iter().any(|p| p.field == "version"));
    }

    #[test]
    fn deploy_keys_and_replicas() {
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    expose: [80]\n    deploy:\n      replicas: 3\n      mode: replicated\n      resources: {limits: {cpus: \"2\"}}\n      restart_policy: {condition: any}\n",
        );
        assert!(plan.deployable(), "{:#?}", plan.findings);
        assert_eq!(service(&plan, "a").replicas, 3);
        assert_eq!(
            finding(&plan, "services.a.deploy.resources").effect,
            Effect::Ignored
        );
        let plan = planned(
            "services:\n  a:\n    image: nginx\n    expose: [80]\n    deploy: {replicas: 9, mode: global}\n  b:\n    image: nginx\n    expose: [80]\n    deploy: {replicas: 0}\n",
        );
        assert!(
            finding(&plan, "services.a.deploy.replicas")
                .reason
                .contains("1 to 5")
        );
        assert_eq!(
            finding(&plan, "services.a.deploy.mode").effect,
            Effect::Unsupported
        );
        assert!(
            finding(&plan, "services.b.deploy.replicas")
                .reason
                .contains("0 replicas")
        );
    }

    #[test]
    fn service_names_must_be_repository_names() {
        let plan = planned(
            "services:\n  my_db:\n    image: postgres\n    expose: [5432]\n  Web:\n    image: nginx\n    ports: [\"80\"]\n  variables:\n    image: nginx\n    expose: [80]\n",
        );
        assert!(
            finding(&plan, "services.my_db")
                .reason
                .contains("'_' is not allowed")
        );
        assert!(finding(&plan, "services.Web").reason.contains("lowercase"));
        assert!(
            finding(&plan, "services.variables")
                .reason
                .contains("NGINX")
        );
        assert!(
            finding(&plan, "services.my_db")
                .reason
                .contains("not renamed")
        );
    }

    #[test]
    fn images_and_missing_images() {
        let plan = planned(
            "services:\n  a:\n    build: .\n    expose: [80]\n  b:\n    image: \"ngi nx\"\n    expose: [80]\n  c:\n    image: \"nginx:${TAG:-1}\"\n    expose: [80]\n",
        );
        assert!(
            finding(&plan, "services.a.image")
                .reason
                .contains("Name the image")
        );
        assert_eq!(finding(&plan, "services.b.image").effect, Effect::Invalid);
        assert!(finding(&plan, "services.c.image").reason.contains(".env"));
    }

    #[test]
    fn malformed_files_say_where() {
        let e = plan("services:\n  web:\n    image: nginx\n   ports: [80\n", 5).unwrap_err();
        assert!(e.message.contains("line 4, column 4"), "{e:?}");
        assert_eq!((e.line, e.column), (Some(4), Some(4)));
        assert!(e.line.is_some(), "{e:?}");
        assert!(e.message.contains("YAML"), "{e:?}");
        let e = plan("services:\n  web: [1, 2]\n", 5).unwrap_err();
        assert_eq!(e.line, Some(2), "{e:?}");
        for (text, words) in [
            ("", "empty"),
            ("name: x\n", "no services"),
            ("services: {}\n", "empty"),
            ("- a\n- b\n", "YAML"),
            ("services:\n  a: {image: x}\n  a: {image: y}\n", "YAML"),
        ] {
            let e = plan(text, 5).unwrap_err();
            assert!(e.message.contains(words), "{text:?}: {e:?}");
        }
        let big = format!("# {}\nservices: {{}}\n", "x".repeat(MAX_FILE_BYTES));
        assert!(plan(&big, 5).unwrap_err().message.contains("256 KiB"));
    }

    #[test]
    fn the_project_name_follows_the_specification() {
        assert_eq!(
            planned("services:\n  a: {image: nginx, expose: [80]}\n").project,
            DEFAULT_PROJECT
        );
        let plan = planned("name: My Shop\nservices:\n  a: {image: nginx, expose: [80]}\n");
        assert_eq!(finding(&plan, "name").effect, Effect::Invalid);
    }

    fn many(n: usize) -> String {
        let mut text = String::from("name: many\nservices:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  svc{i}:\n    image: nginx:1.27\n    expose: [\"80\"]\n    environment:\n      INDEX: \"{i}\"\n"
            ));
            if i > 0 {
                text.push_str(&format!("    depends_on: [svc{}]\n", i - 1));
            }
        }
        text
    }

    #[test]
    fn fifty_services_are_planned_and_more_than_the_limit_refused() {
        let fifty = planned(&many(50));
        assert!(fifty.deployable(), "{:#?}", fifty.findings);
        assert_eq!(fifty.services.len(), 50);
        assert_eq!(fifty.services[49].name, "svc49");
        assert_eq!(fifty.pods(), 50);
        let e = plan(&many(MAX_SERVICES + 1), 5).unwrap_err();
        assert!(e.message.contains("at most 100"), "{e:?}");
    }

    #[test]
    fn the_quota_names_its_tightest_limit() {
        let policy = QuotaPolicy::default();
        assert_eq!(quota_pods(&policy), (20, "pods 20".to_string()));
        assert!(check_quota(&policy, 2, 18).is_ok());
        let refused = check_quota(&policy, 2, 50).unwrap_err();
        assert!(refused.contains("allows 20 pods"), "{refused}");
        assert!(refused.contains("needs 50"), "{refused}");
        let memory = QuotaPolicy {
            pods: 100,
            limits_memory: "1Gi".into(),
            ..QuotaPolicy::default()
        };
        assert_eq!(quota_pods(&memory), (4, "limits.memory 1Gi".to_string()));
        assert_eq!(quantity("500m", true), Some(500.0));
        assert_eq!(quantity("2", true), Some(2000.0));
        assert_eq!(quantity("3Gi", false), Some(3.0 * 1024.0 * 1024.0 * 1024.0));
    }
}
