//! The NGINX Ingress Controller's reading of an Ingress's class and `nginx.org/*` annotations
//! (NIC 5.5.4, the image the platform installs): `internal/k8s/utils.go` (isMaster/isMinion),
//! `internal/k8s/controller.go` (HasCorrectIngressClass), `internal/configs/annotations.go`
//! (masterDenylist, minionDenylist, getRewrites, getRewriteTarget) and
//! `internal/configs/parsing_helpers.go` (ParseRewriteList).

use crate::meta::Lookup;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::meta;

/// `-ingress-class` (default `nginx`), the class of the IngressClass the platform installs.
pub const CLASS: &str = "nginx";
pub const MERGEABLE_TYPE: &str = "nginx.org/mergeable-ingress-type";
pub const REWRITES: &str = "nginx.org/rewrites";
pub const REWRITE_TARGET: &str = "nginx.org/rewrite-target";
pub const PATH_REGEX: &str = "nginx.org/path-regex";
pub const SSL_REDIRECT_DEPRECATED: &str = "ingress.kubernetes.io/ssl-redirect";
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// annotations.go masterDenylist: removed from a master before its config is generated.
const MASTER_DENYLIST: &[&str] = &[
    "nginx.org/rewrites",
    "nginx.org/ssl-services",
    "nginx.org/grpc-services",
    "nginx.org/websocket-services",
    "nginx.org/sticky-cookie-services",
    "nginx.com/sticky-cookie-services",
    "nginx.com/health-checks",
    "nginx.com/health-checks-mandatory",
    "nginx.com/health-checks-mandatory-queue",
    "nginx.org/use-cluster-ip",
];

/// annotations.go minionDenylist: removed from a minion before its config is generated.
const MINION_DENYLIST: &[&str] = &[
    "nginx.org/proxy-hide-headers",
    "nginx.org/proxy-pass-headers",
    "nginx.org/redirect-to-https",
    "ingress.kubernetes.io/ssl-redirect",
    "nginx.org/ssl-redirect",
    "nginx.org/http-redirect-code",
    "nginx.org/hsts",
    "nginx.org/hsts-max-age",
    "nginx.org/hsts-include-subdomains",
    "nginx.org/server-tokens",
    "nginx.org/listen-ports",
    "nginx.org/listen-ports-ssl",
    "nginx.org/server-snippets",
    "nginx.org/ssl-ciphers",
    "nginx.org/ssl-prefer-server-ciphers",
    "nginx.org/app-root",
    "appprotect.f5.com/app_protect_enable",
    "appprotect.f5.com/app_protect_policy",
    "appprotect.f5.com/app_protect_security_log_enable",
    "appprotect.f5.com/app_protect_security_log",
    "appprotectdos.f5.com/app-protect-dos-resource",
];

pub fn annotations(ing: &Value) -> Map<String, Value> {
    ing.at("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// utils.go isMaster.
pub fn is_master(ing: &Value) -> bool {
    meta::annotation(ing, MERGEABLE_TYPE) == Some("master")
}

/// utils.go isMinion.
pub fn is_minion(ing: &Value) -> bool {
    meta::annotation(ing, MERGEABLE_TYPE) == Some("minion")
}

/// controller.go HasCorrectIngressClass: the deprecated `kubernetes.io/ingress.class` annotation,
/// when set, wins over `spec.ingressClassName`; an Ingress with neither is not ours.
pub fn has_correct_class(ing: &Value) -> bool {
    let class = match meta::annotation(ing, CLASS_ANNOTATION) {
        Some(c) if !c.is_empty() => Some(c),
        _ => ing.at("/spec/ingressClassName").and_then(Value::as_str),
    };
    class == Some(CLASS)
}

/// The annotations a master or minion keeps after ingress.go's filterMasterAnnotations /
/// filterMinionAnnotations: denylisted ones are dropped, not rejected.
pub fn effective_annotations(ing: &Value, as_master: bool, as_minion: bool) -> Map<String, Value> {
    let mut kept = annotations(ing);
    for k in denylisted(ing, as_master, as_minion) {
        kept.remove(&k);
    }
    kept
}

/// The denylisted annotations an Ingress carries, which NIC drops with an error log.
pub fn denylisted(ing: &Value, as_master: bool, as_minion: bool) -> Vec<String> {
    let denylist: &[&str] = match (as_master, as_minion) {
        (true, _) => MASTER_DENYLIST,
        (_, true) => MINION_DENYLIST,
        _ => &[],
    };
    annotations(ing)
        .keys()
        .filter(|k| denylist.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// NIC's error log for dropped annotations (generateNginxCfgForMergeableIngresses).
pub fn log_denylisted(ing: &Value, as_master: bool) {
    let removed = denylisted(ing, as_master, !as_master);
    if !removed.is_empty() {
        let kind = if as_master { "master" } else { "minion" };
        tracing::error!(
            "Ingress Resource {}/{} with the annotation 'nginx.org/mergeable-ingress-type' set to '{kind}' cannot contain the '{}' annotation(s). They will be ignored",
            meta::namespace(ing),
            meta::name(ing),
            removed.join(",")
        );
    }
}

pub fn get<'a>(annotations: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    annotations.get(key).and_then(Value::as_str)
}

/// parsing_helpers.go ParseRewriteList: `serviceName=svc rewrite=/path;...`, service → rewrite.
pub fn parse_rewrite_list(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut rewrites = BTreeMap::new();
    for part in value.split(';') {
        let (service, rewrite) = parse_rewrite(part)?;
        rewrites.insert(service, rewrite);
    }
    Ok(rewrites)
}

/// parsing_helpers.go parseRewrites.
fn parse_rewrite(part: &str) -> Result<(String, String), String> {
    let Some((name_part, rewrite_part)) = part.trim().split_once(' ') else {
        return Err(format!(
            "'{part}' is not a valid rewrite format, e.g. 'serviceName=tea-svc rewrite=/'"
        ));
    };
    let name: Vec<&str> = name_part.split('=').collect();
    if name.len() != 2 || name[0] != "serviceName" {
        return Err(format!(
            "'{name_part}' is not a valid serviceName format, e.g. 'serviceName=tea-svc'"
        ));
    }
    let path: Vec<&str> = rewrite_part.split('=').collect();
    if path.len() != 2 || path[0] != "rewrite" {
        return Err(format!(
            "'{rewrite_part}' is not a valid rewrite path format, e.g. 'rewrite=/tea'"
        ));
    }
    // VerifyPath: ^/[^\s{};$]*$
    let ok = path[1].starts_with('/')
        && !path[1]
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | ';' | '$'));
    if !ok {
        return Err(format!(
            "path must start with '/' and must not include any whitespace character, '{{', '}}' or '$': '{}'",
            path[1]
        ));
    }
    Ok((name[1].to_string(), path[1].to_string()))
}

/// annotations.go getRewriteTarget: `rewrite-target`, unless `rewrites` is also set (then a
/// warning, and `rewrites` wins).
pub fn rewrite_target(annotations: &Map<String, Value>) -> (Option<String>, Option<&'static str>) {
    let target = get(annotations, REWRITE_TARGET).map(str::to_string);
    if annotations.contains_key(REWRITES) && target.is_some() {
        return (
            None,
            Some(
                "nginx.org/rewrites and nginx.org/rewrite-target annotations are mutually exclusive; nginx.org/rewrites will take precedence",
            ),
        );
    }
    (target, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// controller.go HasCorrectIngressClass: annotation first, then the field, nothing = not ours.
    #[test]
    fn class_annotation_wins_over_the_field_per_has_correct_ingress_class() {
        let ing = |ann: Value, spec: Value| json!({"metadata": {"annotations": ann}, "spec": spec});
        assert!(has_correct_class(&ing(
            json!({}),
            json!({"ingressClassName": "nginx"})
        )));
        assert!(!has_correct_class(&ing(
            json!({}),
            json!({"ingressClassName": "alb"})
        )));
        assert!(!has_correct_class(&ing(json!({}), json!({}))));
        assert!(!has_correct_class(&ing(
            json!({"kubernetes.io/ingress.class": "alb"}),
            json!({"ingressClassName": "nginx"})
        )));
        assert!(has_correct_class(&ing(
            json!({"kubernetes.io/ingress.class": "nginx"}),
            json!({"ingressClassName": "alb"})
        )));
    }

    /// parsing_helpers.go ParseRewriteList / parseRewrites messages.
    #[test]
    fn rewrites_parse_like_parse_rewrite_list() {
        assert_eq!(
            parse_rewrite_list("serviceName=a rewrite=/;serviceName=b rewrite=/x").unwrap(),
            BTreeMap::from([("a".into(), "/".into()), ("b".into(), "/x".into())])
        );
        assert_eq!(
            parse_rewrite_list("serviceName=a").unwrap_err(),
            "'serviceName=a' is not a valid rewrite format, e.g. 'serviceName=tea-svc rewrite=/'"
        );
        assert_eq!(
            parse_rewrite_list("service=a rewrite=/").unwrap_err(),
            "'service=a' is not a valid serviceName format, e.g. 'serviceName=tea-svc'"
        );
        assert_eq!(
            parse_rewrite_list("serviceName=a rewrite=x").unwrap_err(),
            "path must start with '/' and must not include any whitespace character, '{', '}' or '$': 'x'"
        );
    }

    /// annotations.go masterDenylist / minionDenylist: dropped, not rejected.
    #[test]
    fn denylisted_annotations_are_dropped_per_filter_master_and_minion_annotations() {
        let ing = json!({"metadata": {"name": "m", "annotations": {"nginx.org/rewrites": "serviceName=a rewrite=/", "nginx.org/hsts": "true", "nginx.org/lb-method": "round_robin"}}});
        let master = effective_annotations(&ing, true, false);
        assert!(!master.contains_key("nginx.org/rewrites"));
        assert!(master.contains_key("nginx.org/hsts"));
        let minion = effective_annotations(&ing, false, true);
        assert!(minion.contains_key("nginx.org/rewrites"));
        assert!(!minion.contains_key("nginx.org/hsts"));
        assert!(minion.contains_key("nginx.org/lb-method"));
    }
}
