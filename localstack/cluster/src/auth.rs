//! Authentication (bearer tokens) and RBAC authorization over the stored Roles and bindings.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use serde_json::Value;

use crate::meta;
use crate::registry::Registry;
use crate::resources::find;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// One request as RBAC sees it.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// IAM identity an EKS token maps to, as the aws-auth ConfigMap / access entries would.
#[derive(Debug, Clone)]
pub struct AwsIdentity {
    pub access_key_id: String,
    pub username: String,
    pub groups: Vec<String>,
}

pub struct Authenticator {
    admin_token: String,
    service_account_tokens: Mutex<HashMap<String, (String, String)>>,
    aws_identities: Vec<AwsIdentity>,
    anonymous_is_admin: bool,
}

impl Authenticator {
    pub fn new(
        admin_token: String,
        aws_identities: Vec<AwsIdentity>,
        anonymous_is_admin: bool,
    ) -> Self {
        Self {
            admin_token,
            service_account_tokens: Mutex::new(HashMap::new()),
            aws_identities,
            anonymous_is_admin,
        }
    }

    fn admin() -> User {
        User {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Issues a token for a ServiceAccount (what the TokenRequest API hands out).
    pub fn issue_service_account_token(&self, namespace: &str, name: &str) -> String {
        let token = format!("sim-sa.{}", meta::random_suffix(32));
        self.service_account_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.clone(), (namespace.to_string(), name.to_string()));
        token
    }

    /// Stops accepting a token: a bound service account token is invalid once the object it is
    /// bound to (its pod) is gone (https://kubernetes.io/docs/concepts/security/service-accounts/#bound-service-account-tokens).
    pub fn revoke_service_account_token(&self, token: &str) {
        self.service_account_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    pub fn authenticate(&self, authorization: Option<&str>) -> Option<User> {
        if authorization.is_none() && self.anonymous_is_admin {
            return Some(Self::admin());
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if token == self.admin_token {
            return Some(User {
                name: "kubernetes-admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        }
        if let Some(presigned) = token.strip_prefix("k8s-aws-v1.") {
            return self.authenticate_eks(presigned);
        }
        let tokens = self
            .service_account_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (ns, name) = tokens.get(token)?;
        Some(User {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        })
    }

    /// EKS tokens are base64url presigned `sts:GetCallerIdentity` URLs; the simulator cannot call STS,
    /// so it checks the URL's shape (STS host, action, the signed `x-k8s-aws-id` header) and maps the
    /// access key id in `X-Amz-Credential` to a configured identity.
    fn authenticate_eks(&self, presigned: &str) -> Option<User> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(presigned.trim_end_matches('='))
            .ok()?;
        let url = String::from_utf8(raw).ok()?;
        let rest = url.strip_prefix("https://")?;
        let (host, query) = rest.split_once('?')?;
        let host = host.trim_end_matches('/');
        if !(host.starts_with("sts.")
            && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")))
        {
            return None;
        }
        let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if params.get("Action").map(String::as_str) != Some("GetCallerIdentity") {
            return None;
        }
        let signed = params.get("X-Amz-SignedHeaders")?;
        if !signed
            .split(';')
            .any(|h| h.eq_ignore_ascii_case("x-k8s-aws-id"))
        {
            return None;
        }
        let access_key = params
            .get("X-Amz-Credential")?
            .split('/')
            .next()?
            .to_string();
        let identity = self
            .aws_identities
            .iter()
            .find(|i| i.access_key_id == access_key)?;
        let mut groups = identity.groups.clone();
        groups.push("system:authenticated".into());
        Some(User {
            name: identity.username.clone(),
            groups,
        })
    }
}

fn list_contains(rule: &Value, field: &str, wanted: &str) -> bool {
    rule.get(field).and_then(Value::as_array).is_some_and(|vs| {
        vs.iter()
            .any(|v| v.as_str().is_some_and(|s| s == "*" || s == wanted))
    })
}

fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    if !list_contains(rule, "verbs", attrs.verb) || !list_contains(rule, "apiGroups", attrs.group) {
        return false;
    }
    let resource = match attrs.subresource {
        Some(sub) => format!("{}/{sub}", attrs.resource),
        None => attrs.resource.to_string(),
    };
    let resource_ok = rule
        .get("resources")
        .and_then(Value::as_array)
        .is_some_and(|rs| {
            rs.iter().filter_map(Value::as_str).any(|r| {
                r == "*"
                    || r == resource
                    || (attrs.subresource.is_some()
                        && r == format!("*/{}", attrs.subresource.unwrap_or_default()))
            })
        });
    if !resource_ok {
        return false;
    }
    match rule.get("resourceNames").and_then(Value::as_array) {
        Some(names) if !names.is_empty() => names.iter().any(|n| n.as_str() == Some(attrs.name)),
        _ => true,
    }
}

fn subject_matches(subject: &Value, user: &User, binding_ns: &str) -> bool {
    let name = subject
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match subject.get("kind").and_then(Value::as_str) {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

/// Whether RBAC grants `attrs` to `user`. `system:masters` is allowed everything, as on a real cluster.
pub fn authorize(registry: &Registry, user: &User, attrs: &Attributes) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    // Every authenticated user may ask what it may do, as the default `system:basic-user` role allows.
    if attrs.group == "authorization.k8s.io" && attrs.resource.starts_with("selfsubject") {
        return true;
    }
    let (Some(roles), Some(role_bindings), Some(cluster_roles), Some(cluster_bindings)) = (
        find("rbac.authorization.k8s.io", "v1", "roles"),
        find("rbac.authorization.k8s.io", "v1", "rolebindings"),
        find("rbac.authorization.k8s.io", "v1", "clusterroles"),
        find("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
    ) else {
        return false;
    };
    let role_rules = |kind: &str, name: &str, ns: &str| -> Vec<Value> {
        let role = if kind == "ClusterRole" {
            registry.try_get(cluster_roles, "", name)
        } else {
            registry.try_get(roles, ns, name)
        };
        role.and_then(|r| r.get("rules").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    let bound = |binding: &Value| {
        binding
            .get("subjects")
            .and_then(Value::as_array)
            .is_some_and(|subs| {
                subs.iter()
                    .any(|s| subject_matches(s, user, meta::namespace(binding)))
            })
    };
    let grants = |binding: &Value, ns: &str| {
        let kind = binding
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = binding
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        role_rules(kind, name, ns)
            .iter()
            .any(|r| rule_allows(r, attrs))
    };
    if registry
        .select(cluster_bindings, None, None)
        .iter()
        .filter(|b| bound(b))
        .any(|b| grants(b, ""))
    {
        return true;
    }
    !attrs.namespace.is_empty()
        && registry
            .select(role_bindings, Some(attrs.namespace), None)
            .iter()
            .filter(|b| bound(b))
            .any(|b| grants(b, attrs.namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(
        verb: &'a str,
        resource: &'a str,
        sub: Option<&'a str>,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            subresource: sub,
            namespace: "default",
            name,
        }
    }

    #[test]
    fn rule_matching() {
        let rule = json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"], "resourceNames": []});
        assert!(rule_allows(&rule, &attrs("get", "pods", None, "a")));
        assert!(rule_allows(&rule, &attrs("get", "pods", Some("log"), "a")));
        assert!(!rule_allows(
            &rule,
            &attrs("get", "pods", Some("exec"), "a")
        ));
        assert!(!rule_allows(&rule, &attrs("delete", "pods", None, "a")));
        let named = json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": ["only"]});
        assert!(rule_allows(
            &named,
            &attrs("delete", "configmaps", None, "only")
        ));
        assert!(!rule_allows(
            &named,
            &attrs("delete", "configmaps", None, "other")
        ));
    }

    #[test]
    fn eks_token_shape() {
        let auth = Authenticator::new(
            "admin".into(),
            vec![AwsIdentity {
                access_key_id: "AKIDEXAMPLE".into(),
                username: "arn:aws:iam::123:user/dev".into(),
                groups: vec!["devs".into()],
            }],
            false,
        );
        let url = "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240101%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=abc";
        let token = format!(
            "Bearer k8s-aws-v1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
        );
        assert_eq!(
            auth.authenticate(Some(&token)).unwrap().name,
            "arn:aws:iam::123:user/dev"
        );
        let unsigned = url.replace("host%3Bx-k8s-aws-id", "host");
        let token = format!(
            "Bearer k8s-aws-v1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(unsigned)
        );
        assert!(auth.authenticate(Some(&token)).is_none());
    }
}
