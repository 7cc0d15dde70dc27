//! Shared set-up for tests against the local AWS emulator: each test starts its own moto on a
//! free port (stopped when the test ends) and uses its own stack names.

#![allow(dead_code, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use localstack::{AwsEmulator, Front, Port};
use provisioner::aws::{CallLog, Target};
use provisioner::config::{Overrides, StackConfig, StackFile};
use provisioner::plan::{Context, Plan};
use provisioner::progress::RecordedProgress;
use provisioner::{Aws, remaining};

pub async fn emulator() -> AwsEmulator {
    AwsEmulator::start(Port::Any)
        .await
        .expect("the AWS emulator starts (needs python3; the venv is created on first use)")
}

/// The default stack under another name, with deadlines short enough for a test to fail fast.
pub fn config(name: &str) -> StackConfig {
    let mut config = StackFile::default()
        .resolve(&Overrides {
            name: Some(name.to_owned()),
            ..Overrides::default()
        })
        .expect("valid test configuration");
    config.timeouts.cluster_limit = Duration::from_secs(60);
    config.timeouts.resources_limit = Duration::from_secs(60);
    config.timeouts.poll = Duration::from_millis(250);
    config
}

/// A run against the emulator, with its own call log and recorded progress.
pub struct Run {
    pub cx: Context,
    pub calls: CallLog,
    pub progress: Arc<RecordedProgress>,
}

/// Where a test's AWS calls go: the emulator itself, or a realistic front before it.
pub trait Endpoint {
    fn url(&self) -> String;
}

impl Endpoint for AwsEmulator {
    fn url(&self) -> String {
        self.endpoint().to_owned()
    }
}

impl Endpoint for Front {
    fn url(&self) -> String {
        self.endpoint()
    }
}

pub async fn run(emulator: &impl Endpoint, config: StackConfig) -> Run {
    let calls = CallLog::default();
    let target = Target::Local {
        endpoint: emulator.url(),
    };
    let aws = Aws::connect(&target, &config.region, calls.clone()).await;
    let progress = Arc::new(RecordedProgress::default());
    Run {
        cx: Context::new(config, aws, progress.clone()),
        calls,
        progress,
    }
}

pub async fn up(emulator: &impl Endpoint, name: &str) -> Run {
    let run = run(emulator, config(name)).await;
    Plan::infrastructure()
        .up(&run.cx)
        .await
        .unwrap_or_else(|e| panic!("up of {name} failed: {e}"));
    run
}

pub async fn down(emulator: &impl Endpoint, name: &str) -> Run {
    let run = run(emulator, config(name)).await;
    Plan::infrastructure()
        .down(&run.cx)
        .await
        .unwrap_or_else(|e| panic!("down of {name} failed: {e}"));
    run
}

/// Everything of the stack still in AWS, as `kind name` lines (empty when all is gone).
pub async fn left(emulator: &impl Endpoint, name: &str) -> Vec<String> {
    let run = run(emulator, config(name)).await;
    remaining(&Plan::infrastructure(), &run.cx)
        .await
        .expect("inspecting the stack")
        .into_iter()
        .map(|(step, r)| format!("{step}: {} {} {}", r.kind, r.name, r.id.unwrap_or_default()))
        .collect()
}
