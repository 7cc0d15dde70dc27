//! What lets the in-cluster targets controller keep the NLB's targets, against the AWS emulator
//! and checked with plain SDK calls: the node role's inline policy scoped to the stack's target
//! group (put once, put again only when it differs, removed by `down`), the launch template's
//! IMDS options (an older template gets a new version), and `sync-targets`' repair by the
//! controller's own rule.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

mod common;

use aws_sdk_ec2::types::{
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    RequestLaunchTemplateData,
};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use common::{down, emulator, left, run, up};
use provisioner::ingress::HTTP_NODE_PORT;
use provisioner::plan::Context;
use provisioner::progress::Action;
use provisioner::steps;
use provisioner::steps::load_balancer::LoadBalancer;
use provisioner::steps::targets;
use serde_json::Value;

/// The node role's `<stack>-targets` policy as IAM returns it (URL-encoded), parsed.
async fn node_role_policy(cx: &Context) -> Result<Value, String> {
    let out = cx
        .aws
        .clients
        .iam
        .get_role_policy()
        .role_name(cx.stack.node_role())
        .policy_name(format!("{}-targets", cx.stack.name))
        .send()
        .await
        .map_err(|e| format!("{}", aws_sdk_iam::error::DisplayErrorContext(e)))?;
    let document = percent_encoding::percent_decode_str(out.policy_document()).decode_utf8_lossy();
    Ok(serde_json::from_str(&document).unwrap())
}

fn target_group_arn(cx: &Context) -> String {
    cx.outputs
        .get::<LoadBalancer>()
        .expect("an up ran")
        .target_group_arn
        .clone()
}

async fn latest_template(cx: &Context) -> aws_sdk_ec2::types::ResponseLaunchTemplateData {
    let versions = cx
        .aws
        .clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(cx.stack.launch_template())
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    versions.launch_template_versions()[0]
        .launch_template_data()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_node_role_may_keep_only_the_stacks_target_group_and_down_removes_the_policy() {
    let emu = emulator().await;
    let first = up(&emu, "keeper").await;
    let arn = target_group_arn(&first.cx);

    let policy = node_role_policy(&first.cx)
        .await
        .expect("the inline policy");
    let statements = policy["Statement"].as_array().unwrap();
    let keeps = statements
        .iter()
        .find(|s| s["Action"].to_string().contains("RegisterTargets"))
        .unwrap();
    assert_eq!(
        keeps["Action"],
        serde_json::json!([
            "elasticloadbalancing:RegisterTargets",
            "elasticloadbalancing:DeregisterTargets"
        ])
    );
    assert_eq!(
        keeps["Resource"],
        arn.as_str(),
        "exactly the stack's target group"
    );
    let reads = statements
        .iter()
        .find(|s| s["Action"] == "elasticloadbalancing:DescribeTargetHealth")
        .unwrap();
    assert_eq!(reads["Resource"], "*");
    assert_eq!(statements.len(), 2, "{policy}");

    // IMDSv2 only, one hop: only host-network pods reach the node role.
    let data = latest_template(&first.cx).await;
    let metadata = data.metadata_options().expect("metadata options");
    assert_eq!(
        metadata.http_tokens(),
        Some(&LaunchTemplateHttpTokensState::Required)
    );
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
    assert_eq!(
        metadata.http_endpoint(),
        Some(&LaunchTemplateInstanceMetadataEndpointState::Enabled)
    );

    // `plan`/`status` show the policy and what it allows.
    let inspected = steps::infrastructure().inspect(&first.cx).await;
    let (_, found) = inspected
        .iter()
        .find(|(step, _)| *step == targets::ID.name())
        .unwrap();
    let found = found.as_ref().unwrap();
    let shown = found
        .iter()
        .find(|r| r.kind == "IAM inline policy")
        .expect("the policy is shown");
    assert!(
        shown.id.is_some() && shown.state.contains(&arn),
        "{shown:?}"
    );

    down(&emu, "keeper").await;
    assert_eq!(left(&emu, "keeper").await, Vec::<String>::new());
    common::assert_nothing_left(&emu, "keeper", "down").await;
    let gone = node_role_policy(&first.cx).await.unwrap_err();
    assert!(gone.contains("NoSuchEntity"), "{gone}");
    let role = first
        .cx
        .aws
        .clients
        .iam
        .get_role()
        .role_name(first.cx.stack.node_role())
        .send()
        .await;
    assert!(role.is_err(), "the node role is gone");
}

#[tokio::test]
async fn a_changed_policy_is_put_back_and_an_unchanged_one_left_alone() {
    let emu = emulator().await;
    let first = up(&emu, "drift").await;
    let iam = &first.cx.aws.clients.iam;
    let wide = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "elasticloadbalancing:*",
            "Resource": "*"
        }]
    });
    iam.put_role_policy()
        .role_name(first.cx.stack.node_role())
        .policy_name("drift-targets")
        .policy_document(wide.to_string())
        .send()
        .await
        .unwrap();

    let again = up(&emu, "drift").await;
    let arn = target_group_arn(&again.cx);
    assert_eq!(
        node_role_policy(&again.cx).await.unwrap(),
        targets::targets_policy(&arn)
    );
    assert!(
        again
            .cx
            .changes()
            .iter()
            .any(|c| c.kind == "IAM inline policy" && c.action == Action::Updated),
        "{:?}",
        again.cx.changes()
    );
    let third = up(&emu, "drift").await;
    assert_eq!(
        third.calls.counts().mutating,
        0,
        "{:?}",
        third.calls.counts().mutating_operations()
    );
}

#[tokio::test]
async fn a_template_without_the_imds_options_gets_a_new_version() {
    let emu = emulator().await;
    let first = up(&emu, "oldnodes").await;
    let ec2 = &first.cx.aws.clients.ec2;
    let name = first.cx.stack.launch_template();
    // As an earlier version of the provisioner made it: the same nodes, with hop limit 2.
    let old = latest_template(&first.cx).await;
    let data = RequestLaunchTemplateData::builder()
        .set_image_id(old.image_id().map(str::to_owned))
        .set_instance_type(old.instance_type().cloned())
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .set_arn(
                    old.iam_instance_profile()
                        .and_then(|p| p.arn())
                        .map(str::to_owned),
                )
                .build(),
        )
        .set_security_group_ids(Some(old.security_group_ids().to_vec()))
        .set_user_data(old.user_data().map(str::to_owned))
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(2)
                .build(),
        )
        .build();
    let before = ec2
        .create_launch_template_version()
        .launch_template_name(&name)
        .launch_template_data(data)
        .send()
        .await
        .unwrap();
    let before = before
        .launch_template_version()
        .and_then(|v| v.version_number())
        .unwrap();
    let older = latest_template(&first.cx).await;
    assert_eq!(
        older
            .metadata_options()
            .and_then(|m| m.http_put_response_hop_limit()),
        Some(2)
    );
    assert_eq!(
        (older.image_id(), older.user_data()),
        (old.image_id(), old.user_data())
    );

    let again = up(&emu, "oldnodes").await;
    let data = latest_template(&again.cx).await;
    assert_eq!(
        data.metadata_options()
            .and_then(|m| m.http_put_response_hop_limit()),
        Some(1)
    );
    let templates = ec2
        .describe_launch_templates()
        .launch_template_names(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        templates.launch_templates()[0].latest_version_number(),
        Some(before + 1)
    );
}

#[tokio::test]
async fn sync_targets_removes_a_stray_target_by_the_controllers_rule() {
    let emu = emulator().await;
    let first = up(&emu, "repair").await;
    let arn = target_group_arn(&first.cx);
    first
        .cx
        .aws
        .clients
        .elbv2
        .register_targets()
        .target_group_arn(&arn)
        .targets(
            TargetDescription::builder()
                .id("10.0.200.200")
                .port(HTTP_NODE_PORT)
                .build(),
        )
        .send()
        .await
        .unwrap();

    // `provisioner sync-targets`: the targets step and what it needs.
    let repair = run(&emu, common::config("repair")).await;
    steps::infrastructure()
        .through(targets::ID)
        .expect("a targets step")
        .up(&repair.cx)
        .await
        .unwrap();
    assert!(
        repair.cx.changes().iter().any(|c| c.kind == "target"
            && c.action == Action::Deleted
            && c.id.starts_with("10.0.200.200:")),
        "{:?}",
        repair.cx.changes()
    );
    let health = repair
        .cx
        .aws
        .clients
        .elbv2
        .describe_target_health()
        .target_group_arn(&arn)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target().and_then(|t| t.id()))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(!ids.contains(&"10.0.200.200"));
}
