//! Writes or merges the operator's kubeconfig entry for a stack's cluster. The user entry runs
//! `provisioner token` as an exec credential plugin, so `kubectl` works without the AWS CLI.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::error::{Error, Result};

/// One cluster's entry: names, where it is, and how to get a token for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Used for the cluster, user and context names.
    pub name: String,
    pub server: String,
    /// Base64 CA bundle; `None` for a plain-HTTP local simulator.
    pub certificate_authority: Option<String>,
    /// The credential plugin: command and arguments printing an ExecCredential.
    pub exec_command: String,
    pub exec_args: Vec<String>,
}

/// Where kubectl looks: the first path of `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_path() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return first;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".kube").join("config")
}

fn named(name: &str, key: &str, body: Value) -> Value {
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    m.insert(key.into(), body);
    Value::Mapping(m)
}

fn entry_values(entry: &Entry) -> (Value, Value, Value) {
    let mut cluster = Mapping::new();
    cluster.insert("server".into(), entry.server.clone().into());
    if let Some(ca) = &entry.certificate_authority {
        cluster.insert("certificate-authority-data".into(), ca.clone().into());
    }
    let mut exec = Mapping::new();
    exec.insert(
        "apiVersion".into(),
        "client.authentication.k8s.io/v1beta1".into(),
    );
    exec.insert("command".into(), entry.exec_command.clone().into());
    exec.insert(
        "args".into(),
        Value::Sequence(entry.exec_args.iter().cloned().map(Value::from).collect()),
    );
    exec.insert("interactiveMode".into(), "Never".into());
    let mut user = Mapping::new();
    user.insert("exec".into(), Value::Mapping(exec));
    let mut context = Mapping::new();
    context.insert("cluster".into(), entry.name.clone().into());
    context.insert("user".into(), entry.name.clone().into());
    (
        named(&entry.name, "cluster", Value::Mapping(cluster)),
        named(&entry.name, "user", Value::Mapping(user)),
        named(&entry.name, "context", Value::Mapping(context)),
    )
}

/// Puts `entry` into `existing` (a kubeconfig document, or empty), replacing entries of the
/// same name and keeping everything else; makes it the current context. `path` names the file
/// in errors.
pub fn merge(path: &Path, existing: &str, entry: &Entry) -> Result<String> {
    let yaml = |source| Error::KubeconfigYaml {
        path: path.to_owned(),
        source,
    };
    let shape = |problem: String| Error::KubeconfigShape {
        path: path.to_owned(),
        problem,
    };
    let mut doc: Value = if existing.trim().is_empty() {
        Value::Mapping(Mapping::new())
    } else {
        serde_yaml::from_str(existing).map_err(yaml)?
    };
    let root = doc
        .as_mapping_mut()
        .ok_or_else(|| shape("the document is not a mapping".into()))?;
    root.entry("apiVersion".into()).or_insert("v1".into());
    root.entry("kind".into()).or_insert("Config".into());
    let (cluster, user, context) = entry_values(entry);
    for (key, value) in [
        ("clusters", cluster),
        ("users", user),
        ("contexts", context),
    ] {
        let list = root
            .entry(key.into())
            .or_insert(Value::Sequence(Vec::new()));
        if list.is_null() {
            *list = Value::Sequence(Vec::new());
        }
        let list = list
            .as_sequence_mut()
            .ok_or_else(|| shape(format!("`{key}` is not a list")))?;
        list.retain(|item| item.get("name").and_then(Value::as_str) != Some(entry.name.as_str()));
        list.push(value);
    }
    root.insert("current-context".into(), entry.name.clone().into());
    serde_yaml::to_string(&doc).map_err(yaml)
}

/// Merges `entry` into the kubeconfig at `path` (created if missing), written atomically.
pub fn write(path: &Path, entry: &Entry) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Error::KubeconfigRead {
                path: path.to_owned(),
                source,
            });
        }
    };
    let merged = merge(path, &existing, entry)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::KubeconfigWrite {
            path: path.to_owned(),
            source,
        })?;
    }
    let temporary = path.with_extension("kdeploy-tmp");
    write_private(&temporary, merged.as_bytes())
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&temporary);
            Error::KubeconfigWrite {
                path: path.to_owned(),
                source,
            }
        })
}

/// Writes `contents` to a new file that is owner-only (0600, as kubectl writes kubeconfigs) from
/// its creation, so no one else can open it while the credentials go in. A file already at
/// `path` (the leftover of an interrupted write, or someone else's) is never written into, since
/// whoever holds it open would read them: it is removed, and a new one created in its place.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            create()?
        }
        other => other?,
    };
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            server: "https://ABC.gr7.ap-northeast-2.eks.amazonaws.com".into(),
            certificate_authority: Some("Q0E=".into()),
            exec_command: "/usr/local/bin/provisioner".into(),
            exec_args: vec!["token".into(), "--name".into(), name.into()],
        }
    }

    #[test]
    fn a_new_file_gets_cluster_user_and_context() {
        let text = merge(Path::new("config"), "", &entry("kdeploy")).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["current-context"], "kdeploy");
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        let exec = &doc["users"][0]["user"]["exec"];
        assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1beta1");
        assert_eq!(exec["args"][0], "token");
        assert_eq!(doc["contexts"][0]["context"]["user"], "kdeploy");
    }

    #[test]
    fn merging_keeps_other_entries_and_replaces_ours() {
        let other = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'https://other'}\nusers: []\ncontexts: []\ncurrent-context: other\npreferences: {colors: true}\n";
        let once = merge(Path::new("config"), other, &entry("kdeploy")).unwrap();
        let twice = merge(Path::new("config"), &once, &entry("kdeploy")).unwrap();
        let doc: Value = serde_yaml::from_str(&twice).unwrap();
        let names: Vec<&str> = doc["clusters"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["other", "kdeploy"]);
        assert_eq!(doc["preferences"]["colors"], true);
        assert_eq!(doc["current-context"], "kdeploy");
    }

    #[test]
    fn written_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("kdeploy-kubeconfig-{}", std::process::id()));
        let path = dir.join("config");
        // An existing kubeconfig others could read is replaced by a private one.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, &entry("kdeploy")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A temporary file left where `write` puts its own (readable by others, and held open by
    /// someone) receives nothing: the credentials go into a new owner-only file.
    #[test]
    fn a_temporary_file_already_there_does_not_leak_the_credentials() {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("kdeploy-kubeconfig-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        let temporary = path.with_extension("kdeploy-tmp");
        std::fs::write(&temporary, "stale").unwrap();
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut reader = std::fs::File::open(&temporary).unwrap();

        write(&path, &entry("kdeploy")).unwrap();

        let mut seen = String::new();
        reader.read_to_string(&mut seen).unwrap();
        assert_eq!(seen, "stale", "nothing was written into the old file");
        assert!(!temporary.exists());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("provisioner"), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
