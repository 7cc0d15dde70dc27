//! A repository's environment: plain variables in the Deployment's container `env`, secret ones in
//! one Secret per repository (`<repo>-env`, owned by the Deployment) referenced by `secretKeyRef`.
//!
//! Secret values go one way only: from the form or API into the Secret. They are never in a
//! `RepositorySpec`, the mirror, a response, a log line or an error message; [`SecretValue`] has
//! no `Debug` or `Display` of its content, so a `tracing` field or `{:?}` cannot print one.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Container, EnvVar as KubeEnvVar, EnvVarSource, Secret, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::field_error::FieldError;
use crate::json_fields::{optional_text, text};

/// At most this many variables, plain and secret together.
pub const MAX_VARS: usize = 100;
/// At most this many bytes in one value.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;
/// At most this many bytes in all names and values together: well inside the 1 MiB a Secret may
/// hold ("Individual Secrets are limited to 1MiB in size", kubernetes.io/docs/concepts/configuration/secret/
/// "Restriction on Secret size") and small enough for the Deployment object, which etcd stores
/// whole (its request limit is 1.5 MiB).
pub const MAX_TOTAL_BYTES: usize = 256 * 1024;
/// Secret keys are config keys, at most 253 characters (apimachinery `IsConfigMapKey`).
pub const MAX_NAME_BYTES: usize = 253;
/// The prefix of the variables the kubelet injects for the `kubernetes` Service in every
/// container (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_PORT`, …; pkg/kubelet/kubelet_pods.go
/// `getServiceEnvVarMap`): a variable of the repository with such a name would silently replace
/// them and break every in-cluster client, so the site refuses the whole prefix.
pub const RESERVED_PREFIX: &str = "KUBERNETES_";

/// Pod template annotation with a salted digest of the Secret's content: a changed secret value
/// changes the template, so the Deployment rolls (env is read only when a container starts).
pub const SECRET_DIGEST: &str = "kdeploy.dev/env-secret-digest";
/// Annotation of the Secret with the salt of [`SECRET_DIGEST`]: whoever may read Deployments but
/// not Secrets cannot test guesses of a short value against the digest.
pub const DIGEST_SALT: &str = "kdeploy.dev/env-digest-salt";

pub const NAME_RULE: &str = "Letters, digits and '_', not starting with a digit (a C identifier, as shells and most runtimes need); not starting with KUBERNETES_; at most 253 characters; each name once.";
pub const VALUE_RULE: &str = "At most 32 KiB each and 256 KiB in all; no NUL character.";
pub const SECRET_RULE: &str =
    "Secret values are never shown again. Leave the value empty to keep the stored one.";

/// The Secret holding a repository's secret variables.
pub fn secret_name(repo: &str) -> String {
    format!("{repo}-env")
}

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Plain(String),
    /// A key of the repository's Secret, named like the variable.
    Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub source: EnvSource,
}

/// A repository's variables as its Deployment holds them: values of plain ones, names of secret
/// ones, and the digest that makes a secret change roll the pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub vars: Vec<EnvVar>,
    pub secret_digest: Option<String>,
}

impl Environment {
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.vars
            .iter()
            .filter(|v| v.source == EnvSource::Secret)
            .map(|v| v.name.as_str())
    }

    /// The variables of a repository's Deployment.
    pub fn of_deployment(d: &k8s_openapi::api::apps::v1::Deployment) -> Self {
        let template = d.spec.as_ref().map(|s| &s.template);
        environment_of(
            d.metadata.name.as_deref().unwrap_or_default(),
            template
                .and_then(|t| t.spec.as_ref())
                .and_then(|p| p.containers.first()),
            template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref()),
        )
    }

    pub fn has_secrets(&self) -> bool {
        self.secret_names().next().is_some()
    }

    /// What the API and pages show: plain values, secret names only.
    pub fn view(&self) -> EnvironmentView {
        let mut view = EnvironmentView::default();
        for var in &self.vars {
            match &var.source {
                EnvSource::Plain(value) => view.env.push(PlainVarView {
                    name: var.name.clone(),
                    value: value.clone(),
                }),
                EnvSource::Secret => view.secrets.push(SecretVarView {
                    name: var.name.clone(),
                }),
            }
        }
        view
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnvironmentView {
    pub env: Vec<PlainVarView>,
    pub secrets: Vec<SecretVarView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlainVarView {
    pub name: String,
    pub value: String,
}

/// A secret variable as anyone may see it: its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretVarView {
    pub name: String,
}

/// A secret value; it prints as `<secret>` whatever it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// Secret values by variable name.
pub type SecretValues = BTreeMap<String, SecretValue>;

/// A plain variable as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarInput {
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    #[serde(default, deserialize_with = "text")]
    pub value: String,
}

/// A secret variable as typed: no value keeps the stored one.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretInput {
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    #[serde(default, deserialize_with = "optional_text")]
    pub value: Option<String>,
}

impl std::fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretInput")
            .field("name", &self.name)
            .field("value", &self.value.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// The whole environment as sent: it replaces what the repository had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvInput {
    #[serde(default)]
    pub env: Vec<VarInput>,
    #[serde(default)]
    pub secrets: Vec<SecretInput>,
}

/// A checked environment: the variables in order (plain, then secret) and the secret values that
/// were sent; a secret variable without one keeps its stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvChange {
    pub vars: Vec<EnvVar>,
    pub values: SecretValues,
}

impl EnvChange {
    /// The position of a secret variable in the `secrets` list, for its field name.
    pub fn secret_index(&self, name: &str) -> usize {
        self.vars
            .iter()
            .filter(|v| v.source == EnvSource::Secret)
            .position(|v| v.name == name)
            .unwrap_or(0)
    }
}

/// Checks a variable name: a C identifier, `[A-Za-z_][A-Za-z0-9_]*`.
///
/// Kubernetes itself is laxer: since 1.34 (`RelaxedEnvironmentVariableValidation`, GA) it accepts
/// any printable ASCII but '=' (pkg/apis/core/validation/validation.go `validateEnvVarName`;
/// before, `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`). The site keeps C identifiers: a shell
/// cannot read `A-B` or `A.B` as a variable, many runtimes and `$(VAR)` users trip over them,
/// and the names must also be Secret keys (`[-._a-zA-Z0-9]+`), which identifiers always are.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Enter a name.".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "Use at most {MAX_NAME_BYTES} characters (this has {}).",
            name.len()
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("Start with a letter or '_', not a digit.".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        let shown = if c.is_ascii_graphic() || c == ' ' {
            format!("'{c}'")
        } else {
            format!("U+{:04X}", u32::from(c))
        };
        return Err(format!(
            "{shown} is not allowed: use letters, digits and '_' (a C identifier)."
        ));
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "Names starting with {RESERVED_PREFIX} are refused: Kubernetes sets such variables (KUBERNETES_SERVICE_HOST, …) in every container, and yours would replace them."
        ));
    }
    Ok(())
}

/// Checks a value; the message never contains the value.
fn check_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "Use at most {} KiB per value (this has {} bytes).",
            MAX_VALUE_BYTES / 1024,
            value.len()
        ));
    }
    if value.contains('\0') {
        return Err("Remove the NUL character: values are text.".into());
    }
    Ok(())
}

/// Checks every variable and reports every fault at once, naming the field (`env[3].name`).
/// `stored_secrets` are the secret names the repository has now: only those may come without a
/// value.
pub fn validate_environment(
    input: &EnvInput,
    stored_secrets: &[&str],
) -> Result<EnvChange, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut change = EnvChange::default();
    let mut first_use: BTreeMap<String, String> = BTreeMap::new();
    let mut total = 0usize;
    let count = input.env.len() + input.secrets.len();
    if count > MAX_VARS {
        errors.push(FieldError::new(
            if input.secrets.len() > input.env.len() {
                "secrets"
            } else {
                "env"
            },
            format!(
                "Use at most {MAX_VARS} variables, plain and secret together (this has {count})."
            ),
        ));
    }
    let mut name_ok = |name: &str, field: String, errors: &mut Vec<FieldError>| -> bool {
        if let Err(m) = check_name(name) {
            errors.push(FieldError::new(&format!("{field}.name"), m));
            return false;
        }
        if let Some(earlier) = first_use.get(name) {
            errors.push(FieldError::new(
                &format!("{field}.name"),
                format!("{name} is already set by {earlier}: use each name once."),
            ));
            return false;
        }
        first_use.insert(name.to_string(), field);
        true
    };
    for (i, var) in input.env.iter().enumerate() {
        let field = format!("env[{i}]");
        let ok = name_ok(&var.name, field.clone(), &mut errors);
        total += var.name.len() + var.value.len();
        match check_value(&var.value) {
            Err(m) => errors.push(FieldError::new(&format!("{field}.value"), m)),
            Ok(()) if ok => change.vars.push(EnvVar {
                name: var.name.clone(),
                source: EnvSource::Plain(var.value.clone()),
            }),
            Ok(()) => {}
        }
    }
    for (i, var) in input.secrets.iter().enumerate() {
        let field = format!("secrets[{i}]");
        let ok = name_ok(&var.name, field.clone(), &mut errors);
        total += var.name.len();
        let value = match var.value.as_deref() {
            // An empty value keeps the stored one, as an empty password field on the page does.
            None | Some("") => {
                if ok && !stored_secrets.contains(&var.name.as_str()) {
                    errors.push(FieldError::new(
                        &format!("{field}.value"),
                        format!(
                            "Enter a value: {} is a new secret variable, so there is no stored value to keep.",
                            var.name
                        ),
                    ));
                }
                None
            }
            Some(v) => {
                total += v.len();
                match check_value(v) {
                    Ok(()) => Some(v),
                    Err(m) => {
                        errors.push(FieldError::new(&format!("{field}.value"), m));
                        None
                    }
                }
            }
        };
        if ok {
            change.vars.push(EnvVar {
                name: var.name.clone(),
                source: EnvSource::Secret,
            });
            if let Some(v) = value {
                change
                    .values
                    .insert(var.name.clone(), SecretValue::new(v.to_string()));
            }
        }
    }
    if total > MAX_TOTAL_BYTES {
        errors.push(FieldError::new(
            "env",
            format!(
                "Use at most {} KiB for all names and values together (this has {} KiB).",
                MAX_TOTAL_BYTES / 1024,
                total.div_ceil(1024)
            ),
        ));
    }
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

/// The container's `env` for the repository's variables.
pub fn container_env(repo: &str, env: &Environment) -> Option<Vec<KubeEnvVar>> {
    if env.vars.is_empty() {
        return None;
    }
    let secret = secret_name(repo);
    Some(
        env.vars
            .iter()
            .map(|var| match &var.source {
                EnvSource::Plain(value) => KubeEnvVar {
                    name: var.name.clone(),
                    value: Some(value.clone()),
                    value_from: None,
                },
                EnvSource::Secret => KubeEnvVar {
                    name: var.name.clone(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.clone(),
                            key: var.name.clone(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                },
            })
            .collect(),
    )
}

/// The repository's variables as its Deployment holds them; entries the site did not write
/// (other references) are not the repository's variables and are left out.
pub fn environment_of(
    repo: &str,
    container: Option<&Container>,
    template_annotations: Option<&BTreeMap<String, String>>,
) -> Environment {
    let secret = secret_name(repo);
    let vars = container
        .and_then(|c| c.env.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let source = match &e.value_from {
                None => EnvSource::Plain(e.value.clone().unwrap_or_default()),
                Some(from) => match &from.secret_key_ref {
                    Some(r) if r.name == secret && r.key == e.name => EnvSource::Secret,
                    _ => return None,
                },
            };
            Some(EnvVar {
                name: e.name.clone(),
                source,
            })
        })
        .collect();
    Environment {
        vars,
        secret_digest: template_annotations.and_then(|a| a.get(SECRET_DIGEST).cloned()),
    }
}

/// A salted SHA-256 of the Secret's content (names and values, length-prefixed, in name order).
pub fn digest(salt: &str, data: &BTreeMap<String, SecretValue>) -> String {
    let mut hash = Sha256::new();
    hash.update(salt.as_bytes());
    for (name, value) in data {
        for part in [name.as_str(), value.expose()] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The repository's Secret: type Opaque, labelled like the repository's other objects, owned by
/// its Deployment so that deleting the repository removes it.
pub fn secret(
    namespace: &str,
    repo: &str,
    salt: &str,
    data: &BTreeMap<String, SecretValue>,
    owner: OwnerReference,
    labels: BTreeMap<String, String>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(repo)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                DIGEST_SALT.to_string(),
                salt.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose().as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The values a Secret holds, by key; a value that is not UTF-8 (which the site never writes)
/// is left out, so it is not kept.
pub fn values_of(secret: &Secret) -> SecretValues {
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| {
            String::from_utf8(v.0.clone())
                .ok()
                .map(|s| (k.clone(), SecretValue::new(s)))
        })
        .collect()
}

pub fn salt_of(secret: &Secret) -> Option<String> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(DIGEST_SALT)
        .cloned()
}

/// Builds the input from a submitted form: repeated `env_name`/`env_value` and
/// `secret_name`/`secret_value` pairs, in order. Rows left empty are skipped; `rows` maps each
/// variable back to its row on the page.
pub fn from_form(body: &[u8]) -> (EnvInput, FormRows) {
    let mut plain: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut secret: Vec<(Option<String>, Option<String>)> = Vec::new();
    for (key, value) in form_urlencoded::parse(body) {
        let (list, is_name) = match key.as_ref() {
            "env_name" => (&mut plain, true),
            "env_value" => (&mut plain, false),
            "secret_name" => (&mut secret, true),
            "secret_value" => (&mut secret, false),
            _ => continue,
        };
        let free = if is_name {
            list.iter().position(|(n, _)| n.is_none())
        } else {
            list.iter().position(|(_, v)| v.is_none())
        };
        let index = free.unwrap_or_else(|| {
            list.push((None, None));
            list.len() - 1
        });
        let value = Some(value.into_owned());
        if let Some(slot) = list.get_mut(index) {
            if is_name {
                slot.0 = value;
            } else {
                slot.1 = value;
            }
        }
    }
    let mut input = EnvInput::default();
    let mut rows = FormRows::default();
    for (row, (name, value)) in plain.into_iter().enumerate() {
        let (name, value) = (name.unwrap_or_default(), value.unwrap_or_default());
        if name.trim().is_empty() && value.is_empty() {
            continue;
        }
        rows.env.push(row);
        input.env.push(VarInput {
            name: name.trim().to_string(),
            value,
        });
    }
    for (row, (name, value)) in secret.into_iter().enumerate() {
        let name = name.unwrap_or_default();
        if name.trim().is_empty() && value.as_deref().is_none_or(str::is_empty) {
            continue;
        }
        rows.secrets.push(row);
        input.secrets.push(SecretInput {
            name: name.trim().to_string(),
            value: value.filter(|v| !v.is_empty()),
        });
    }
    (input, rows)
}

/// The page row of each variable of a form's input.
#[derive(Debug, Clone, Default)]
pub struct FormRows {
    pub env: Vec<usize>,
    pub secrets: Vec<usize>,
}

impl FormRows {
    /// Renames `env[2].name` to the field of its row on the page (`env-row-5-name`).
    pub fn field_of(&self, field: &str) -> String {
        let (list, rest, kind) = if let Some(rest) = field.strip_prefix("env[") {
            (&self.env, rest, "env")
        } else if let Some(rest) = field.strip_prefix("secrets[") {
            (&self.secrets, rest, "secret")
        } else {
            return field.to_string();
        };
        let Some((index, part)) = rest.split_once("].") else {
            return field.to_string();
        };
        match index.parse::<usize>().ok().and_then(|i| list.get(i)) {
            Some(row) => format!("{kind}-{row}-{part}"),
            None => field.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(pairs: &[(&str, &str)]) -> Vec<VarInput> {
        pairs
            .iter()
            .map(|(n, v)| VarInput {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect()
    }

    fn secrets(pairs: &[(&str, Option<&str>)]) -> Vec<SecretInput> {
        pairs
            .iter()
            .map(|(n, v)| SecretInput {
                name: (*n).into(),
                value: v.map(str::to_string),
            })
            .collect()
    }

    fn fields(result: Result<EnvChange, Vec<FieldError>>) -> Vec<String> {
        result
            .expect_err("refused")
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn names_are_c_identifiers_per_the_sites_rule_not_kubernetes_relaxed_one() {
        let long = "A".repeat(254);
        for (name, ok) in [
            ("A", true),
            ("_x", true),
            ("DATABASE_URL", true),
            ("a1_b2", true),
            (&long[..253], true),
            ("1ABC", false),
            ("A-B", false),
            ("A.B", false),
            ("A B", false),
            ("", false),
            ("É", false),
            ("KUBERNETES_SERVICE_HOST", false),
            ("KUBERNETES_X", false),
            (long.as_str(), false),
        ] {
            assert_eq!(check_name(name).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn every_fault_names_its_field() {
        let input = EnvInput {
            env: plain(&[
                ("OK", "1"),
                ("1ABC", "x"),
                ("A-B", "y"),
                ("", "z"),
                ("OK", "2"),
            ]),
            secrets: secrets(&[("OK", Some("s")), ("NEW", None), ("NUL", Some("a\0b"))]),
        };
        assert_eq!(
            fields(validate_environment(&input, &[])),
            [
                "env[1].name",
                "env[2].name",
                "env[3].name",
                "env[4].name",
                "secrets[0].name",
                "secrets[1].value",
                "secrets[2].value"
            ]
        );
    }

    #[test]
    fn limits_on_count_and_size() {
        let many: Vec<(String, String)> = (0..=MAX_VARS)
            .map(|i| (format!("V{i}"), "x".into()))
            .collect();
        let input = EnvInput {
            env: many
                .iter()
                .map(|(n, v)| VarInput {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
            ..EnvInput::default()
        };
        assert_eq!(fields(validate_environment(&input, &[])), ["env"]);
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let input = EnvInput {
            env: plain(&[("A", &big)]),
            ..EnvInput::default()
        };
        assert_eq!(fields(validate_environment(&input, &[])), ["env[0].value"]);
        let most = "x".repeat(MAX_VALUE_BYTES);
        let input = EnvInput {
            env: (0..9)
                .map(|i| VarInput {
                    name: format!("V{i}"),
                    value: most.clone(),
                })
                .collect(),
            ..EnvInput::default()
        };
        assert_eq!(fields(validate_environment(&input, &[])), ["env"]);
    }

    #[test]
    fn a_secret_without_a_value_keeps_a_stored_one_only() {
        let input = EnvInput {
            env: plain(&[("MODE", "prod")]),
            secrets: secrets(&[("TOKEN", None), ("KEY", Some("v"))]),
        };
        let change = validate_environment(&input, &["TOKEN"]).unwrap();
        assert_eq!(change.vars.len(), 3);
        assert_eq!(change.values.keys().collect::<Vec<_>>(), ["KEY"]);
        assert_eq!(change.secret_index("KEY"), 1);
        assert_eq!(
            fields(validate_environment(&input, &[])),
            ["secrets[0].value"]
        );
    }

    #[test]
    fn messages_and_debug_never_carry_a_secret_value() {
        let marker = "MARKER-7c1e";
        let input = EnvInput {
            secrets: secrets(&[
                ("A", Some(&format!("{marker}\0"))),
                (
                    "B",
                    Some(&format!("{marker}{}", "x".repeat(MAX_VALUE_BYTES))),
                ),
            ]),
            ..EnvInput::default()
        };
        assert!(!format!("{input:?}").contains(marker));
        let errors = validate_environment(&input, &[]).unwrap_err();
        assert!(!format!("{errors:?}").contains(marker));
        let ok = EnvInput {
            secrets: secrets(&[("A", Some(marker))]),
            ..EnvInput::default()
        };
        assert!(!format!("{:?}", validate_environment(&ok, &[]).unwrap()).contains(marker));
    }

    #[test]
    fn the_deployment_env_round_trips_and_references_the_secret() {
        let env = Environment {
            vars: vec![
                EnvVar {
                    name: "MODE".into(),
                    source: EnvSource::Plain("prod".into()),
                },
                EnvVar {
                    name: "TOKEN".into(),
                    source: EnvSource::Secret,
                },
            ],
            secret_digest: Some("d".into()),
        };
        let kube = container_env("hello", &env).unwrap();
        let r = kube[1]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str()), ("hello-env", "TOKEN"));
        let container = Container {
            env: Some(kube),
            ..Container::default()
        };
        let annotations = BTreeMap::from([(SECRET_DIGEST.to_string(), "d".to_string())]);
        assert_eq!(
            environment_of("hello", Some(&container), Some(&annotations)),
            env
        );
        assert_eq!(
            env.view().secrets,
            [SecretVarView {
                name: "TOKEN".into()
            }]
        );
    }

    #[test]
    fn the_digest_changes_with_any_value_and_with_the_salt() {
        let data = |v: &str| BTreeMap::from([("A".to_string(), SecretValue::new(v.into()))]);
        assert_eq!(digest("s", &data("1")), digest("s", &data("1")));
        assert_ne!(digest("s", &data("1")), digest("s", &data("2")));
        assert_ne!(digest("s", &data("1")), digest("t", &data("1")));
    }

    #[test]
    fn form_rows_pair_up_and_blank_rows_are_skipped() {
        let (input, rows) = from_form(
            b"env_name=A&env_value=1&env_name=&env_value=&env_name=B&env_value=x%3Dy&secret_name=S&secret_value=&secret_name=&secret_value=",
        );
        assert_eq!(input.env, plain(&[("A", "1"), ("B", "x=y")]));
        assert_eq!(input.secrets, secrets(&[("S", None)]));
        assert_eq!(rows.field_of("env[1].name"), "env-2-name");
        assert_eq!(rows.field_of("secrets[0].value"), "secret-0-value");
    }
}
