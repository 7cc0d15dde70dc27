//! The Docker image reference grammar (`[registry[:port]/]path[:tag][@digest]`), checked before a
//! reference reaches the cluster so a typo is refused next to the field instead of failing a pull.

/// Whether the reference pulls the moving `latest` tag (a digest pins it whatever the tag).
pub fn uses_latest(image: &str) -> bool {
    !image.contains('@') && split_tag(image).1 == Some("latest")
}

/// Splits `repo[:tag]`, minding that a registry host may carry a port (`host:5000/app`).
pub(crate) fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference, None),
    }
}

/// Checks the Docker reference grammar and adds `:latest` when neither tag nor digest is given.
pub fn normalise_image(image: &str) -> Result<String, String> {
    if image.is_empty() {
        return Err("Enter an image, for example nginx or ghcr.io/org/app:1.0.".into());
    }
    if image.chars().any(char::is_whitespace) {
        return Err("Remove the spaces: an image reference has none.".into());
    }
    if image.len() > 255 {
        return Err("Use at most 255 characters.".into());
    }
    let (name_and_tag, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        check_digest(d)?;
    }
    let (name, tag) = split_tag(name_and_tag);
    if let Some(t) = tag {
        check_tag(t)?;
    }
    check_repository_path(name)?;
    if tag.is_none() && digest.is_none() {
        Ok(format!("{image}:latest"))
    } else {
        Ok(image.to_string())
    }
}

/// A `sha256:` digest of 64 lowercase hex digits, the only form a registry's push names
/// (opencontainers/image-spec descriptor.md, "Digests": sha256 is the registered algorithm
/// every implementation must support, its encoded part `[a-f0-9]{64}`).
pub(crate) fn check_sha256_digest(digest: &str) -> Result<(), String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) => {
            Ok(())
        }
        _ => Err(format!(
            "'{digest}' is not a sha256 digest: use sha256: followed by 64 lowercase hex digits."
        )),
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("A digest looks like sha256: followed by 64 hex digits.".into());
    };
    let hex_ok = hex
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    let valid = match algorithm {
        "sha256" => hex.len() == 64 && hex_ok,
        "sha512" => hex.len() == 128 && hex_ok,
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{digest}' is not a valid digest: use sha256: followed by 64 lowercase hex digits."
        ))
    }
}

pub(crate) fn check_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{tag}' is not a valid tag: use letters, digits, '_', '.' and '-', at most 128."
        ))
    }
}

pub(crate) fn check_repository_path(name: &str) -> Result<(), String> {
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components.first().copied().unwrap_or_default();
    let has_registry = components.len() > 1
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        check_registry_host(first)?;
        components.remove(0);
    }
    for component in components {
        check_path_component(component)?;
    }
    Ok(())
}

fn check_registry_host(host: &str) -> Result<(), String> {
    let (hostname, port) = match host.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    let host_ok = !hostname.is_empty()
        && hostname.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(format!("'{host}' is not a valid registry host."))
    }
}

/// A path component: lowercase alphanumerics separated by '.', '_', '__' or runs of '-'.
fn check_path_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("The image name has an empty part (check the '/').".into());
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("Image names are lowercase.".into());
    }
    let chars: Vec<char> = component.chars().collect();
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first_last_ok =
        chars.first().is_some_and(|c| alnum(*c)) && chars.last().is_some_and(|c| alnum(*c));
    let chars_ok = chars
        .iter()
        .all(|c| alnum(*c) || matches!(c, '.' | '_' | '-'));
    let separators_ok = !component.contains("..")
        && !component.contains("___")
        && !component.contains("._")
        && !component.contains("_.")
        && !component.contains(".-")
        && !component.contains("-.")
        && !component.contains("_-")
        && !component.contains("-_");
    if first_last_ok && chars_ok && separators_ok {
        Ok(())
    } else {
        Err(format!(
            "'{component}' is not a valid image name part: use lowercase letters and digits separated by '.', '_' or '-'."
        ))
    }
}
