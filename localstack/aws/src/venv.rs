//! The project-local Python venv that holds the pinned emulator (and `just`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    #[error("{action} failed: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("the venv task panicked")]
    Join,
}

/// A venv at `<root>/.venv` installed from `<root>/localstack/aws/requirements.txt`.
#[derive(Debug, Clone)]
pub struct Venv {
    dir: PathBuf,
    requirements: PathBuf,
}

impl Venv {
    pub fn project() -> Result<Self, VenvError> {
        let root = crate::repo_root();
        Ok(Self {
            dir: root.join(".venv"),
            requirements: root.join("localstack").join("aws").join("requirements.txt"),
        })
    }

    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// Creates or updates the venv when the pinned requirements changed, and returns its python.
    /// Safe to call from many test processes at once: they serialise on a lock file.
    pub async fn ensure(&self) -> Result<PathBuf, VenvError> {
        let venv = self.clone();
        tokio::task::spawn_blocking(move || venv.ensure_blocking())
            .await
            .map_err(|_| VenvError::Join)?
    }

    fn ensure_blocking(&self) -> Result<PathBuf, VenvError> {
        let wanted = read(&self.requirements)?;
        let stamp = self.dir.join(".requirements.installed");
        if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return Ok(self.python());
        }
        let lock_path = self
            .dir
            .parent()
            .unwrap_or(Path::new("."))
            .join(".venv.lock");
        let lock = fs::File::create(&lock_path).map_err(|source| VenvError::Io {
            action: format!("creating {}", lock_path.display()),
            source,
        })?;
        lock.lock().map_err(|source| VenvError::Io {
            action: format!("locking {}", lock_path.display()),
            source,
        })?;
        // Another process may have finished the install while we waited for the lock.
        if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
            return Ok(self.python());
        }
        if !self.python().exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&self.dir))?;
        }
        run(Command::new(self.python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&self.requirements))?;
        fs::write(&stamp, wanted).map_err(|source| VenvError::Io {
            action: format!("writing {}", stamp.display()),
            source,
        })?;
        Ok(self.python())
    }
}

fn read(path: &Path) -> Result<String, VenvError> {
    fs::read_to_string(path).map_err(|source| VenvError::Io {
        action: format!("reading {}", path.display()),
        source,
    })
}

fn run(command: &mut Command) -> Result<(), VenvError> {
    let rendered = format!("{command:?}");
    let out = command.output().map_err(|source| VenvError::Io {
        action: format!("running {rendered}"),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(VenvError::Command {
        command: rendered,
        status: out.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}
