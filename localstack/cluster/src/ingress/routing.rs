//! Routing of the NGINX Ingress Controller: which Ingress rule and path a request matches, by Host
//! and path over Ingresses of class `nginx`, and how the `nginx.org/*` annotations rewrite it.

use serde_json::Value;

use crate::meta;

const CLASS: &str = "nginx";

/// Where a request goes after routing.
#[derive(Debug, PartialEq)]
pub struct RouteMatch {
    pub namespace: String,
    pub service: String,
    pub port: Value,
    pub upstream_path: String,
}

/// Routing outcome other than a backend.
#[derive(Debug, PartialEq)]
pub enum Routed {
    Backend(RouteMatch),
    Redirect(String),
    NoMatch,
}

fn host_matches(rule_host: Option<&str>, host: &str) -> bool {
    match rule_host {
        None | Some("") => true,
        Some(h) if h.starts_with("*.") => host
            .split_once('.')
            .is_some_and(|(_, rest)| rest == &h[2..]),
        Some(h) => h.eq_ignore_ascii_case(host),
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `serviceName=svc rewrite=/x;serviceName=other rewrite=/` → the rewrite for `service`.
fn rewrite_for<'a>(annotation: &'a str, service: &str) -> Option<&'a str> {
    annotation.split(';').find_map(|entry| {
        let mut svc = None;
        let mut rewrite = None;
        for part in entry.split_whitespace() {
            if let Some(v) = part.strip_prefix("serviceName=") {
                svc = Some(v);
            } else if let Some(v) = part.strip_prefix("rewrite=") {
                rewrite = Some(v);
            }
        }
        (svc == Some(service)).then_some(rewrite).flatten()
    })
}

/// Expands `$1`, `$2`... in a rewrite target.
fn expand(target: &str, caps: &regex_lite::Captures) -> String {
    let mut out = String::new();
    let mut chars = target.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut n = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(*d);
                chars.next();
            }
            if let Some(m) = n.parse::<usize>().ok().and_then(|i| caps.get(i)) {
                out.push_str(m.as_str());
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Picks the backend for `host` + `path` over the stored Ingresses, like NGINX's location matching:
/// regex locations in order, otherwise the longest matching prefix; Exact wins over Prefix.
pub fn route(ingresses: &[Value], host: &str, path: &str) -> Routed {
    let mut best: Option<(usize, bool, RouteMatch)> = None;
    for ing in ingresses {
        let class = ing
            .pointer("/spec/ingressClassName")
            .and_then(Value::as_str)
            .or_else(|| meta::annotation(ing, "kubernetes.io/ingress.class"));
        if class != Some(CLASS) {
            continue;
        }
        let rewrites = meta::annotation(ing, "nginx.org/rewrites");
        let regex_mode = meta::annotation(ing, "nginx.org/path-regex");
        let rewrite_target = meta::annotation(ing, "nginx.org/rewrite-target");
        for rule in ing
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !host_matches(rule.get("host").and_then(Value::as_str), host) {
                continue;
            }
            for p in rule
                .pointer("/http/paths")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let rule_path = p.get("path").and_then(Value::as_str).unwrap_or("/");
                let path_type = p
                    .get("pathType")
                    .and_then(Value::as_str)
                    .unwrap_or("ImplementationSpecific");
                let service = p
                    .pointer("/backend/service/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let port = p
                    .pointer("/backend/service/port/number")
                    .or_else(|| p.pointer("/backend/service/port/name"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let backend = |upstream_path: String| RouteMatch {
                    namespace: meta::namespace(ing).to_string(),
                    service: service.clone(),
                    port: port.clone(),
                    upstream_path,
                };
                let svc_rewrite = rewrites.and_then(|r| rewrite_for(r, &service));
                let (matched, exact, upstream) = if let Some(rewrite) = svc_rewrite {
                    // Prefix `/ns/repo/` with rewrite `/`: `/ns/repo` redirects, `/ns/repo/abc` → `/abc`.
                    let with_slash = if rule_path.ends_with('/') {
                        rule_path.to_string()
                    } else {
                        format!("{rule_path}/")
                    };
                    if path == with_slash.trim_end_matches('/') && with_slash != "/" {
                        return Routed::Redirect(with_slash);
                    }
                    match path.strip_prefix(&with_slash) {
                        Some(rest) => (
                            true,
                            false,
                            format!(
                                "{}{rest}",
                                if rewrite.ends_with('/') {
                                    rewrite.to_string()
                                } else {
                                    format!("{rewrite}/")
                                }
                            ),
                        ),
                        None => (false, false, String::new()),
                    }
                } else if let (Some(mode), true) =
                    (regex_mode, path_type == "ImplementationSpecific")
                {
                    let pattern = match mode {
                        "case_insensitive" => format!("(?i)^{rule_path}"),
                        "exact" => format!("^{rule_path}$"),
                        _ => format!("^{rule_path}"),
                    };
                    match regex_lite::Regex::new(&pattern).ok().and_then(|re| {
                        re.captures(path).map(|c| {
                            (
                                c.get(0).map_or(0, |m| m.len()),
                                rewrite_target.map(|t| expand(t, &c)),
                            )
                        })
                    }) {
                        Some((_, upstream)) => {
                            // NGINX checks regex locations in order and takes the first match.
                            return Routed::Backend(backend(
                                upstream.unwrap_or_else(|| path.to_string()),
                            ));
                        }
                        None => (false, false, String::new()),
                    }
                } else {
                    match path_type {
                        "Exact" => (path == rule_path, true, path.to_string()),
                        _ => (prefix_matches(rule_path, path), false, path.to_string()),
                    }
                };
                if !matched {
                    continue;
                }
                let better = best.as_ref().is_none_or(|(len, was_exact, _)| {
                    rule_path.len() > *len || (rule_path.len() == *len && exact && !was_exact)
                });
                if better {
                    best = Some((rule_path.len(), exact, backend(upstream)));
                }
            }
        }
    }
    best.map_or(Routed::NoMatch, |(_, _, m)| Routed::Backend(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(annotations: Value, host: &str, paths: Value) -> Value {
        json!({"metadata": {"name": "i", "namespace": "team", "annotations": annotations}, "spec": {"ingressClassName": "nginx", "rules": [{"host": host, "http": {"paths": paths}}]}})
    }

    fn backend(path: &str, kind: &str, svc: &str) -> Value {
        json!({"path": path, "pathType": kind, "backend": {"service": {"name": svc, "port": {"number": 80}}}})
    }

    fn upstream(r: Routed) -> (String, String) {
        match r {
            Routed::Backend(m) => (m.service, m.upstream_path),
            other => panic!("expected a backend, got {other:?}"),
        }
    }

    #[test]
    fn prefix_exact_and_host() {
        let ings = [ingress(
            json!({}),
            "a.example.com",
            json!([
                backend("/", "Prefix", "root"),
                backend("/api", "Prefix", "api"),
                backend("/api/exact", "Exact", "exact")
            ]),
        )];
        assert_eq!(upstream(route(&ings, "a.example.com", "/api/x")).0, "api");
        assert_eq!(upstream(route(&ings, "a.example.com", "/apix")).0, "root");
        assert_eq!(
            upstream(route(&ings, "a.example.com", "/api/exact")).0,
            "exact"
        );
        assert_eq!(
            upstream(route(&ings, "a.example.com", "/api/exact/more")).0,
            "api"
        );
        assert_eq!(route(&ings, "b.example.com", "/"), Routed::NoMatch);
    }

    #[test]
    fn regex_rewrite_target() {
        let ings = [ingress(
            json!({"nginx.org/path-regex": "case_sensitive", "nginx.org/rewrite-target": "/$2"}),
            "",
            json!([backend(
                "/team/repo(/|$)(.*)",
                "ImplementationSpecific",
                "repo"
            )]),
        )];
        assert_eq!(
            upstream(route(&ings, "x", "/team/repo/hello/world")),
            ("repo".into(), "/hello/world".into())
        );
        assert_eq!(
            upstream(route(&ings, "x", "/team/repo")),
            ("repo".into(), "/".into())
        );
        assert_eq!(route(&ings, "x", "/team/other"), Routed::NoMatch);
    }

    #[test]
    fn rewrites_annotation() {
        let ings = [ingress(
            json!({"nginx.org/rewrites": "serviceName=repo rewrite=/"}),
            "",
            json!([backend("/team/repo/", "Prefix", "repo")]),
        )];
        assert_eq!(
            upstream(route(&ings, "x", "/team/repo/abc")),
            ("repo".into(), "/abc".into())
        );
        assert_eq!(
            route(&ings, "x", "/team/repo"),
            Routed::Redirect("/team/repo/".into())
        );
    }
}
