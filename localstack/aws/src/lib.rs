//! The local stack: everything needed to run the platform on one machine without a cloud account.
//!
//! [`AwsEmulator`] runs moto (pinned in `localstack/aws/requirements.txt`) from a project-local venv on
//! 127.0.0.1, seeded with the public AWS data moto lacks (see `moto_server.py`). Tests start their
//! own emulator on a free port; dropping the handle stops it.

pub mod front;
mod venv;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use front::{Front, FrontStats, Profile};
pub use venv::{Venv, VenvError};

/// How long a cold moto start (imports plus managed IAM policies) may take before we give up.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Environment every AWS SDK client pointed at the emulator needs: static dummy credentials and no
/// instance-metadata probing (which would reach for 169.254.169.254).
pub const EMULATOR_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_REGION", "ap-northeast-2"),
];

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(transparent)]
    Venv(#[from] VenvError),
    #[error("could not start the AWS emulator ({command}): {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("the AWS emulator exited before it was ready; its output:\n{output}")]
    EarlyExit { output: String },
    #[error("the AWS emulator was not ready within {0:?}")]
    Timeout(Duration),
    #[error("reset of the AWS emulator failed: {0}")]
    Reset(String),
}

/// Where the emulator listens.
#[derive(Debug, Clone, Copy)]
pub enum Port {
    /// A free port chosen by the OS: what tests use, so that they never collide.
    Any,
    Fixed(u16),
}

/// A running moto server; stopped when dropped.
#[derive(Debug)]
pub struct AwsEmulator {
    child: Child,
    endpoint: String,
}

impl AwsEmulator {
    /// Prepares the venv if needed, starts moto on 127.0.0.1 and waits until it answers.
    pub async fn start(port: Port) -> Result<Self, EmulatorError> {
        let venv = Venv::project()?;
        let python = venv.ensure().await?;
        let script = repo_root()
            .join("localstack")
            .join("aws")
            .join("moto_server.py");
        let port = match port {
            Port::Any => 0,
            Port::Fixed(p) => p,
        };
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| EmulatorError::Spawn {
            command: format!("{} {}", python.display(), script.display()),
            source,
        })?;
        let endpoint = tokio::time::timeout(START_DEADLINE, wait_ready(&mut child))
            .await
            .map_err(|_| EmulatorError::Timeout(START_DEADLINE))??;
        tracing::info!(%endpoint, "AWS emulator ready");
        Ok(Self { child, endpoint })
    }

    /// The single URL every AWS service is served on (for `AWS_ENDPOINT_URL` or `--endpoint`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Forgets every resource (moto's `POST /moto-api/reset`); the seeded public data stays.
    pub async fn reset(&self) -> Result<(), EmulatorError> {
        let url = format!("{}/moto-api/reset", self.endpoint);
        http_post(&url)
            .await
            .map_err(|e| EmulatorError::Reset(e.to_string()))
    }

    /// Waits until the process ends (for the foreground `localstack aws` command).
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn wait_ready(child: &mut Child) -> Result<String, EmulatorError> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut output = String::new();
    if let Some(stdout) = stdout {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(endpoint) = line.strip_prefix("READY ") {
                // Keep draining stderr so moto never blocks on a full pipe.
                if let Some(stderr) = stderr {
                    tokio::spawn(drain(BufReader::new(stderr)));
                }
                tokio::spawn(drain(lines.into_inner()));
                return Ok(endpoint.trim().to_owned());
            }
            output.push_str(&line);
            output.push('\n');
        }
    }
    if let Some(stderr) = stderr {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            output.push_str(&line);
            output.push('\n');
        }
    }
    Err(EmulatorError::EarlyExit { output })
}

async fn drain<R: tokio::io::AsyncBufRead + Unpin>(reader: R) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "moto", "{line}");
    }
}

/// A bodyless HTTP/1.1 POST over a plain TCP stream: the emulator's admin API needs nothing more,
/// and this keeps an HTTP client out of the launcher's dependencies.
async fn http_post(url: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// endpoints are supported"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let head = String::from_utf8_lossy(&response);
    if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(std::io::Error::other(
            head.lines().next().unwrap_or("no response").to_owned(),
        ))
    }
}

/// The repository root: where `localstack/` and the venv live. `KDEPLOY_ROOT` overrides it for a
/// binary run outside the checkout.
pub fn repo_root() -> PathBuf {
    match std::env::var_os("KDEPLOY_ROOT") {
        Some(root) => PathBuf::from(root),
        // This crate sits at `<root>/localstack/aws`.
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .map(PathBuf::from)
            .unwrap_or_default(),
    }
}
