//! Passwords and usernames: the rules for both, argon2id hashing off the async runtime, and the
//! generated first password.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;

use crate::config::PasswordCost;
use crate::error::AppError;

/// First path segments the site serves; a namespace with one of these names would shadow a page.
pub const SITE_PATHS: &[&str] = &[
    "api",
    "static",
    "login",
    "logout",
    "register",
    "healthz",
    "readyz",
    "repos",
    "admin",
    "openapi",
    "account",
    "hooks",
    "metrics",
    "registries",
    "compose",
    "console",
];

/// Namespaces Kubernetes itself uses.
pub const KUBERNETES_NAMESPACES: &[&str] =
    &["kube-system", "kube-public", "kube-node-lease", "default"];

/// Letters and digits that cannot be mistaken for one another when read off a terminal.
const UNAMBIGUOUS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Length of a generated password: about 116 bits from the unambiguous alphabet.
pub const GENERATED_PASSWORD_LEN: usize = 20;

/// A password for an account nobody has typed one for yet (the first administrator).
pub fn generate_password() -> String {
    let mut rng = rand::rng();
    (0..GENERATED_PASSWORD_LEN)
        .map(|_| char::from(UNAMBIGUOUS[rng.random_range(0..UNAMBIGUOUS.len())]))
        .collect()
}

fn hasher(cost: PasswordCost) -> Result<Argon2<'static>, AppError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.lanes, None)
        .map_err(|_| AppError::PasswordHash(argon2::password_hash::Error::ParamsInvalid))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes off the async runtime: argon2 is deliberately slow.
pub async fn hash_password(password: &str, cost: PasswordCost) -> Result<String, AppError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let hash = hasher(cost)?
            .hash_password(password.as_bytes())
            .map_err(AppError::PasswordHash)?;
        Ok(hash.to_string())
    })
    .await?
}

pub async fn verify_password(password: &str, hash: &str) -> Result<bool, AppError> {
    let password = password.to_string();
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return Ok(false);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

/// Usernames are namespace names (DNS-1123 labels) and must not collide with the platform's own.
pub fn check_username(name: &str, platform_namespaces: &[String]) -> Result<(), String> {
    if name.is_empty() {
        return Err("Enter a username.".into());
    }
    if name.len() > 63 {
        return Err("Use at most 63 characters.".into());
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !name.chars().all(allowed) {
        return Err("Use lowercase letters, digits and '-' only.".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("Start and end with a letter or digit.".into());
    }
    let reserved = KUBERNETES_NAMESPACES.contains(&name)
        || SITE_PATHS.contains(&name)
        || platform_namespaces.iter().any(|n| n == name)
        || name.starts_with("kube-")
        || name.starts_with("kdeploy");
    if reserved {
        return Err(format!("'{name}' is reserved; choose another username."));
    }
    // The username is the first segment of every route path of the user's repositories.
    crate::repositories::validation::check_route_segment(name)
}

pub const PASSWORD_RULE: &str = "At least 10 characters.";

pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 10 {
        return Err("Use at least 10 characters.".into());
    }
    if n > 256 {
        return Err("Use at most 256 characters.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let cost = PasswordCost {
            memory_kib: 64,
            iterations: 1,
            lanes: 1,
        };
        let hash = hash_password("correct horse", cost).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash).await.unwrap());
        assert!(!verify_password("wrong horse", &hash).await.unwrap());
        assert!(!verify_password("x", "not a hash").await.unwrap());
    }

    /// The cost the site runs with (every other test uses a cheap one): OWASP's argon2id
    /// parameters end up in the hash, and the hash verifies.
    #[tokio::test]
    async fn production_cost_hashes_with_owasps_parameters_and_verifies() {
        let cost = PasswordCost::default();
        assert_eq!(
            (cost.memory_kib, cost.iterations, cost.lanes),
            (19 * 1024, 2, 1)
        );
        let hash = hash_password("correct horse battery", cost).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify_password("correct horse battery", &hash)
                .await
                .unwrap()
        );
        assert!(
            !verify_password("correct horse battery!", &hash)
                .await
                .unwrap()
        );
    }

    #[test]
    fn generated_passwords_are_long_unambiguous_and_pass_the_rule() {
        let p = generate_password();
        assert_eq!(p.chars().count(), GENERATED_PASSWORD_LEN);
        assert!(p.bytes().all(|b| UNAMBIGUOUS.contains(&b)));
        assert!(check_password(&p).is_ok());
        assert_ne!(p, generate_password());
    }

    #[test]
    fn username_table() {
        let platform = vec!["kdeploy-system".to_string(), "nginx-ingress".to_string()];
        for (name, ok) in [
            ("alice", true),
            ("team-7", true),
            ("7team", true),
            ("Alice", false),
            ("al.ice", false),
            ("kube-system", false),
            ("kube-anything", false),
            ("default", false),
            ("kdeploy-system", false),
            ("nginx-ingress", false),
            ("api", false),
            ("static", false),
            ("login", false),
            ("logout", false),
            ("healthz", false),
            ("readyz", false),
            ("metrics", false),
            ("registries", false),
            ("compose", false),
            ("console", false),
            ("repos", false),
            ("admin", false),
            ("account", false),
            ("-x", false),
        ] {
            assert_eq!(
                check_username(name, &platform).is_ok(),
                ok,
                "username {name:?}"
            );
        }
        assert!(check_username(&"a".repeat(64), &platform).is_err());
    }
}
