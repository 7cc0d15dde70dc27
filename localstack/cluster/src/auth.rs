//! Authentication (bearer tokens) and RBAC authorization over the stored Roles and bindings.

use crate::meta::Lookup;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::Value;

use crate::meta;
use crate::registry::Registry;
use crate::resources::find;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// EKS access policies associated with the caller's access entry, which EKS's own
    /// authorizer applies alongside RBAC.
    pub access_policies: Vec<AccessPolicy>,
}

/// An EKS access policy association (ListAssociatedAccessPolicies): the policy's ARN and its
/// access scope (None: the whole cluster; Some: these namespaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    pub arn: String,
    pub namespaces: Option<Vec<String>>,
}

impl AccessPolicy {
    /// Amazon EKS User Guide, "Review access policy permissions": AmazonEKSClusterAdminPolicy
    /// has the permissions of the `cluster-admin` ClusterRole (`*` on everything) within its
    /// scope. The other access policies (Admin, Edit, View, ...) are not modelled: they grant
    /// nothing here, which is stricter than EKS, never more lenient.
    fn allows(&self, attrs: &Attributes) -> bool {
        if !self
            .arn
            .ends_with(":cluster-access-policy/AmazonEKSClusterAdminPolicy")
        {
            return false;
        }
        match &self.namespaces {
            None => true,
            Some(namespaces) => {
                !attrs.namespace.is_empty() && namespaces.iter().any(|n| n == attrs.namespace)
            }
        }
    }
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
    eks_token_lifetime: Duration,
    anonymous_is_admin: bool,
    /// With the AWS emulator: EKS tokens are verified through its STS and mapped as EKS maps
    /// them, instead of through `aws_identities`.
    eks: Option<Arc<crate::cloud::identity::EksAuth>>,
}

/// An EKS token that passed aws-iam-authenticator's checks made before it calls STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedCall {
    /// The STS host the URL was signed for (`sts.<region>.amazonaws.com`).
    pub host: String,
    /// The URL's query, as in the token.
    pub query: String,
    /// The access key id in X-Amz-Credential.
    pub access_key_id: String,
}

/// Why an EKS token was refused; the messages are aws-iam-authenticator's
/// (kubernetes-sigs/aws-iam-authenticator pkg/token/token.go, `tokenVerifier.Verify`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EksTokenRejected {
    #[error("input token was not properly formatted: {0}")]
    Format(String),
    #[error(
        "input token was not properly formatted: X-Amz-Date parameter is expired ({lifetime_secs} second expiration) {signed}"
    )]
    Expired { lifetime_secs: u64, signed: String },
    #[error("access key {0} is not mapped to a user or role of the cluster")]
    UnknownAccessKey(String),
    /// pkg/token/token.go: a non-200 answer from STS.
    #[error("error from AWS (expected 200, got {status}). Body: {body}")]
    Sts { status: u16, body: String },
    #[error("error calling STS: {0}")]
    StsCall(String),
    /// pkg/arn/arn.go Canonicalize.
    #[error("{0}")]
    Arn(String),
    /// pkg/server/server.go: no mapper maps the identity.
    #[error("ARN is not mapped: {0}")]
    NotMapped(String),
    #[error("cannot read the cluster's access configuration from the AWS emulator: {0}")]
    Emulator(String),
}

/// The query parameters aws-iam-authenticator lets through (`parameterWhitelist` in
/// pkg/token/token.go); anything else is refused.
const EKS_TOKEN_PARAMETERS: [&str; 9] = [
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];

impl Authenticator {
    pub fn new(
        admin_token: String,
        aws_identities: Vec<AwsIdentity>,
        eks_token_lifetime: Duration,
        anonymous_is_admin: bool,
    ) -> Self {
        Self {
            admin_token,
            service_account_tokens: Mutex::new(HashMap::new()),
            aws_identities,
            eks_token_lifetime,
            anonymous_is_admin,
            eks: None,
        }
    }

    /// EKS tokens go through the AWS emulator's STS and the cluster's access configuration.
    pub fn with_eks(mut self, eks: Arc<crate::cloud::identity::EksAuth>) -> Self {
        self.eks = Some(eks);
        self
    }

    fn admin() -> User {
        User {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            ..User::default()
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

    pub async fn authenticate(&self, authorization: Option<&str>) -> Option<User> {
        if authorization.is_none() && self.anonymous_is_admin {
            return Some(Self::admin());
        }
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if token == self.admin_token {
            return Some(Self::admin());
        }
        if let Some(presigned) = token.strip_prefix("k8s-aws-v1.") {
            let now = SystemTime::now();
            let verified = match &self.eks {
                Some(eks) => match self.check_eks(presigned, now) {
                    Ok(call) => eks.identify(&call).await,
                    Err(e) => Err(e),
                },
                None => self.verify_eks(presigned, now),
            };
            // The API server answers a bare 401 `Unauthorized` and only logs the reason
            // (kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/endpoints/filters/authentication.go).
            return verified
                .inspect_err(|reason| tracing::info!(%reason, "EKS token refused"))
                .ok();
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
            ..User::default()
        })
    }

    /// Without the AWS emulator: [`Self::check_eks`], then the access key id in
    /// X-Amz-Credential is mapped to a configured identity, as STS's answer would be.
    pub fn verify_eks(&self, presigned: &str, now: SystemTime) -> Result<User, EksTokenRejected> {
        let call = self.check_eks(presigned, now)?;
        let identity = self
            .aws_identities
            .iter()
            .find(|i| i.access_key_id == call.access_key_id)
            .ok_or(EksTokenRejected::UnknownAccessKey(call.access_key_id))?;
        let mut groups = identity.groups.clone();
        groups.push("system:authenticated".into());
        Ok(User {
            name: identity.username.clone(),
            groups,
            ..User::default()
        })
    }

    /// EKS tokens are base64url presigned `sts:GetCallerIdentity` URLs. These are
    /// aws-iam-authenticator's checks before it calls STS (pkg/token/token.go,
    /// `tokenVerifier.Verify`): an https STS host, path `/`, only whitelisted single-valued
    /// parameters, action GetCallerIdentity, the signed `x-k8s-aws-id` header, X-Amz-Expires within
    /// 0..=900, and X-Amz-Date no older than the token lifetime (`presignedURLExpiration`, 15 min:
    /// STS honours a presigned GetCallerIdentity for 15 minutes after X-Amz-Date whatever
    /// X-Amz-Expires says, so the verifier ignores X-Amz-Expires' value).
    pub fn check_eks(
        &self,
        presigned: &str,
        now: SystemTime,
    ) -> Result<PresignedCall, EksTokenRejected> {
        let malformed = |m: &str| EksTokenRejected::Format(m.to_string());
        // `maxTokenLenBytes`, counted with the `k8s-aws-v1.` prefix.
        if presigned.len() + "k8s-aws-v1.".len() > 4 * 1024 {
            return Err(malformed("token is too large"));
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(presigned)
            .map_err(|e| malformed(&e.to_string()))?;
        let url = String::from_utf8(raw).map_err(|e| malformed(&e.to_string()))?;
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| malformed("unexpected scheme in pre-signed URL"))?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = match authority.find('/') {
            Some(i) => authority.split_at(i),
            None => (authority, ""),
        };
        if !(host.starts_with("sts.")
            && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")))
        {
            return Err(malformed(&format!(
                "unexpected hostname {host:?} in pre-signed URL"
            )));
        }
        if path != "/" {
            return Err(malformed("unexpected path in pre-signed URL"));
        }
        let mut params: HashMap<String, String> = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()).into_owned() {
            let key_lower = key.to_ascii_lowercase();
            if !EKS_TOKEN_PARAMETERS.contains(&key_lower.as_str()) {
                return Err(malformed(&format!(
                    "non-whitelisted query parameter {key:?}"
                )));
            }
            if params.insert(key_lower, value).is_some() {
                return Err(malformed(
                    "query parameter with multiple values not supported",
                ));
            }
        }
        let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
        if param("action") != "GetCallerIdentity" {
            return Err(malformed("unexpected action parameter in pre-signed URL"));
        }
        if !param("x-amz-signedheaders")
            .split(';')
            .any(|h| h.eq_ignore_ascii_case("x-k8s-aws-id"))
        {
            return Err(malformed(
                "client did not sign the x-k8s-aws-id header in the pre-signed URL",
            ));
        }
        let expires = param("x-amz-expires");
        if !expires.parse::<i64>().is_ok_and(|e| (0..=900).contains(&e)) {
            return Err(malformed(&format!(
                "invalid X-Amz-Expires parameter in pre-signed URL: {expires}"
            )));
        }
        let date = param("x-amz-date");
        if date.is_empty() {
            return Err(malformed(
                "X-Amz-Date parameter must be present in pre-signed URL",
            ));
        }
        let signed = parse_amz_date(date).ok_or_else(|| {
            malformed(&format!(
                "error parsing X-Amz-Date parameter {date} into format 20060102T150405Z"
            ))
        })?;
        if now > signed + self.eks_token_lifetime {
            return Err(EksTokenRejected::Expired {
                lifetime_secs: self.eks_token_lifetime.as_secs(),
                signed: date.to_string(),
            });
        }
        let access_key_id = param("x-amz-credential")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(PresignedCall {
            host: host.to_string(),
            query: query.to_string(),
            access_key_id,
        })
    }
}

/// SigV4's basic date format (`20060102T150405Z`, UTC) as a point in time.
fn parse_amz_date(date: &str) -> Option<SystemTime> {
    let bytes = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        let part = bytes.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(part).ok()?.parse::<u32>().ok())?
    };
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let (month, day) = (digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let rfc3339 = format!(
        "{:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z",
        digits(0..4)?
    );
    meta::parse_rfc3339(&rfc3339).map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
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
    if user.access_policies.iter().any(|p| p.allows(attrs)) {
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
            .at("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name = binding
            .at("/roleRef/name")
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

    const EKS_URL: &str = "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240101%2Feu-west-1%2Fsts%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=abc";

    /// 2024-01-01T00:00:00Z, the X-Amz-Date of [`EKS_URL`].
    fn signed_at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_704_067_200)
    }

    fn eks_authenticator(lifetime: Duration) -> Authenticator {
        Authenticator::new(
            "admin".into(),
            vec![AwsIdentity {
                access_key_id: "AKIDEXAMPLE".into(),
                username: "arn:aws:iam::123:user/dev".into(),
                groups: vec!["devs".into()],
            }],
            lifetime,
            false,
        )
    }

    fn presigned(url: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    }

    #[test]
    fn eks_token_shape() {
        let auth = eks_authenticator(Duration::from_secs(15 * 60));
        let now = signed_at() + Duration::from_secs(30);
        let user = auth.verify_eks(&presigned(EKS_URL), now).unwrap();
        assert_eq!(user.name, "arn:aws:iam::123:user/dev");
        assert_eq!(user.groups, ["devs", "system:authenticated"]);
        let unsigned = EKS_URL.replace("host%3Bx-k8s-aws-id", "host");
        assert!(matches!(
            auth.verify_eks(&presigned(&unsigned), now),
            Err(EksTokenRejected::Format(m)) if m.contains("x-k8s-aws-id")
        ));
        let stranger = EKS_URL.replace("AKIDEXAMPLE", "AKIDSTRANGER");
        assert_eq!(
            auth.verify_eks(&presigned(&stranger), now),
            Err(EksTokenRejected::UnknownAccessKey("AKIDSTRANGER".into()))
        );
        // Through the bearer header, the token is judged at the current time: long expired.
        let header = format!("Bearer k8s-aws-v1.{}", presigned(EKS_URL));
        assert!(futures::executor::block_on(auth.authenticate(Some(&header))).is_none());
    }

    /// aws-iam-authenticator pkg/token/token.go: `presignedURLExpiration` (15 min) after
    /// X-Amz-Date, `now.After(expiration)` refuses; X-Amz-Expires' value (60) does not shorten it.
    #[test]
    fn eks_tokens_expire_a_lifetime_after_x_amz_date_not_after_x_amz_expires() {
        let auth = eks_authenticator(Duration::from_secs(15 * 60));
        let token = presigned(EKS_URL);
        let at = |secs| signed_at() + Duration::from_secs(secs);
        assert!(auth.verify_eks(&token, at(61)).is_ok());
        assert!(auth.verify_eks(&token, at(15 * 60)).is_ok());
        let expired = auth.verify_eks(&token, at(15 * 60 + 1)).unwrap_err();
        assert_eq!(
            expired,
            EksTokenRejected::Expired {
                lifetime_secs: 900,
                signed: "20240101T000000Z".into()
            }
        );
        assert!(
            expired
                .to_string()
                .contains("X-Amz-Date parameter is expired")
        );
        let short = eks_authenticator(Duration::from_secs(2));
        assert!(short.verify_eks(&token, at(2)).is_ok());
        assert!(short.verify_eks(&token, at(3)).is_err());
    }

    /// aws-iam-authenticator pkg/token/token.go `Verify`: X-Amz-Expires must be an integer in
    /// 0..=900, X-Amz-Date must be present and in SigV4's basic format, only the whitelisted
    /// parameters may appear, once each, on an https STS host with path `/`.
    #[test]
    fn eks_tokens_are_refused_for_what_aws_iam_authenticator_refuses() {
        let auth = eks_authenticator(Duration::from_secs(15 * 60));
        let now = signed_at() + Duration::from_secs(1);
        let refused = |url: String, why: &str| {
            let rejected = auth.verify_eks(&presigned(&url), now).unwrap_err();
            assert!(
                rejected.to_string().contains(why),
                "{url}: {rejected} does not say {why:?}"
            );
        };
        refused(
            EKS_URL.replace("X-Amz-Expires=60", "X-Amz-Expires=901"),
            "invalid X-Amz-Expires",
        );
        refused(
            EKS_URL.replace("X-Amz-Expires=60", "X-Amz-Expires=soon"),
            "invalid X-Amz-Expires",
        );
        refused(
            EKS_URL.replace("&X-Amz-Date=20240101T000000Z", ""),
            "X-Amz-Date parameter must be present",
        );
        refused(
            EKS_URL.replace("20240101T000000Z", "2024-01-01T00:00:00Z"),
            "error parsing X-Amz-Date",
        );
        refused(
            format!("{EKS_URL}&Foo=bar"),
            "non-whitelisted query parameter",
        );
        refused(
            format!("{EKS_URL}&Action=GetCallerIdentity"),
            "multiple values",
        );
        refused(
            EKS_URL.replace("Action=GetCallerIdentity", "Action=AssumeRole"),
            "unexpected action",
        );
        refused(EKS_URL.replace("https://", "http://"), "unexpected scheme");
        refused(
            EKS_URL.replace("sts.eu-west-1.amazonaws.com", "evil.example.com"),
            "unexpected hostname",
        );
        refused(EKS_URL.replace(".com/?", ".com/x?"), "unexpected path");
        refused(
            format!("{EKS_URL}{}", "a".repeat(4096)),
            "token is too large",
        );
    }
}
