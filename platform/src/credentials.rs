//! The first administrator's credentials, which the site writes once into a Secret of its own
//! namespace (as Argo CD does with `argocd-initial-admin-secret`), so the installer can show them
//! without knowing how the site stores its accounts.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::error::{Error, Result};
use crate::names::{INITIAL_ADMIN_SECRET, SYSTEM_NAMESPACE};

/// The Secret's data keys, agreed with the site.
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";

/// A username and its password; `Debug` hides the password so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// `kdeploy-system/kdeploy-initial-admin`, as errors and progress lines name it.
pub fn secret_name() -> String {
    format!("{SYSTEM_NAMESPACE}/{INITIAL_ADMIN_SECRET}")
}

impl Credentials {
    /// Reads the credentials out of the site's Secret; both keys must hold UTF-8 text.
    pub fn from_secret(secret: &Secret) -> Result<Self> {
        let field = |key: &'static str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Credentials {
                    secret: secret_name(),
                    key,
                })
        };
        Ok(Self {
            username: field(USERNAME_KEY)?,
            password: field(PASSWORD_KEY)?,
        })
    }
}

/// The first administrator's credentials while the site's Secret exists (the administrator is
/// told to delete it once the password is changed); `None` once it is gone.
pub async fn initial_admin(client: &kube::Client) -> Result<Option<Credentials>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let secret = secrets
        .get_opt(INITIAL_ADMIN_SECRET)
        .await
        .map_err(|e| Error::api("reading", format!("Secret {}", secret_name()), e))?;
    secret.as_ref().map(Credentials::from_secret).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn both_keys_are_required_and_the_password_stays_out_of_debug() {
        let creds =
            Credentials::from_secret(&secret(&[("username", b"operator"), ("password", b"pw1")]))
                .unwrap();
        assert_eq!(creds.username, "operator");
        assert!(!format!("{creds:?}").contains("pw1"));
        let err = Credentials::from_secret(&secret(&[("username", b"operator")])).unwrap_err();
        assert!(err.to_string().contains("\"password\""), "{err}");
        assert!(
            Credentials::from_secret(&secret(&[("username", b"\xff"), ("password", b"x")]))
                .is_err()
        );
    }
}
