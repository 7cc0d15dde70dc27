//! Private registries and the kubelet's pull credentials.
//!
//! A registry in [`crate::SimConfig::private_registries`] answers a pull without the right
//! credentials as a registry (CNCF Distribution `docs/spec/auth/token.md`, OCI
//! distribution-spec "401 Unauthorized") does, and containerd turns that into the message the
//! kubelet puts in the container's `ErrImagePull` state
//! (containerd `core/remotes/docker/resolver.go`: `unexpected status from HEAD request to
//! <url>: 401 Unauthorized`; `pkg/cri/server/images/image_pull.go`: `failed to pull and unpack
//! image`, `failed to resolve reference`).
//!
//! Credentials come from the Secrets the pod names in `spec.imagePullSecrets`, read the way the
//! kubelet reads them (`pkg/kubelet/kuberuntime/kuberuntime_image.go` → `pkg/credentialprovider/
//! secrets/secrets.go` `MakeDockerKeyring`): only Secrets of type
//! `kubernetes.io/dockerconfigjson` (key `.dockerconfigjson`) or `kubernetes.io/dockercfg` (key
//! `.dockercfg`) in the pod's namespace; a missing Secret is skipped. An entry matches the image
//! by registry host (`pkg/credentialprovider/keyring.go` `URLsMatchStr`: scheme dropped, host
//! with port compared exactly, path a prefix of the image's path); `auth` (base64
//! `user:password`) wins over `username`/`password` (`config.go` `DockerConfigEntry`
//! `UnmarshalJSON` → `decodeDockerConfigFieldAuth`). Every matching entry is tried in turn.

use crate::meta::Lookup;
use base64::Engine as _;
use serde_json::Value;

use crate::RegistryLogin;
use crate::meta;
use crate::registry::Registry;
use crate::resources::known;

/// An image reference's registry host and path, as docker's reference normalisation reads it
/// (distribution/reference `normalize.go` `splitDockerDomain`): the first component is a host
/// when it has a `.` or `:` or is `localhost`; otherwise the image is on Docker Hub.
pub(crate) fn registry_and_path(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    let (host, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ if name.contains('/') => ("docker.io".to_string(), name.to_string()),
        _ => ("docker.io".to_string(), format!("library/{name}")),
    };
    let path = match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => path.to_string(),
        _ => rest,
    };
    (host, path)
}

/// The tag (or `latest`) a pull resolves.
fn reference(image: &str) -> String {
    if let Some((_, digest)) = image.split_once('@') {
        return digest.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag.to_string(),
        None => "latest".to_string(),
    }
}

/// `URLsMatchStr` after the kubelet's key parsing: `https://index.docker.io/v1/` and
/// `docker.io` name Docker Hub (`keyring.go` `defaultRegistryHost`, `parseSchemelessURL`).
fn entry_matches(key: &str, host: &str, path: &str) -> bool {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (key_host, key_path) = match key.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (key, ""),
    };
    let hub = |h: &str| matches!(h, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    let key_path = if hub(key_host) && key_path == "v1" {
        ""
    } else {
        key_path
    };
    let same_host = key_host == host || (hub(key_host) && hub(host));
    same_host
        && (key_path.is_empty() || path == key_path || path.starts_with(&format!("{key_path}/")))
}

/// The username and password of one config entry.
fn login_of(entry: &Value) -> Option<(String, String)> {
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some((user.to_string(), password.to_string()));
    }
    Some((
        entry.get("username")?.as_str()?.to_string(),
        entry.get("password")?.as_str()?.to_string(),
    ))
}

/// Every login the pod's pull Secrets offer for `host`/`path`, in the pod's order.
fn offered_logins(
    registry: &Registry,
    pod: &Value,
    host: &str,
    path: &str,
) -> Vec<(String, String)> {
    let ns = meta::namespace(pod);
    let mut logins = Vec::new();
    let names = pod
        .at("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str));
    for name in names {
        let Ok(secret) = registry.get(known::secrets(), ns, name) else {
            continue;
        };
        let (key, wrapped) = match secret.get("type").and_then(Value::as_str) {
            Some("kubernetes.io/dockerconfigjson") => (".dockerconfigjson", true),
            Some("kubernetes.io/dockercfg") => (".dockercfg", false),
            _ => continue,
        };
        let Some(config) = secret
            .at(&format!("/data/{}", key.replace('/', "~1")))
            .and_then(Value::as_str)
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        else {
            continue;
        };
        let auths = if wrapped {
            config.get("auths")
        } else {
            Some(&config)
        };
        for (server, entry) in auths.and_then(Value::as_object).into_iter().flatten() {
            if entry_matches(server, host, path)
                && let Some(login) = login_of(entry)
            {
                logins.push(login);
            }
        }
    }
    logins
}

/// Why a pull of the pod's images is refused, if one is: the first image on a private registry
/// for which no offered login is the registry's own.
pub(crate) fn pull_refused(
    registries: &[RegistryLogin],
    registry: &Registry,
    pod: &Value,
) -> Option<String> {
    if registries.is_empty() {
        return None;
    }
    let images = pod
        .at("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("image").and_then(Value::as_str));
    for image in images {
        let (host, path) = registry_and_path(image);
        let Some(private) = registries.iter().find(|r| r.host == host) else {
            continue;
        };
        let logins = offered_logins(registry, pod, &host, &path);
        if logins
            .iter()
            .any(|(u, p)| *u == private.username && *p == private.password)
        {
            continue;
        }
        let reference = reference(image);
        let separator = if reference.starts_with("sha256:") {
            "@"
        } else {
            ":"
        };
        let qualified = format!("{host}/{path}{separator}{reference}");
        return Some(format!(
            "failed to pull and unpack image {qualified:?}: failed to resolve reference {qualified:?}: unexpected status from HEAD request to https://{host}/v2/{path}/manifests/{reference}: 401 Unauthorized"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker_normalize_go() {
        assert_eq!(
            registry_and_path("nginx"),
            ("docker.io".into(), "library/nginx".into())
        );
        assert_eq!(
            registry_and_path("me/app:1"),
            ("docker.io".into(), "me/app".into())
        );
        assert_eq!(
            registry_and_path("registry.example.com:5000/team/app:2@sha256:ab"),
            ("registry.example.com:5000".into(), "team/app".into())
        );
        assert_eq!(
            registry_and_path("localhost/app"),
            ("localhost".into(), "app".into())
        );
        assert_eq!(reference("reg.io/app"), "latest");
        assert_eq!(reference("reg.io:5000/app:v2"), "v2");
    }

    /// keyring.go URLsMatchStr: scheme ignored, host exact, path a prefix; Docker Hub aliases.
    #[test]
    fn entries_match_like_keyring_go() {
        assert!(entry_matches("https://reg.io", "reg.io", "team/app"));
        assert!(entry_matches("reg.io/team", "reg.io", "team/app"));
        assert!(!entry_matches("reg.io/other", "reg.io", "team/app"));
        assert!(!entry_matches("reg.io", "reg.io:5000", "app"));
        assert!(!entry_matches("evil-reg.io", "reg.io", "app"));
        assert!(entry_matches(
            "https://index.docker.io/v1/",
            "docker.io",
            "me/app"
        ));
    }
}
