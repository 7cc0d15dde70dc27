//! `web targets` as its pod runs it: settings from the environment (a missing or wrong one named
//! with its rule), credentials from the AWS SDK's default chain (here the environment's), the
//! target group kept equal to the simulator's Ready nodes, each change logged with the node's
//! name, and a prompt, clean stop on SIGTERM.
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, TargetTypeEnum};
use cluster::{ClusterSim, SimConfig};
use tokio::process::{Child, Command};

/// The binary cargo built for this package's tests (the same build, nothing rebuilt).
const WEB: &str = env!("CARGO_BIN_EXE_web");
const ARN: &str = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/kdeploy-http/50dc6c495c0c9188";

/// `web targets` with `vars` as its whole AWS/kdeploy environment.
fn targets(vars: &[(&str, &str)], kubeconfig: Option<&PathBuf>) -> Child {
    let mut command = Command::new(WEB);
    command.arg("targets").env("RUST_LOG", "info");
    for name in [
        "KDEPLOY_TARGET_GROUP_ARN",
        "KDEPLOY_TARGET_PORT",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "KUBECONFIG",
    ] {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    if let Some(kubeconfig) = kubeconfig {
        command.env("KUBECONFIG", kubeconfig);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits for the process and returns how it ended and everything it logged.
async fn finish(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().await.unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, log)
}

#[tokio::test]
async fn a_missing_or_wrong_setting_is_refused_naming_the_variable_and_the_rule() {
    let complete = [
        ("KDEPLOY_TARGET_GROUP_ARN", ARN),
        ("KDEPLOY_TARGET_PORT", "30080"),
        ("AWS_REGION", "ap-northeast-2"),
    ];
    let without = |name: &str| -> Vec<(&str, &str)> {
        complete
            .iter()
            .copied()
            .filter(|(n, _)| *n != name)
            .collect()
    };
    let with = |name: &'static str, value: &'static str| -> Vec<(&str, &str)> {
        let mut vars = without(name);
        vars.push((name, value));
        vars
    };
    for (vars, says) in [
        (
            without("KDEPLOY_TARGET_GROUP_ARN"),
            "KDEPLOY_TARGET_GROUP_ARN is not set: must be the ARN of an ELBv2 target group",
        ),
        (
            without("KDEPLOY_TARGET_PORT"),
            "KDEPLOY_TARGET_PORT is not set: must be the targets' port",
        ),
        (
            without("AWS_REGION"),
            "AWS_REGION is not set: must be an AWS region",
        ),
        (
            with("KDEPLOY_TARGET_PORT", "http"),
            "KDEPLOY_TARGET_PORT = \"http\": must be the targets' port, a number from 1 to 65535",
        ),
        (
            with("KDEPLOY_TARGET_GROUP_ARN", "kdeploy-http"),
            "KDEPLOY_TARGET_GROUP_ARN = \"kdeploy-http\": must be the ARN of an ELBv2 target group",
        ),
        (
            with("AWS_ENDPOINT_URL", "127.0.0.1:5000"),
            "AWS_ENDPOINT_URL = \"127.0.0.1:5000\": must be http:// or https://",
        ),
    ] {
        let child = targets(&vars, None);
        let (status, log) = tokio::time::timeout(Duration::from_secs(20), finish(child))
            .await
            .expect("web targets gave up at once");
        assert!(!status.success(), "{vars:?}: {log}");
        assert!(log.contains(says), "{vars:?}: expected {says:?} in {log}");
    }
}

/// `ip:port` of every target the group holds.
async fn registered(elbv2: &aws_sdk_elasticloadbalancingv2::Client, arn: &str) -> BTreeSet<String> {
    let health = elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .unwrap();
    health
        .target_health_descriptions()
        .iter()
        .map(|d| {
            let t = d.target().unwrap();
            format!("{}:{}", t.id().unwrap(), t.port().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn web_targets_registers_the_ready_nodes_and_stops_promptly_on_sigterm() {
    let emulator = aws::AwsEmulator::start(aws::Port::Any).await.unwrap();
    let sim = ClusterSim::start(SimConfig::default()).await.unwrap();
    let kubeconfig = std::env::temp_dir().join(format!(
        "kdeploy-web-targets-{}-{}.yaml",
        std::process::id(),
        sim.ingress_addr().port()
    ));
    tokio::fs::write(&kubeconfig, sim.kubeconfig_yaml().unwrap())
        .await
        .unwrap();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("ap-northeast-2"))
        .endpoint_url(emulator.endpoint())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    let vpc = aws_sdk_ec2::Client::new(&sdk)
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    let group = elbv2
        .create_target_group()
        .name("kdeploy-http")
        .protocol(ProtocolEnum::Tcp)
        .port(30080)
        .vpc_id(vpc.vpc().unwrap().vpc_id().unwrap())
        .target_type(TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap();
    let arn = group.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();

    // The SDK's default chain finds these credentials in the environment, as it finds the node
    // role through IMDS on a node.
    let mut child = targets(
        &[
            ("KDEPLOY_TARGET_GROUP_ARN", &arn),
            ("KDEPLOY_TARGET_PORT", "30080"),
            ("AWS_REGION", "ap-northeast-2"),
            ("AWS_ENDPOINT_URL", emulator.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        Some(&kubeconfig),
    );
    let want: BTreeSet<String> = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
        .iter()
        .map(|ip| format!("{ip}:30080"))
        .collect();
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("web targets exited ({status}): {}", finish(child).await.1);
        }
        let seen = registered(&elbv2, &arn).await;
        if seen == want {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            child.start_kill().unwrap();
            panic!(
                "waited {limit:?} for the targets {want:?}; last seen {seen:?}: {}",
                finish(child).await.1
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let (status, log) = tokio::time::timeout(Duration::from_secs(3), finish(child))
        .await
        .expect("web targets stopped within 3 s of SIGTERM");
    assert!(
        status.success(),
        "a clean exit, not a kill: {status}: {log}"
    );
    assert!(log.contains("SIGTERM"), "{log}");
    for node in ["sim-node-1", "sim-node-2", "sim-node-3"] {
        assert!(
            log.lines()
                .any(|l| l.contains("registered") && l.contains(node)),
            "the registration of {node} is logged with its name: {log}"
        );
    }
    let _ = tokio::fs::remove_file(&kubeconfig).await;
}
