//! Private registries: a user's registry logins, kept in one `kubernetes.io/dockerconfigjson`
//! Secret of their namespace ([`SECRET`]) and named in `imagePullSecrets` of exactly the
//! repositories whose image is on one of those registries.
//!
//! The Secret has the layout `docker login` writes and the kubelet reads
//! (kubernetes.io/docs/concepts/containers/images/#specifying-imagepullsecrets-on-a-pod;
//! kubernetes/kubernetes `pkg/credentialprovider/config.go` `DockerConfigJSON`): `{"auths":
//! {"<server>": {"username", "password", "auth"}}}`, `auth` being base64 `username:password`.
//! Docker Hub's entry is keyed `https://index.docker.io/v1/`, the key the kubelet looks up for an
//! image without a registry host (`pkg/credentialprovider/keyring.go` `defaultRegistryKey`).
//!
//! Passwords go one way only, as secret variables do ([`super::env`]): from the form or API into
//! the Secret. A [`Login`]'s password has no `Debug` of its content, no view carries it, and an
//! error message never quotes it.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::env::SecretValue;
use crate::field_error::FieldError;
use crate::json_fields::text;

/// The namespace's one Secret of registry logins.
pub const SECRET: &str = "registry-credentials";
/// The Secret's type and its one key (kubernetes.io/docs/concepts/configuration/secret/
/// "Docker config Secrets").
pub const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const SECRET_KEY: &str = ".dockerconfigjson";
/// Annotation of the Secret with the salt of [`DIGEST`].
pub const SALT: &str = "kdeploy.dev/registry-salt";
/// Pod template annotation with a salted digest of the login the repository's registry has: a
/// replaced login changes the template, so the repositories using it roll and pull with it.
pub const DIGEST: &str = "kdeploy.dev/registry-digest";
/// Docker Hub, as users name it and as the site shows it.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's key in a docker config (what `docker login` writes).
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// At most this many registries per namespace.
pub const MAX_REGISTRIES: usize = 20;
/// At most this many bytes in a username.
pub const MAX_USERNAME_BYTES: usize = 256;
/// At most this many bytes in a password or token (registry tokens such as ECR's are about
/// 2-3 KiB; a minified GCR JSON key about 2.5 KiB).
pub const MAX_PASSWORD_BYTES: usize = 8 * 1024;

pub const SERVER_RULE: &str = "A registry host such as ghcr.io, registry.example.com:5000 or docker.io (Docker Hub); no path.";
pub const USERNAME_RULE: &str =
    "The registry username: at most 256 characters, no ':' and no control characters.";
pub const PASSWORD_RULE: &str = "A password or access token: at most 8 KiB, no control characters. It is never shown again; save again to replace it.";

/// The registry host an image is pulled from, as docker's reference normalisation reads it
/// (distribution/reference `normalize.go` `splitDockerDomain`): the first component is a host
/// when it has a `.` or `:` or is `localhost`; otherwise the image is on Docker Hub.
pub fn host_of_image(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            let host = first.to_ascii_lowercase();
            if matches!(host.as_str(), "index.docker.io" | "registry-1.docker.io") {
                DOCKER_HUB.to_string()
            } else {
                host
            }
        }
        _ => DOCKER_HUB.to_string(),
    }
}

/// A registry server as typed, normalised to the host the site compares images with:
/// scheme, trailing `/`, and `/v1/`/`/v2/` are dropped (the docker client and the kubelet treat
/// them as the host, `keyring.go` `Add`); Docker Hub's names become [`DOCKER_HUB`].
pub fn normalise_server(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("Enter the registry's host, for example ghcr.io.".into());
    }
    if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("Remove the spaces and control characters: a registry host has none.".into());
    }
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = without_scheme
        .trim_end_matches('/')
        .trim_end_matches("/v1")
        .trim_end_matches("/v2")
        .to_ascii_lowercase();
    if host.contains('/') {
        return Err(
            "Give the registry's host only (credentials apply to every image on it), not a path."
                .into(),
        );
    }
    if host.len() > 253 + 6 {
        return Err("Use at most 253 characters for the host.".into());
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host.as_str(), None),
    };
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0)
    {
        return Err(format!("'{port}' is not a port: use 1 to 65535."));
    }
    // A DNS name (RFC 1123 labels) or `localhost`, as the reference grammar's domain component
    // (distribution/reference `regexp.go` `domainNameComponent`).
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!(
            "'{name}' is not a host name: use letters, digits, '-' and '.' (for example registry.example.com)."
        ));
    }
    Ok(match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    })
}

/// A registry login as typed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    #[serde(default, deserialize_with = "text")]
    pub server: String,
    #[serde(default, deserialize_with = "text")]
    pub username: String,
    #[serde(default, deserialize_with = "text")]
    pub password: String,
}

impl std::fmt::Debug for LoginInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginInput")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<secret>")
            .finish()
    }
}

/// A checked login: a normalised server, a username and a password that prints as `<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub server: String,
    pub username: String,
    pub password: SecretValue,
}

/// Checks every field and returns all errors at once; no message quotes the password.
pub fn validate_login(input: &LoginInput) -> Result<Login, Vec<FieldError>> {
    let mut errors = Vec::new();
    let server = normalise_server(&input.server)
        .map_err(|m| errors.push(FieldError::new("server", &m)))
        .ok();
    let username = input.username.trim();
    if username.is_empty() {
        errors.push(FieldError::new("username", "Enter the registry username."));
    } else if username.len() > MAX_USERNAME_BYTES {
        errors.push(FieldError::new("username", "Use at most 256 characters."));
    } else if username.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "username",
            "Remove the control characters (tabs, line breaks, …): a username has none.",
        ));
    } else if username.contains(':') {
        // The kubelet splits `auth` at the first ':' (`config.go` `decodeDockerConfigFieldAuth`).
        errors.push(FieldError::new(
            "username",
            "Remove the ':': registries join username and password with it.",
        ));
    }
    let password = &input.password;
    if password.is_empty() {
        errors.push(FieldError::new(
            "password",
            "Enter the password or access token.",
        ));
    } else if password.len() > MAX_PASSWORD_BYTES {
        errors.push(FieldError::new("password", "Use at most 8 KiB."));
    } else if password.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "password",
            "Remove the control characters (tabs, line breaks, …): a password or token pasted from a file may end with a line break. Nothing of what you typed is repeated here.",
        ));
    }
    match (server, errors.is_empty()) {
        (Some(server), true) => Ok(Login {
            server,
            username: username.to_string(),
            password: SecretValue::new(password.clone()),
        }),
        _ => Err(errors),
    }
}

/// A stored login as anyone may see it: no password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryView {
    pub server: String,
    pub username: String,
    /// The repositories whose image is on this registry (they pull with this login).
    pub used_by: Vec<String>,
}

/// The logins of a namespace, by normalised server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logins {
    pub by_server: BTreeMap<String, (String, SecretValue)>,
    pub salt: String,
}

impl Logins {
    /// What the namespace's Secret holds; entries the site cannot read (not UTF-8, no username)
    /// are left out, and so dropped at the next save.
    pub fn of_secret(secret: &Secret) -> Self {
        let salt = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SALT).cloned())
            .unwrap_or_default();
        let config = secret
            .data
            .as_ref()
            .and_then(|d| d.get(SECRET_KEY))
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok());
        let mut by_server = BTreeMap::new();
        let auths = config
            .as_ref()
            .and_then(|c| c.get("auths"))
            .and_then(serde_json::Value::as_object);
        for (key, entry) in auths.into_iter().flatten() {
            let Ok(server) = normalise_server(key) else {
                continue;
            };
            let field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str);
            if let (Some(user), Some(password)) = (field("username"), field("password")) {
                by_server.insert(
                    server,
                    (user.to_string(), SecretValue::new(password.to_string())),
                );
            }
        }
        Self { by_server, salt }
    }

    /// The salted digest of one server's login, or `None` when the namespace has none for it.
    pub fn digest_for(&self, server: &str) -> Option<String> {
        let (username, password) = self.by_server.get(server)?;
        let mut hash = Sha256::new();
        for part in [self.salt.as_str(), server, username, password.expose()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// What a repository with this image pulls with.
    pub fn pull_for(&self, image: &str) -> Option<PullRef> {
        self.digest_for(&host_of_image(image))
            .map(|digest| PullRef { digest })
    }

    /// The Secret holding these logins (type `kubernetes.io/dockerconfigjson`).
    pub fn secret(&self, namespace: &str, labels: BTreeMap<String, String>) -> Secret {
        let auths: serde_json::Map<String, serde_json::Value> = self
            .by_server
            .iter()
            .map(|(server, (username, password))| {
                let key = if server == DOCKER_HUB {
                    DOCKER_HUB_KEY.to_string()
                } else {
                    server.clone()
                };
                let auth = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                (
                    key,
                    serde_json::json!({
                        "username": username,
                        "password": password.expose(),
                        "auth": auth,
                    }),
                )
            })
            .collect();
        let config = serde_json::json!({ "auths": auths });
        Secret {
            metadata: ObjectMeta {
                name: Some(SECRET.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(SALT.to_string(), self.salt.clone())])),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.into()),
            data: Some(BTreeMap::from([(
                SECRET_KEY.to_string(),
                ByteString(serde_json::to_vec(&config).unwrap_or_default()),
            )])),
            ..Secret::default()
        }
    }
}

/// The `imagePullSecrets` of a repository that pulls with the namespace's logins.
pub fn pull_secrets() -> Vec<k8s_openapi::api::core::v1::LocalObjectReference> {
    vec![k8s_openapi::api::core::v1::LocalObjectReference {
        name: SECRET.to_string(),
    }]
}

/// A repository's use of its namespace's registry logins: `imagePullSecrets` names [`SECRET`]
/// and the template carries the digest of the login of the image's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRef {
    pub digest: String,
}

impl PullRef {
    /// What a Deployment's pod template says.
    pub fn of_template(
        pull_secrets: Option<&[k8s_openapi::api::core::v1::LocalObjectReference]>,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Option<Self> {
        let named = pull_secrets.into_iter().flatten().any(|r| r.name == SECRET);
        let digest = annotations.and_then(|a| a.get(DIGEST))?;
        named.then(|| Self {
            digest: digest.clone(),
        })
    }
}

/// Whether a pull error says the registry wanted (other) credentials: a registry answers 401
/// (or 403) and containerd/CRI-O/Docker report it in these words (containerd
/// `core/remotes/docker/resolver.go` "unexpected status … 401 Unauthorized"; dockerd
/// "pull access denied … may require 'docker login'"; CRI-O "authentication required").
pub fn says_unauthorised(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "401 unauthorized",
        "403 forbidden",
        "unauthorized",
        "authentication required",
        "pull access denied",
        "denied: requested access",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// What to do when the registry refused a pull for want of (valid) credentials.
pub fn pull_advice(image: &str, has_login: bool) -> String {
    let host = host_of_image(image);
    if has_login {
        format!(
            "The registry {host} refused the login saved for it: replace it on the Registries page (/registries), and check that this account may pull the image."
        )
    } else {
        format!(
            "The registry {host} asks for a login to pull this image: if the image is private, add your credentials for {host} on the Registries page (/registries), and the repository will pull with them."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_on_the_host_docker_normalize_go_names() {
        for (image, host) in [
            ("nginx:1.27", "docker.io"),
            ("library/nginx", "docker.io"),
            ("docker.io/org/app:1", "docker.io"),
            ("index.docker.io/org/app", "docker.io"),
            ("ghcr.io/org/app@sha256:abc", "ghcr.io"),
            (
                "registry.example.com:5000/team/app:2",
                "registry.example.com:5000",
            ),
            ("localhost/app", "localhost"),
            ("Registry.Example.com/app", "registry.example.com"),
        ] {
            assert_eq!(host_of_image(image), host, "{image}");
        }
    }

    #[test]
    fn servers_normalise_like_the_kubelets_keyring_and_bad_ones_are_named() {
        for (typed, server) in [
            ("ghcr.io", "ghcr.io"),
            ("https://ghcr.io/", "ghcr.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("Registry.Example.com:5000", "registry.example.com:5000"),
            ("http://localhost:5000/v2/", "localhost:5000"),
        ] {
            assert_eq!(normalise_server(typed).as_deref(), Ok(server), "{typed}");
        }
        for (typed, says) in [
            ("", "Enter"),
            ("ghcr.io/org", "not a path"),
            ("reg istry.io", "spaces"),
            ("registry.io:0", "not a port"),
            ("registry.io:99999", "not a port"),
            ("-bad.io", "not a host name"),
            ("bad_host.io", "not a host name"),
            ("evil\u{7}.io", "control"),
        ] {
            let error = normalise_server(typed).expect_err(typed);
            assert!(error.contains(says), "{typed:?}: {error}");
        }
    }

    #[test]
    fn a_login_with_control_characters_is_refused_without_quoting_it() {
        let input = LoginInput {
            server: "ghcr.io".into(),
            username: "me\tyou".into(),
            password: "hunter2\n".into(),
        };
        let errors = validate_login(&input).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["username", "password"]);
        assert!(errors.iter().all(|e| !e.message.contains("hunter2")));
        assert!(!format!("{input:?}").contains("hunter2"));
        let colon = LoginInput {
            username: "a:b".into(),
            password: "x".into(),
            ..input
        };
        assert_eq!(validate_login(&colon).unwrap_err()[0].field, "username");
    }

    #[test]
    fn the_secret_is_a_docker_config_the_kubelet_reads_and_reads_back() {
        let mut logins = Logins {
            salt: "salt".into(),
            ..Logins::default()
        };
        logins.by_server.insert(
            "docker.io".into(),
            ("me".into(), SecretValue::new("pw".into())),
        );
        logins.by_server.insert(
            "ghcr.io".into(),
            ("bot".into(), SecretValue::new("tok:en".into())),
        );
        let secret = logins.secret("alice", BTreeMap::new());
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        let config: serde_json::Value =
            serde_json::from_slice(&secret.data.as_ref().unwrap()[SECRET_KEY].0).unwrap();
        let hub = &config["auths"][DOCKER_HUB_KEY];
        assert_eq!(hub["username"], "me");
        assert_eq!(
            hub["auth"],
            base64::engine::general_purpose::STANDARD.encode("me:pw")
        );
        assert_eq!(config["auths"]["ghcr.io"]["password"], "tok:en");
        assert_eq!(Logins::of_secret(&secret), logins);
        // Each registry's digest is its own: replacing one login rolls only its repositories.
        let before = logins.pull_for("ghcr.io/org/app:1").unwrap();
        assert!(logins.pull_for("nginx").is_some());
        assert!(logins.pull_for("quay.io/org/app").is_none());
        logins.by_server.insert(
            "docker.io".into(),
            ("me".into(), SecretValue::new("new".into())),
        );
        assert_eq!(logins.pull_for("ghcr.io/org/app:1").unwrap(), before);
    }

    #[test]
    fn pull_errors_that_ask_for_a_login_are_told_from_others() {
        assert!(says_unauthorised(
            "failed to resolve reference \"ghcr.io/o/a:1\": unexpected status from HEAD request to https://ghcr.io/v2/o/a/manifests/1: 401 Unauthorized"
        ));
        assert!(says_unauthorised(
            "pull access denied for o/a, repository does not exist or may require 'docker login'"
        ));
        assert!(!says_unauthorised(
            "failed to resolve reference \"docker.io/library/nginx:nope\": not found"
        ));
    }
}
