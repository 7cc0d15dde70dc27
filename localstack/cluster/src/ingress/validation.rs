//! The checks the NGINX Ingress Controller runs on every Ingress of its class before it uses it
//! (NIC 5.5.4 `internal/k8s/validation.go` validateIngress, with the controller's defaults: OSS,
//! no App Protect, snippets and internal routes off, `-allow-empty-ingress-host=false`). A failure
//! rejects the whole Ingress with the aggregated `field.ErrorList` as the event message.
//!
//! Annotation values whose syntax is only about NGINX directives the simulator does not model
//! (sizes, LB methods, header lists, policies, app-root, proxy-redirect) are checked for presence
//! where NIC requires a value, not for syntax.

use crate::meta::Lookup;
use std::sync::LazyLock;

use regex_lite::Regex;
use serde_json::{Map, Value};

use super::annotations::{self as ann, parse_rewrite_list};

/// One apimachinery `field.Error`, already printed the way `Error()` prints it.
type FieldError = String;

fn quoted(value: &str) -> String {
    format!("{value:?}")
}

fn invalid(path: &str, value: &str, detail: &str) -> FieldError {
    format!("{path}: Invalid value: {}: {detail}", quoted(value))
}

fn required(path: &str, detail: &str) -> FieldError {
    if detail.is_empty() {
        format!("{path}: Required value")
    } else {
        format!("{path}: Required value: {detail}")
    }
}

fn forbidden(path: &str, detail: &str) -> FieldError {
    format!("{path}: Forbidden: {detail}")
}

/// `field.TooMany(path, actual, max)`.
fn too_many(path: &str, actual: usize, max: usize) -> FieldError {
    let items = if max == 1 { "item" } else { "items" };
    format!("{path}: Too many: {actual}: must have at most {max} {items}")
}

/// apimachinery `validation.RegexError(msg, fmt, examples...)`.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// `utilerrors.NewAggregate(list.ToAggregate())`.Error(): one message, or `[a, b]`.
fn aggregate(errors: Vec<FieldError>) -> Result<(), String> {
    let mut seen: Vec<FieldError> = Vec::new();
    for e in errors {
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => Ok(()),
        1 => Err(seen.remove(0)),
        _ => Err(format!("[{}]", seen.join(", "))),
    }
}

/// One step of an annotation's validation chain (`annotationValidations`); the first failing
/// step ends the chain.
#[derive(Clone, Copy)]
enum Check {
    Required,
    Bool,
    Time,
    Int,
    Uint64,
    Int64,
    Offset,
    PlusOnly,
    AppProtectOnly,
    AppProtectDosOnly,
    InternalRoutesOnly,
    Snippets,
    ServerTokens,
    AddHeaderInherit,
    MergeableType,
    PathRegex,
    Rewrites,
    RewriteTarget,
    ServiceList,
    SecretName,
    PortList,
    /// `validateRelatedAnnotation(name, validateIsBool / validateIsTrue / validateNoop)`.
    RelatedBool(&'static str),
    RelatedTrue(&'static str),
    RelatedSet(&'static str),
}

use Check::*;

/// validation.go annotationValidations (5.5.4), for the annotations whose syntax is modelled.
const ANNOTATION_CHECKS: &[(&str, &[Check])] = &[
    (
        "nginx.org/mergeable-ingress-type",
        &[Required, MergeableType],
    ),
    ("nginx.org/lb-method", &[Required]),
    ("nginx.com/health-checks", &[PlusOnly, Required, Bool]),
    (
        "nginx.com/health-checks-mandatory",
        &[
            PlusOnly,
            RelatedTrue("nginx.com/health-checks"),
            Required,
            Bool,
        ],
    ),
    (
        "nginx.com/health-checks-mandatory-queue",
        &[
            PlusOnly,
            RelatedTrue("nginx.com/health-checks-mandatory"),
            Required,
            Uint64,
        ],
    ),
    ("nginx.com/slow-start", &[PlusOnly, Required, Time]),
    ("nginx.org/server-tokens", &[ServerTokens]),
    ("nginx.org/server-snippets", &[Snippets]),
    ("nginx.org/location-snippets", &[Snippets]),
    (
        "nginx.org/add-header-inherit",
        &[Required, AddHeaderInherit],
    ),
    ("nginx.org/proxy-connect-timeout", &[Required, Time]),
    ("nginx.org/proxy-read-timeout", &[Required, Time]),
    ("nginx.org/proxy-send-timeout", &[Required, Time]),
    ("nginx.org/proxy-set-headers", &[Required]),
    ("nginx.org/add-header", &[Required]),
    ("nginx.org/client-max-body-size", &[Required, Offset]),
    ("nginx.org/client-body-buffer-size", &[Required]),
    ("nginx.org/redirect-to-https", &[Required, Bool]),
    ("ingress.kubernetes.io/ssl-redirect", &[Required, Bool]),
    ("nginx.org/ssl-redirect", &[Required, Bool]),
    ("nginx.org/proxy-buffering", &[Required, Bool]),
    ("nginx.org/hsts", &[Required, Bool]),
    (
        "nginx.org/hsts-max-age",
        &[RelatedBool("nginx.org/hsts"), Required, Int64],
    ),
    (
        "nginx.org/hsts-include-subdomains",
        &[RelatedBool("nginx.org/hsts"), Required, Bool],
    ),
    (
        "nginx.org/hsts-behind-proxy",
        &[RelatedBool("nginx.org/hsts"), Required, Bool],
    ),
    ("nginx.org/proxy-buffers", &[Required]),
    ("nginx.org/proxy-buffer-size", &[Required]),
    ("nginx.org/proxy-max-temp-file-size", &[Required]),
    ("nginx.org/proxy-next-upstream", &[Required]),
    ("nginx.org/proxy-next-upstream-timeout", &[Required, Time]),
    ("nginx.org/proxy-next-upstream-tries", &[Required, Uint64]),
    ("nginx.org/upstream-zone-size", &[Required]),
    ("nginx.org/basic-auth-secret", &[Required, SecretName]),
    (
        "nginx.org/basic-auth-realm",
        &[RelatedSet("nginx.org/basic-auth-secret")],
    ),
    ("nginx.com/jwt-realm", &[PlusOnly]),
    ("nginx.com/jwt-key", &[PlusOnly]),
    ("nginx.com/jwt-token", &[PlusOnly]),
    ("nginx.com/jwt-login-url", &[PlusOnly]),
    ("nginx.org/listen-ports", &[Required, PortList]),
    ("nginx.org/listen-ports-ssl", &[Required, PortList]),
    ("nginx.org/keepalive", &[Required, Int]),
    ("nginx.org/max-fails", &[Required, Uint64]),
    ("nginx.org/max-conns", &[Required, Uint64]),
    ("nginx.org/fail-timeout", &[Required, Time]),
    ("nginx.org/limit-req-key", &[Required]),
    ("appprotect.f5.com/app-protect-enable", &[AppProtectOnly]),
    (
        "appprotect.f5.com/app-protect-security-log-enable",
        &[AppProtectOnly],
    ),
    ("appprotect.f5.com/app-protect-policy", &[AppProtectOnly]),
    (
        "appprotect.f5.com/app-protect-security-log",
        &[AppProtectOnly],
    ),
    (
        "appprotect.f5.com/app-protect-security-log-destination",
        &[AppProtectOnly],
    ),
    (
        "appprotectdos.f5.com/app-protect-dos-resource",
        &[AppProtectDosOnly],
    ),
    ("nsm.nginx.com/internal-route", &[InternalRoutesOnly]),
    ("nginx.org/websocket-services", &[Required, ServiceList]),
    ("nginx.org/ssl-services", &[Required, ServiceList]),
    ("nginx.org/grpc-services", &[Required, ServiceList]),
    ("nginx.org/rewrites", &[Required, Rewrites]),
    ("nginx.org/rewrite-target", &[Required, RewriteTarget]),
    ("nginx.org/sticky-cookie-services", &[Required]),
    ("nginx.com/sticky-cookie-services", &[PlusOnly]),
    ("nginx.org/path-regex", &[PathRegex]),
    ("nginx.org/use-cluster-ip", &[Bool]),
    ("nginx.org/http-redirect-code", &[Required]),
    ("nginx.org/proxy-redirect-from", &[Required]),
    ("nginx.org/proxy-redirect-to", &[Required]),
    ("nginx.org/policies", &[Required]),
    ("nginx.com/policies", &[PlusOnly]),
];

/// Go's strconv.ParseBool.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The fixed expressions, compiled once: every Ingress change is validated.
static TIME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^(\d+y)??\s*(\d+M)??\s*(\d+w)??\s*(\d+d)??\s*(\d+h)??\s*(\d+m)??\s*(\d+s?)??\s*(\d+ms)??$",
    )
    .ok()
});
static OFFSET: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^\d+[kKmMgG]?$").ok());
static QUANTIFIER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^\{\d+(,\d*)?\}").ok());

/// parsing_helpers.go ParseTime's timeRegexp.
fn is_time(v: &str) -> bool {
    !v.trim().is_empty() && TIME.as_ref().is_some_and(|re| re.is_match(v))
}

/// Go's strconv.ParseInt / ParseUint (base 10, optional sign for signed).
fn is_integer(v: &str, signed: bool) -> bool {
    let digits = if signed {
        v.strip_prefix(['+', '-']).unwrap_or(v)
    } else {
        v
    };
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

struct Context<'a> {
    annotations: &'a Map<String, Value>,
    services: &'a [String],
    path: String,
    value: &'a str,
}

fn run_check(check: Check, c: &Context) -> Vec<FieldError> {
    let path = c.path.as_str();
    let value = c.value;
    let one = |e: FieldError| vec![e];
    match check {
        Required if value.is_empty() => one(required(path, "")),
        Bool if parse_bool(value).is_none() => one(invalid(path, value, "must be a boolean")),
        Time if !is_time(value) => one(invalid(path, value, "must be a time")),
        Int | Int64 if !is_integer(value, true) => one(invalid(path, value, "must be an integer")),
        Uint64 if !is_integer(value, false) => {
            one(invalid(path, value, "must be a non-negative integer"))
        }
        Offset if !OFFSET.as_ref().is_some_and(|re| re.is_match(value.trim())) => {
            one(invalid(path, value, "must be an offset"))
        }
        PlusOnly => one(forbidden(path, "annotation requires NGINX Plus")),
        AppProtectOnly => one(forbidden(path, "annotation requires AppProtect")),
        AppProtectDosOnly => one(forbidden(path, "annotation requires AppProtectDos")),
        InternalRoutesOnly => one(forbidden(
            path,
            "annotation requires Internal Routes enabled",
        )),
        Snippets => one(forbidden(
            path,
            "snippet specified but snippets feature is not enabled",
        )),
        ServerTokens if parse_bool(value).is_none() => {
            one(invalid(path, value, "must be a boolean"))
        }
        AddHeaderInherit
            if !matches!(
                value.trim().to_ascii_lowercase().as_str(),
                "on" | "off" | "merge"
            ) =>
        {
            one(invalid(
                path,
                value,
                "must be one of: 'on', 'off' or 'merge'",
            ))
        }
        MergeableType if value != "master" && value != "minion" => {
            one(invalid(path, value, "must be one of: 'master' or 'minion'"))
        }
        PathRegex if !matches!(value, "case_sensitive" | "case_insensitive" | "exact") => {
            one(invalid(
                path,
                value,
                "allowed values: 'case_sensitive', 'case_insensitive' or 'exact'",
            ))
        }
        Rewrites => match parse_rewrite_list(value) {
            Err(e) => one(invalid(path, value, &e)),
            Ok(rewrites) => {
                let unknown: Vec<&String> = rewrites
                    .keys()
                    .filter(|s| !c.services.contains(s))
                    .collect();
                if unknown.is_empty() {
                    vec![]
                } else {
                    let list: Vec<&str> = unknown.iter().map(|s| s.as_str()).collect();
                    one(invalid(
                        path,
                        value,
                        &format!("The following services were not found: {}", list.join(",")),
                    ))
                }
            }
        },
        ServiceList => {
            let unknown: Vec<&str> = value
                .split(',')
                .filter(|s| !c.services.iter().any(|k| k == s))
                .collect();
            if unknown.is_empty() {
                vec![]
            } else {
                one(invalid(
                    path,
                    value,
                    &format!(
                        "must be a comma-separated list of services. The following services were not found: {}",
                        unknown.join(",")
                    ),
                ))
            }
        }
        RewriteTarget => rewrite_target_errors(path, value),
        SecretName if !crate::validation::is_dns1123_subdomain(value) => one(invalid(
            path,
            value,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )),
        PortList
            if !value
                .split(',')
                .all(|p| p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))) =>
        {
            one(invalid(
                path,
                value,
                "must be a comma-separated list of port numbers",
            ))
        }
        RelatedBool(name) | RelatedTrue(name) | RelatedSet(name) => {
            match ann::get(c.annotations, name) {
                None => one(forbidden(
                    path,
                    &format!("related annotation {name}: must be set"),
                )),
                Some(v) => {
                    let problem = match (check, parse_bool(v)) {
                        (RelatedSet(_), _) => None,
                        (_, None) => {
                            Some(format!("strconv.ParseBool: parsing {v:?}: invalid syntax"))
                        }
                        (RelatedTrue(_), Some(false)) => Some("must be true".to_string()),
                        _ => None,
                    };
                    problem
                        .map(|p| one(forbidden(path, &format!("related annotation {name}: {p}"))))
                        .unwrap_or_default()
                }
            }
        }
        _ => vec![],
    }
}

/// validation.go validateRewriteTargetAnnotation: every problem is reported, not only the first.
fn rewrite_target_errors(path: &str, target: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if target.starts_with("http://") || target.starts_with("https://") {
        errors.push(invalid(
            path,
            target,
            "absolute URLs not allowed in rewrite target",
        ));
    }
    errors.extend(common_path_errors(path, target));
    if target.contains(|c: char| ";{}[]|<>,^`~".contains(c)) {
        errors.push(invalid(
            path,
            target,
            "NGINX configuration syntax characters (;{}) and []|<>,^`~ not allowed in rewrite target",
        ));
    }
    if target.chars().any(|c| (c as u32) < 32 || c as u32 == 127) {
        errors.push(invalid(
            path,
            target,
            "control characters not allowed in rewrite target",
        ));
    }
    errors
}

fn has_dot_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|s| s == "..")
}

/// pkg/apis/configuration/validation/common.go validatePath (used for the rewrite target).
fn common_path_errors(field: &str, path: &str) -> Vec<FieldError> {
    if path.is_empty() {
        return vec![required(field, "")];
    }
    if let Some(error) = escape_error(field, path) {
        return vec![error];
    }
    let ok = path.starts_with('/')
        && !path
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | ';' | '\\'));
    if !ok {
        let msg = regex_error(
            "must start with / and must not include any whitespace character, `{`, `}` or `;`",
            r"/[^\s{};\\]*",
            &["/", "/path", "/path/subpath-123"],
        );
        return vec![invalid(field, path, &msg)];
    }
    vec![]
}

/// The checks NIC's two validatePath functions (common.go and validation.go) both start with:
/// no protocol-relative URI, no `..` segment.
fn escape_error(field: &str, path: &str) -> Option<FieldError> {
    if path.starts_with("//") {
        return Some(invalid(
            field,
            path,
            "protocol-relative URIs not allowed, must not start with '//'",
        ));
    }
    has_dot_dot_segment(path).then(|| {
        invalid(
            field,
            path,
            "path traversal not allowed, path must not contain '..' segments",
        )
    })
}

/// `^([^"\\]|\\.)*$`: every `"` escaped, no trailing unescaped `\`.
fn is_escaped_string(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return false,
            '\\' if chars.next().is_none() => return false,
            _ => {}
        }
    }
    true
}

/// Does the path use regexp2 (Perl/.NET) syntax regex-lite lacks, so that its compile error
/// says nothing about NIC's verdict?
fn uses_unsupported_regex_syntax(path: &str) -> bool {
    ["(?=", "(?!", "(?<=", "(?<!", "(?>", "\\1", "\\2", "\\k<"]
        .iter()
        .any(|s| path.contains(s))
}

/// regexp2 (.NET syntax) reads a `{` that starts no `{n}`, `{n,}` or `{n,m}` quantifier as a
/// literal; regex-lite refuses it, so such braces are escaped before compiling.
pub(super) fn as_dotnet_braces(path: &str) -> String {
    let quantifier = QUANTIFIER.as_ref();
    let mut out = String::with_capacity(path.len());
    for (i, c) in path.char_indices() {
        let is_quantifier = quantifier.as_ref().is_some_and(|q| q.is_match(&path[i..]));
        if c == '{' && !is_quantifier {
            out.push_str("\\{");
        } else {
            out.push(c);
        }
    }
    out
}

/// validation.go validatePath (Ingress paths), with 5.5.4's illegal-keyword rule.
fn path_errors(field: &str, path: &str, path_type: Option<&str>) -> Vec<FieldError> {
    if path.is_empty() && path_type == Some("ImplementationSpecific") {
        return vec![];
    }
    if path.is_empty() {
        return vec![required(
            field,
            "path is required for Exact and Prefix PathTypes",
        )];
    }
    if let Some(error) = escape_error(field, path) {
        return vec![error];
    }
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c == ';') {
        let msg = regex_error(
            "must start with / and must not include any whitespace character or `;`",
            r"/[^\s;]*",
            &["/", "/path", "/path/subpath-123"],
        );
        return vec![invalid(field, path, &msg)];
    }
    let mut errors = Vec::new();
    // validateRegexPath: regexp2.Compile, then ValidateEscapedString.
    if let Err(e) = regex_lite::Regex::new(&as_dotnet_braces(path))
        && !uses_unsupported_regex_syntax(path)
    {
        errors.push(invalid(
            field,
            path,
            &format!("must be a valid regular expression: {e}"),
        ));
    } else if !is_escaped_string(path) {
        let msg = regex_error(
            r#"must have all '"' (double quotes) escaped and must not end with an unescaped '\' (backslash)"#,
            r#"([^"\\]|\\.)*"#,
            &["*.jpg", "^/images/image_*.png$"],
        );
        errors.push(invalid(field, path, &msg));
    }
    // validateCurlyBraces: `\{(.*?)\}` whose contents hold a letter.
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        if after[..close].chars().any(|c| c.is_ascii_alphabetic()) {
            errors.push(invalid(
                field,
                path,
                "must not include curly braces containing alphabetical characters",
            ));
            break;
        }
        rest = &after[close + 1..];
    }
    // validateIllegalKeywords, 5.5.4: regexp `^/etc/|/root|/var|\\n|\\r$` (unanchored middle
    // alternatives: any path containing "/var" or "/root" is refused).
    if path.starts_with("/etc/")
        || path.contains("/root")
        || path.contains("/var")
        || path.contains("\\n")
        || path.ends_with("\\r")
    {
        errors.push(invalid(field, path, "must not contain invalid paths"));
    }
    errors
}

/// validation.go validateBackend.
fn backend_errors(backend: &Value, field: &str) -> Vec<FieldError> {
    if backend.get("resource").is_some_and(|r| !r.is_null()) {
        return vec![forbidden(
            &format!("{field}.resource"),
            "resource backends are not supported",
        )];
    }
    if backend.get("service").is_none_or(Value::is_null) {
        return vec![required(
            &format!("{field}.service"),
            "service backend must be specified",
        )];
    }
    vec![]
}

fn rules(ing: &Value) -> Vec<Value> {
    ing.at("/spec/rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// validation.go validateIngressSpec.
fn spec_errors(ing: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(backend) = ing.at("/spec/defaultBackend").filter(|b| !b.is_null()) {
        errors.extend(backend_errors(backend, "spec.defaultBackend"));
    }
    let rules = rules(ing);
    if rules.is_empty() {
        errors.push(required("spec.rules", ""));
        return errors;
    }
    let mut hosts: Vec<&str> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        let host = rule.get("host").and_then(Value::as_str).unwrap_or("");
        if host.is_empty() {
            errors.push(required(&format!("{at}.host"), ""));
        } else if hosts.contains(&host) {
            errors.push(format!("{at}.host: Duplicate value: {}", quoted(host)));
        } else {
            hosts.push(host);
        }
        for (j, p) in rule
            .at("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let pat = format!("{at}.http.paths[{j}]");
            errors.extend(path_errors(
                &format!("{pat}.path"),
                p.get("path").and_then(Value::as_str).unwrap_or(""),
                p.get("pathType").and_then(Value::as_str),
            ));
            errors.extend(backend_errors(
                p.get("backend").unwrap_or(&Value::Null),
                &format!("{pat}.backend"),
            ));
        }
    }
    errors
}

fn path_count(rule: &Value) -> usize {
    rule.at("/http/paths")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// validation.go validateMasterSpec: one rule, no paths.
fn master_errors(ing: &Value) -> Vec<FieldError> {
    let rules = rules(ing);
    if rules.len() != 1 {
        return vec![too_many("spec.rules", rules.len(), 1)];
    }
    match path_count(&rules[0]) {
        0 => vec![],
        n => vec![too_many("spec.rules[0].http.paths", n, 0)],
    }
}

/// validation.go validateMinionSpec: no TLS, one rule with at least one path.
fn minion_errors(ing: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let tls = ing
        .at("/spec/tls")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if tls > 0 {
        errors.push(too_many("spec.tls", tls, 0));
    }
    let rules = rules(ing);
    if rules.len() != 1 {
        errors.push(too_many("spec.rules", rules.len(), 1));
        return errors;
    }
    if path_count(&rules[0]) == 0 {
        errors.push(required(
            "spec.rules[0].http.paths",
            "must include at least one path",
        ));
    }
    errors
}

/// validation.go getSpecServices.
pub fn spec_services(ing: &Value) -> Vec<String> {
    let mut services: Vec<String> = Vec::new();
    let mut add = |b: Option<&Value>| {
        if let Some(name) = b
            .and_then(|b| b.at("/service/name"))
            .and_then(Value::as_str)
            && !services.iter().any(|s| s == name)
        {
            services.push(name.to_string());
        }
    };
    add(ing.at("/spec/defaultBackend"));
    for rule in rules(ing) {
        for p in rule
            .at("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(p.get("backend"));
        }
    }
    services
}

/// validation.go validateIngress: Ok, or the message NIC puts in its `Rejected` event.
pub fn validate_ingress(ing: &Value) -> Result<(), String> {
    let annotations = ann::annotations(ing);
    let services = spec_services(ing);
    let mut errors = Vec::new();
    let mut checked: Vec<&(&str, &[Check])> = ANNOTATION_CHECKS.iter().collect();
    checked.sort_by_key(|(name, _)| *name);
    for (name, checks) in checked {
        let Some(value) = ann::get(&annotations, name) else {
            continue;
        };
        let context = Context {
            annotations: &annotations,
            services: &services,
            path: format!("annotations.{name}"),
            value,
        };
        for check in *checks {
            let found = run_check(*check, &context);
            if !found.is_empty() {
                errors.extend(found);
                break;
            }
        }
    }
    errors.extend(spec_errors(ing));
    if ann::is_master(ing) {
        errors.extend(master_errors(ing));
    } else if ann::is_minion(ing) {
        errors.extend(minion_errors(ing));
    }
    aggregate(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(annotations: Value, rules: Value) -> Value {
        json!({"metadata": {"name": "i", "namespace": "n", "annotations": annotations}, "spec": {"ingressClassName": "nginx", "rules": rules}})
    }

    fn rule(host: &str, paths: &[(&str, &str, &str)]) -> Value {
        let paths: Vec<Value> = paths
            .iter()
            .map(|(p, t, s)| json!({"path": p, "pathType": t, "backend": {"service": {"name": s, "port": {"number": 80}}}}))
            .collect();
        if paths.is_empty() {
            json!({"host": host})
        } else {
            json!({"host": host, "http": {"paths": paths}})
        }
    }

    /// validation.go validateMasterSpec / validateMinionSpec.
    #[test]
    fn master_without_paths_minion_with_one_rule_per_validate_master_and_minion_spec() {
        let master = json!({"nginx.org/mergeable-ingress-type": "master"});
        let minion = json!({"nginx.org/mergeable-ingress-type": "minion"});
        assert!(validate_ingress(&ingress(master.clone(), json!([rule("a.com", &[])]))).is_ok());
        assert_eq!(
            validate_ingress(&ingress(
                master.clone(),
                json!([rule("a.com", &[("/", "Prefix", "s")])])
            )),
            Err("spec.rules[0].http.paths: Too many: 1: must have at most 0 items".into())
        );
        assert_eq!(
            validate_ingress(&ingress(
                master,
                json!([rule("a.com", &[]), rule("b.com", &[])])
            )),
            Err("spec.rules: Too many: 2: must have at most 1 item".into())
        );
        assert_eq!(
            validate_ingress(&ingress(minion.clone(), json!([rule("a.com", &[])]))),
            Err("spec.rules[0].http.paths: Required value: must include at least one path".into())
        );
        let mut with_tls = ingress(minion, json!([rule("a.com", &[("/x", "Prefix", "s")])]));
        with_tls["spec"]["tls"] = json!([{"hosts": ["a.com"]}]);
        assert_eq!(
            validate_ingress(&with_tls),
            Err("spec.tls: Too many: 1: must have at most 0 items".into())
        );
    }

    /// validation.go validateMergeableIngressTypeAnnotation / validatePathRegex and aggregation.
    #[test]
    fn annotation_values_are_rejected_with_nic_messages() {
        let bad = ingress(
            json!({"nginx.org/mergeable-ingress-type": "boss", "nginx.org/path-regex": "yes"}),
            json!([rule("a.com", &[("/x", "Prefix", "s")])]),
        );
        assert_eq!(
            validate_ingress(&bad),
            Err(r#"[annotations.nginx.org/mergeable-ingress-type: Invalid value: "boss": must be one of: 'master' or 'minion', annotations.nginx.org/path-regex: Invalid value: "yes": allowed values: 'case_sensitive', 'case_insensitive' or 'exact']"#.into())
        );
        let rewrites = ingress(
            json!({"nginx.org/rewrites": "serviceName=other rewrite=/"}),
            json!([rule("a.com", &[("/x/", "Prefix", "s")])]),
        );
        assert_eq!(
            validate_ingress(&rewrites),
            Err(r#"annotations.nginx.org/rewrites: Invalid value: "serviceName=other rewrite=/": The following services were not found: other"#.into())
        );
        let target = ingress(
            json!({"nginx.org/rewrite-target": "/$1;"}),
            json!([rule("a.com", &[("/x", "Prefix", "s")])]),
        );
        assert!(
            validate_ingress(&target)
                .unwrap_err()
                .contains("not allowed in rewrite target")
        );
        let snippets = ingress(
            json!({"nginx.org/server-snippets": "x"}),
            json!([rule("a.com", &[("/x", "Prefix", "s")])]),
        );
        assert_eq!(
            validate_ingress(&snippets),
            Err("annotations.nginx.org/server-snippets: Forbidden: snippet specified but snippets feature is not enabled".into())
        );
    }

    /// validation.go validateIngressSpec and validatePath (5.5.4 illegal keywords included).
    #[test]
    fn hosts_and_paths_per_validate_ingress_spec() {
        assert_eq!(
            validate_ingress(&ingress(
                json!({}),
                json!([rule("", &[("/", "Prefix", "s")])])
            )),
            Err("spec.rules[0].host: Required value".into())
        );
        assert_eq!(
            validate_ingress(&ingress(json!({}), json!([]))),
            Err("spec.rules: Required value".into())
        );
        assert_eq!(
            validate_ingress(&ingress(json!({}), json!([rule("a.com", &[("/alice/variables/", "Prefix", "s")])]))),
            Err(r#"spec.rules[0].http.paths[0].path: Invalid value: "/alice/variables/": must not contain invalid paths"#.into())
        );
        assert_eq!(
            validate_ingress(&ingress(json!({}), json!([rule("a.com", &[("/a(", "ImplementationSpecific", "s")])]))).map_err(|e| e.starts_with(r#"spec.rules[0].http.paths[0].path: Invalid value: "/a(": must be a valid regular expression"#)),
            Err(true)
        );
        assert!(
            validate_ingress(&ingress(
                json!({}),
                json!([rule(
                    "a.com",
                    &[("/team/echo(/|$)(.*)", "ImplementationSpecific", "s")]
                )])
            ))
            .is_ok()
        );
        assert_eq!(
            validate_ingress(&ingress(
                json!({}),
                json!([rule("a.com", &[("/{abc}", "Prefix", "s")])])
            ))
            .unwrap_err(),
            r#"spec.rules[0].http.paths[0].path: Invalid value: "/{abc}": must not include curly braces containing alphabetical characters"#
        );
    }
}
