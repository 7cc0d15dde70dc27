//! Rules for what developers type about a repository, shared by the pages and the JSON API.

use serde::Deserialize;

use super::env::{self, EnvInput, Environment, SecretInput, SecretValues, VarInput};
use super::image::{self, normalise_image};
use crate::field_error::FieldError;
use crate::json_fields::{optional_text, text};

/// What the create form and API accept, as typed (numbers may come as JSON numbers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryInput {
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    #[serde(default, deserialize_with = "text")]
    pub image: String,
    #[serde(default, deserialize_with = "text")]
    pub port: String,
    #[serde(default, deserialize_with = "text")]
    pub replicas: String,
    /// Plain variables (API only; the page sets them on the repository's Environment page).
    #[serde(default)]
    pub env: Vec<VarInput>,
    /// Secret variables, each with its value.
    #[serde(default)]
    pub secrets: Vec<SecretInput>,
}

/// A validated repository: what the Kubernetes objects are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySpec {
    pub name: String,
    /// Normalised image reference, with `:latest` added when no tag or digest was given.
    pub image: String,
    pub port: i32,
    pub replicas: i32,
    /// Variables as the Deployment holds them (secret values are never here).
    pub env: Environment,
    /// The namespace's registry login the pods pull with, when it has one for the image's
    /// registry (decided by the store, never by the input).
    pub pull: Option<super::registries::PullRef>,
    /// Whether it has a public route (an Ingress on the public host). A compose service that
    /// publishes no port has none: the namespace's other repositories reach it by its Service
    /// name only.
    pub public: bool,
    /// The compose project it was deployed with, if any.
    pub group: Option<String>,
}

impl RepositorySpec {
    /// `latest` images are pulled on every start so a redeploy picks up a new push.
    pub fn pulls_always(&self) -> bool {
        image::uses_latest(&self.image)
    }
}

pub const NAME_RULE: &str = "Lowercase letters, digits and '-', starting with a letter, ending with a letter or digit, at most 63 characters.";
pub const IMAGE_RULE: &str = "A public image such as nginx, nginx:1.27 or ghcr.io/org/app@sha256:…; the tag latest is used when none is given.";
pub const PORT_RULE: &str = "The port your container listens on, 1 to 65535.";

pub fn replicas_rule(max: i32) -> String {
    format!("How many copies run at once, 1 to {max}.")
}

/// Validates every field and returns all errors at once, so the form can show each next to its field.
pub fn validate_repository(
    input: &RepositoryInput,
    max_replicas: i32,
) -> Result<RepositorySpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let name = input.name.trim();
    if let Err(m) = check_dns1035_label(name).and_then(|()| check_route_segment(name)) {
        errors.push(FieldError::new("name", m));
    }
    let image = match normalise_image(input.image.trim()) {
        Ok(i) => i,
        Err(m) => {
            errors.push(FieldError::new("image", m));
            String::new()
        }
    };
    let port = match parse_port(input.port.trim()) {
        Ok(p) => p,
        Err(m) => {
            errors.push(FieldError::new("port", m));
            0
        }
    };
    let replicas = match parse_replicas(input.replicas.trim(), max_replicas) {
        Ok(r) => r,
        Err(m) => {
            errors.push(FieldError::new("replicas", m));
            0
        }
    };
    if errors.is_empty() {
        Ok(RepositorySpec {
            name: name.to_string(),
            image,
            port,
            replicas,
            env: Environment::default(),
            pull: None,
            public: true,
            group: None,
        })
    } else {
        Err(errors)
    }
}

/// A new repository with its variables: the spec and the secret values to store, or every
/// fault of both at once.
pub fn validate_new_repository(
    input: &RepositoryInput,
    max_replicas: i32,
) -> Result<(RepositorySpec, SecretValues), Vec<FieldError>> {
    let env_input = EnvInput {
        env: input.env.clone(),
        secrets: input.secrets.clone(),
    };
    match (
        validate_repository(input, max_replicas),
        env::validate_environment(&env_input, &[]),
    ) {
        (Ok(mut spec), Ok(change)) => {
            spec.env.vars = change.vars;
            Ok((spec, change.values))
        }
        (spec, change) => Err(spec
            .err()
            .into_iter()
            .flatten()
            .chain(change.err().into_iter().flatten())
            .collect()),
    }
}

/// Repository names become Deployment, Service and Ingress names, so they follow DNS-1035.
pub fn check_dns1035_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Enter a name.".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "Use at most 63 characters (this has {}).",
            name.len()
        ));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("Use lowercase letters only.".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "'{c}' is not allowed: use lowercase letters, digits and '-'."
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("Start with a letter.".into());
    }
    if name.ends_with('-') {
        return Err("End with a letter or digit.".into());
    }
    Ok(())
}

/// Names that become a segment of a route path `/<namespace>/<repo>/` must not make a path that the
/// ingress controller refuses. NGINX Ingress Controller 5.5.4 (the version the platform installs)
/// rejects every Ingress path matching `^/etc/|/root|/var|\\n|\\r$` ("must not contain invalid
/// paths", internal/k8s/validation.go `illegalKeywordFmt` at tag v5.5.4): the alternation is not
/// anchored, so any segment starting with `root` or `var` is refused, and `/etc/` at the start.
pub fn check_route_segment(name: &str) -> Result<(), String> {
    if let Some(word) = ["var", "root"].into_iter().find(|w| name.starts_with(w)) {
        return Err(format!(
            "Names starting with '{word}' are refused: the NGINX Ingress Controller rejects route paths containing '/{word}'."
        ));
    }
    if name == "etc" {
        return Err(
            "'etc' is refused: the NGINX Ingress Controller rejects route paths starting with '/etc/'."
                .into(),
        );
    }
    Ok(())
}

pub fn parse_port(raw: &str) -> Result<i32, String> {
    if raw.is_empty() {
        return Err("Enter the port your container listens on.".into());
    }
    match raw.parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as i32),
        Ok(p) => Err(format!("{p} is not a port: use 1 to 65535.")),
        Err(_) => Err("Enter a whole number from 1 to 65535.".into()),
    }
}

pub fn parse_replicas(raw: &str, max: i32) -> Result<i32, String> {
    if raw.is_empty() {
        return Ok(1);
    }
    match raw.parse::<i64>() {
        Ok(r) if r >= 1 && r <= i64::from(max) => Ok(r as i32),
        Ok(r) => Err(format!("{r} is out of range: use 1 to {max}.")),
        Err(_) => Err(format!("Enter a whole number from 1 to {max}.")),
    }
}

/// A change as typed on the detail page or sent to the API; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeInput {
    #[serde(default, deserialize_with = "optional_text")]
    pub image: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    pub port: Option<String>,
    #[serde(default, deserialize_with = "optional_text")]
    pub replicas: Option<String>,
}

/// A change to a running repository, checked; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub image: Option<String>,
    pub port: Option<i32>,
    pub replicas: Option<i32>,
    /// Replace every pod (same image), through the `restartedAt` template annotation.
    pub restart: bool,
}

impl Change {
    /// Replaces every pod without changing anything else.
    pub fn restart() -> Self {
        Self {
            restart: true,
            ..Self::default()
        }
    }
}

pub fn validate_change(input: &ChangeInput, max_replicas: i32) -> Result<Change, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut change = Change::default();
    if let Some(image) = &input.image {
        match normalise_image(image.trim()) {
            Ok(i) => change.image = Some(i),
            Err(m) => errors.push(FieldError::new("image", m)),
        }
    }
    if let Some(port) = &input.port {
        match parse_port(port.trim()) {
            Ok(p) => change.port = Some(p),
            Err(m) => errors.push(FieldError::new("port", m)),
        }
    }
    if let Some(replicas) = &input.replicas {
        if replicas.trim().is_empty() {
            errors.push(FieldError::new(
                "replicas",
                format!("Enter a whole number from 1 to {max_replicas}."),
            ));
        } else {
            match parse_replicas(replicas.trim(), max_replicas) {
                Ok(r) => change.replicas = Some(r),
                Err(m) => errors.push(FieldError::new("replicas", m)),
            }
        }
    }
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, image: &str, port: &str, replicas: &str) -> RepositoryInput {
        RepositoryInput {
            name: name.into(),
            image: image.into(),
            port: port.into(),
            replicas: replicas.into(),
            ..RepositoryInput::default()
        }
    }

    fn fields(result: Result<RepositorySpec, Vec<FieldError>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn accepts_a_plain_repository_and_adds_latest() {
        let spec = validate_repository(&input("hello", "nginx", "80", ""), 5).unwrap();
        assert_eq!(spec.image, "nginx:latest");
        assert_eq!(spec.port, 80);
        assert_eq!(spec.replicas, 1);
        assert!(spec.pulls_always());
    }

    #[test]
    fn repository_name_table() {
        let long = "a".repeat(64);
        let cases: &[(&str, bool)] = &[
            ("api-v2", true),
            ("a", true),
            (&long[..63], true),
            ("Hello", false),
            ("my.app", false),
            ("1app", false),
            ("app-", false),
            ("-app", false),
            ("my_app", false),
            (&long, false),
            ("", false),
        ];
        for (name, ok) in cases {
            assert_eq!(check_dns1035_label(name).is_ok(), *ok, "name {name:?}");
        }
    }

    #[test]
    fn names_nginx_ingress_controller_5_5_4_refuses_in_paths_are_refused() {
        for name in ["var", "variables", "root", "rootless", "etc"] {
            let result = validate_repository(&input(name, "nginx", "80", "1"), 3);
            let message = &result.expect_err(name)[0];
            assert_eq!(message.field, "name", "{name}");
            assert!(
                message.message.contains("NGINX Ingress Controller"),
                "{name}: {message:?}"
            );
        }
        for name in ["avar", "my-root", "etcd", "web"] {
            assert!(
                validate_repository(&input(name, "nginx", "80", "1"), 3).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn image_table() {
        let digest = format!("nginx@sha256:{}", "a".repeat(64));
        // A tag and a digest together: what a webhook's pin makes of `ghcr.io/org/app:1.0`.
        let tag_and_digest = format!("ghcr.io/org/app:1.0@sha256:{}", "0b".repeat(32));
        let upper_digest = format!("nginx:1.27@sha256:{}", "A".repeat(64));
        let short_digest = format!("nginx:1.27@sha256:{}", "a".repeat(63));
        let cases: Vec<(&str, Option<&str>)> = vec![
            (&tag_and_digest, Some(&tag_and_digest)),
            (&upper_digest, None),
            (&short_digest, None),
            ("nginx", Some("nginx:latest")),
            ("nginx:1.27", Some("nginx:1.27")),
            ("library/nginx", Some("library/nginx:latest")),
            ("ghcr.io/org/app:v1.0", Some("ghcr.io/org/app:v1.0")),
            ("localhost:5000/app", Some("localhost:5000/app:latest")),
            (&digest, Some(&digest)),
            ("nginx :1", None),
            ("ngi nx", None),
            ("Nginx", None),
            ("nginx@sha256:abc", None),
            (
                "nginx@md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                None,
            ),
            ("nginx:", None),
            ("nginx:-bad", None),
            ("org//app", None),
            ("app-", None),
            ("", None),
        ];
        for (image, expected) in cases {
            let got = normalise_image(image);
            match expected {
                Some(e) => assert_eq!(got.as_deref(), Ok(e), "image {image:?}"),
                None => assert!(got.is_err(), "image {image:?} should be rejected"),
            }
        }
        let pinned = |image: &str| {
            validate_repository(&input("a", image, "80", "1"), 5)
                .unwrap()
                .pulls_always()
        };
        assert!(!pinned(&digest));
        assert!(!pinned(&format!("nginx:latest@sha256:{}", "a".repeat(64))));
        assert!(!pinned("nginx:1.27"));
        assert!(pinned("nginx:latest"));
    }

    #[test]
    fn port_and_replicas_table() {
        for (port, ok) in [
            ("1", true),
            ("65535", true),
            ("0", false),
            ("70000", false),
            ("-1", false),
            ("eighty", false),
            ("", false),
        ] {
            assert_eq!(parse_port(port).is_ok(), ok, "port {port:?}");
        }
        for (replicas, ok) in [
            ("1", true),
            ("5", true),
            ("", true),
            ("0", false),
            ("6", false),
            ("two", false),
        ] {
            assert_eq!(
                parse_replicas(replicas, 5).is_ok(),
                ok,
                "replicas {replicas:?}"
            );
        }
    }

    #[test]
    fn reports_every_bad_field_at_once() {
        let got = fields(validate_repository(
            &input("Bad.Name", "ngi nx", "0", "9"),
            5,
        ));
        assert_eq!(got, ["name", "image", "port", "replicas"]);
    }
}

#[cfg(test)]
mod change_tests {
    use super::*;

    #[test]
    fn change_validates_only_given_fields() {
        let ok = validate_change(
            &ChangeInput {
                image: Some("nginx:1.27".into()),
                port: None,
                replicas: Some("3".into()),
            },
            5,
        )
        .unwrap();
        assert_eq!(
            ok,
            Change {
                image: Some("nginx:1.27".into()),
                port: None,
                replicas: Some(3),
                restart: false,
            }
        );
        let errors = validate_change(
            &ChangeInput {
                image: Some("bad image".into()),
                port: Some("0".into()),
                replicas: Some("0".into()),
            },
            5,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["image", "port", "replicas"]);
    }
}
