//! Issue 14, item 2: a configuration change on an existing stack (node count, instance type,
//! Kubernetes version, CIDR rules). `plan` names the exact update, `up` makes exactly the update
//! calls (the call log), AWS's own describe calls show the result, and a second `up` changes
//! nothing.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::BTreeSet;

use common::{Endpoint, Run, config, emulator, run};
use provisioner::StackConfig;
use provisioner::config::Date;
use provisioner::plan::StepError;
use provisioner::steps;
use provisioner::steps::cluster::support_plan;
use provisioner::steps::nodes::ami_parameter;
use provisioner::steps::security_groups::PRIVATE_API_RULE;

/// What `plan` prints for the infrastructure (the same lines the CLI writes); it must change
/// nothing.
async fn plan(run: &Run) -> Vec<String> {
    let plan = steps::infrastructure();
    let order = plan.order().expect("a consistent plan");
    let inspected = plan.inspect(&run.cx).await;
    let before = run.calls.counts().mutating;
    let lines = plan.describe(&order, &inspected);
    assert_eq!(
        run.calls.counts().mutating,
        before,
        "plan changed something"
    );
    lines
}

fn updates(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.contains("~ update")).collect()
}

fn has_update(lines: &[String], kind: &str, change: &str) -> bool {
    lines
        .iter()
        .any(|l| l.contains("~ update") && l.contains(kind) && l.contains(change))
}

/// `up` with `config`, returning the run with its call log.
async fn up_with(emu: &impl Endpoint, config: StackConfig) -> Run {
    let name = config.name.clone();
    let run = run(emu, config).await;
    steps::infrastructure()
        .up(&run.cx)
        .await
        .unwrap_or_else(|e| panic!("up of {name} failed: {e}"));
    run
}

fn mutating(run: &Run) -> BTreeSet<String> {
    run.calls
        .counts()
        .mutating_operations()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn set(ops: &[&str]) -> BTreeSet<String> {
    ops.iter().map(|s| (*s).to_owned()).collect()
}

/// After a change has been applied: a second `up` makes no changing call and `plan` shows no
/// update.
async fn settled(emu: &impl Endpoint, config: StackConfig) {
    let name = config.name.clone();
    let again = up_with(emu, config.clone()).await;
    assert_eq!(
        mutating(&again),
        BTreeSet::new(),
        "{name}: the second up changed something"
    );
    let lines = plan(&run(emu, config).await).await;
    assert!(updates(&lines).is_empty(), "{name}: {lines:#?}");
}

/// (min, desired, max) and instance ids of the group, through Auto Scaling itself.
async fn group(run: &Run) -> ((i32, i32, i32), BTreeSet<String>, String) {
    let out = run
        .cx
        .aws
        .clients
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(run.cx.stack.auto_scaling_group())
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    let ids = g
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    let version = g
        .launch_template()
        .and_then(|t| t.version())
        .unwrap_or_default()
        .to_owned();
    (
        (
            g.min_size().unwrap_or_default(),
            g.desired_capacity().unwrap_or_default(),
            g.max_size().unwrap_or_default(),
        ),
        ids,
        version,
    )
}

async fn target_count(run: &Run) -> usize {
    let aws = &run.cx.aws.clients;
    let groups = aws
        .elbv2
        .describe_target_groups()
        .names(run.cx.stack.target_group())
        .send()
        .await
        .unwrap();
    let arn = groups.target_groups()[0].target_group_arn().unwrap();
    aws.elbv2
        .describe_target_health()
        .target_group_arn(arn)
        .send()
        .await
        .unwrap()
        .target_health_descriptions()
        .len()
}

/// The latest launch template version: (number, instance type, AMI).
async fn latest_template(run: &Run) -> (i64, String, String) {
    let out = run
        .cx
        .aws
        .clients
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(run.cx.stack.launch_template())
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    let v = &out.launch_template_versions()[0];
    let data = v.launch_template_data().unwrap();
    (
        v.version_number().unwrap(),
        data.instance_type().unwrap().as_str().to_owned(),
        data.image_id().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_node_count_change_resizes_the_group_and_the_targets_follow() {
    let emu = emulator().await;
    let name = "resize";
    let first = up_with(&emu, config(name)).await;
    assert_eq!(group(&first).await.0, (3, 3, 3));

    // Grow: 3 -> 4.
    let mut grown = config(name);
    grown.nodes.desired = 4;
    grown.nodes.max = 4;
    let lines = plan(&run(&emu, grown.clone()).await).await;
    assert!(
        has_update(
            &lines,
            "Auto Scaling group",
            "UpdateAutoScalingGroup desired 3 -> 4, max 3 -> 4 (launches 1 node)"
        ),
        "{lines:#?}"
    );
    assert_eq!(updates(&lines).len(), 1, "{lines:#?}");

    // The CLI prints the same line (`--nodes 4` sets min, desired and max).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["--endpoint", emu.endpoint(), "--name", name, "--aws-only"])
        .args(["--nodes", "4", "plan"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .await
        .expect("provisioner plan runs");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed
            .lines()
            .any(|l| l.contains("~ update Auto Scaling group")
                && l.contains("UpdateAutoScalingGroup min 3 -> 4, desired 3 -> 4, max 3 -> 4")),
        "{printed}"
    );

    let applied = up_with(&emu, grown.clone()).await;
    assert_eq!(
        mutating(&applied),
        set(&[
            "Auto Scaling:UpdateAutoScalingGroup",
            "Elastic Load Balancing v2:RegisterTargets"
        ])
    );
    let ((sizes, ids, _), targets) = (group(&applied).await, target_count(&applied).await);
    assert_eq!((sizes, ids.len(), targets), ((3, 4, 4), 4, 4));
    settled(&emu, grown).await;

    // Shrink: 4 -> 2; the terminated nodes leave the target group.
    let mut shrunk = config(name);
    shrunk.nodes.min = 2;
    shrunk.nodes.desired = 2;
    shrunk.nodes.max = 2;
    let lines = plan(&run(&emu, shrunk.clone()).await).await;
    assert!(
        has_update(
            &lines,
            "Auto Scaling group",
            "min 3 -> 2, desired 4 -> 2, max 4 -> 2 (terminates 2 nodes)"
        ),
        "{lines:#?}"
    );
    let applied = up_with(&emu, shrunk.clone()).await;
    assert_eq!(
        mutating(&applied),
        set(&[
            "Auto Scaling:UpdateAutoScalingGroup",
            "Elastic Load Balancing v2:DeregisterTargets"
        ])
    );
    let ((sizes, ids, _), targets) = (group(&applied).await, target_count(&applied).await);
    assert_eq!((sizes, ids.len(), targets), ((2, 2, 2), 2, 2));
    settled(&emu, shrunk).await;
}

#[tokio::test]
async fn an_instance_type_change_makes_a_new_launch_template_version_and_keeps_the_nodes() {
    let emu = emulator().await;
    let name = "retype";
    let first = up_with(&emu, config(name)).await;
    let (version, instance_type, image) = latest_template(&first).await;
    assert_eq!((version, instance_type.as_str()), (1, "t3.medium"));
    let (_, nodes_before, _) = group(&first).await;

    let mut retyped = config(name);
    retyped.instance_type = "t3.large".to_owned();
    let lines = plan(&run(&emu, retyped.clone()).await).await;
    assert!(
        has_update(
            &lines,
            "launch template",
            "new launch template version 2 (instance type t3.medium -> t3.large); running nodes keep version 1 until replaced"
        ),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("start-instance-refresh")),
        "{lines:#?}"
    );
    assert_eq!(updates(&lines).len(), 1, "{lines:#?}");

    let applied = up_with(&emu, retyped.clone()).await;
    assert_eq!(
        mutating(&applied),
        set(&["EC2:CreateLaunchTemplateVersion"])
    );
    let (version, instance_type, new_image) = latest_template(&applied).await;
    assert_eq!((version, instance_type.as_str()), (2, "t3.large"));
    assert_eq!(new_image, image, "the AMI is unchanged");
    let (sizes, nodes_after, launches) = group(&applied).await;
    assert_eq!(sizes, (3, 3, 3));
    assert_eq!(launches, "$Latest", "new nodes boot with the new version");
    assert_eq!(nodes_after, nodes_before, "running nodes are not replaced");
    settled(&emu, retyped).await;
}

/// A stack on 1.34 judged on 2026-11-01, when 1.34, 1.35 and 1.36 are all in standard support
/// (release calendar, `provisioner/src/config/versions.rs`); the emulator serves node AMIs for
/// 1.33-1.35.
fn pinned(name: &str, version: &str) -> StackConfig {
    let mut config = config(name);
    config.kubernetes_version = version.to_owned();
    config.version_pinned = true;
    config.today = Date::new(2026, 11, 1);
    config
}

async fn cluster_version(run: &Run) -> String {
    run.cx
        .aws
        .clients
        .eks
        .describe_cluster()
        .name(run.cx.stack.cluster_name())
        .send()
        .await
        .unwrap()
        .cluster()
        .and_then(|c| c.version())
        .unwrap_or_default()
        .to_owned()
}

async fn ami(run: &Run, version: &str) -> String {
    run.cx
        .aws
        .clients
        .ssm
        .get_parameter()
        .name(ami_parameter(version))
        .send()
        .await
        .unwrap()
        .parameter()
        .and_then(|p| p.value())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_version_change_upgrades_one_minor_version_and_the_nodes_follow() {
    let emu = emulator().await;
    let name = "upgrade";
    let first = up_with(&emu, pinned(name, "1.34")).await;
    assert_eq!(cluster_version(&first).await, "1.34");
    let old_ami = ami(&first, "1.34").await;
    assert_eq!(latest_template(&first).await.2, old_ami);

    // Two minor versions at once: refused, naming the field and the rule, before any change.
    let skip = run(&emu, pinned(name, "1.36")).await;
    let said = support_plan(&skip.cx).await.unwrap();
    assert!(
        said.iter()
            .any(|l| l.starts_with("! `up` refuses") && l.contains("one minor version at a time")),
        "{said:?}"
    );
    let err = steps::infrastructure().up(&skip.cx).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("kubernetes_version = \"1.36\"")
            && text.contains("one minor version at a time")
            && text.contains("set kubernetes_version = \"1.35\""),
        "{text}"
    );
    assert!(
        matches!(err.failed[0].1, StepError::Conflict { .. }),
        "{err}"
    );
    assert_eq!(mutating(&skip), BTreeSet::new());
    assert_eq!(cluster_version(&skip).await, "1.34");

    // The next minor version: UpdateClusterVersion, then the 1.35 node AMI in a new version.
    let next = pinned(name, "1.35");
    let planned = run(&emu, next.clone()).await;
    let lines = plan(&planned).await;
    let new_ami = ami(&planned, "1.35").await;
    assert!(
        has_update(
            &lines,
            "EKS cluster",
            "update cluster version 1.34 -> 1.35 (UpdateClusterVersion)"
        ),
        "{lines:#?}"
    );
    assert!(
        has_update(
            &lines,
            "launch template",
            &format!(
                "new launch template version 2 (AMI {old_ami} -> {new_ami} (Kubernetes 1.35 node AMI))"
            )
        ),
        "{lines:#?}"
    );
    assert_eq!(updates(&lines).len(), 2, "{lines:#?}");
    let said = support_plan(&planned.cx).await.unwrap();
    assert!(
        said.iter()
            .any(|l| l.contains("`up` upgrades the cluster: Kubernetes 1.34 -> 1.35")),
        "{said:?}"
    );

    let applied = up_with(&emu, next.clone()).await;
    assert_eq!(
        mutating(&applied),
        set(&[
            "EKS:UpdateClusterVersion",
            "EC2:CreateLaunchTemplateVersion"
        ])
    );
    assert_eq!(cluster_version(&applied).await, "1.35");
    let eks = &applied.cx.aws.clients.eks;
    let ids = eks.list_updates().name(name).send().await.unwrap();
    let ids = ids.update_ids();
    assert_eq!(ids.len(), 1, "one update: {ids:?}");
    let update = eks
        .describe_update()
        .name(name)
        .update_id(&ids[0])
        .send()
        .await
        .unwrap();
    let update = update.update().unwrap();
    assert_eq!(update.r#type().map(|t| t.as_str()), Some("VersionUpdate"));
    assert_eq!(update.status().map(|s| s.as_str()), Some("Successful"));
    let (version, instance_type, image) = latest_template(&applied).await;
    assert_eq!((version, instance_type.as_str()), (2, "t3.medium"));
    assert_eq!(image, new_ami);
    settled(&emu, next).await;

    // Back to 1.34: EKS cannot downgrade; refused with the field and the rule, nothing changed.
    let back = run(&emu, pinned(name, "1.34")).await;
    let err = steps::infrastructure().up(&back.cx).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("kubernetes_version = \"1.34\"")
            && text.contains("cannot downgrade")
            && text.contains("runs Kubernetes 1.35"),
        "{text}"
    );
    assert_eq!(mutating(&back), BTreeSet::new());
    assert_eq!(cluster_version(&back).await, "1.35");
}

/// A version that has left standard support is refused as the configuration is read, as for a
/// new stack: on 2026-12-03 1.34 is past its standard support (ended 2026-12-02).
#[test]
fn a_version_past_standard_support_is_refused_before_any_call() {
    let file = provisioner::StackFile::parse("kubernetes_version = \"1.34\"", "test").unwrap();
    let err = file
        .resolve(&provisioner::config::Overrides {
            name: Some("late".into()),
            today: Some(Date::new(2026, 12, 3)),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("kubernetes_version = \"1.34\""), "{err}");
}

/// The cluster group's ingress on 443 from CIDR blocks: (cidr, description).
async fn api_cidrs(run: &Run) -> BTreeSet<(String, String)> {
    let out = run
        .cx
        .aws
        .clients
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(run.cx.stack.security_group("cluster-sg"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let group = &out.security_groups()[0];
    group
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(443) && p.to_port() == Some(443))
        .flat_map(|p| p.ip_ranges())
        .map(|r| {
            (
                r.cidr_ip().unwrap_or_default().to_owned(),
                r.description().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn with_cidrs(name: &str, cidrs: &[&str]) -> StackConfig {
    let mut config = config(name);
    config.private_api_cidrs = cidrs.iter().map(|c| c.parse().unwrap()).collect();
    config
}

#[tokio::test]
async fn cidr_rules_added_and_removed_are_authorized_and_revoked_and_nothing_else() {
    let emu = emulator().await;
    let name = "cidrs";
    let first = up_with(&emu, config(name)).await;
    assert_eq!(api_cidrs(&first).await, BTreeSet::new());
    // A rule someone added by hand, without the stack's description: never revoked.
    let cluster_sg = first
        .cx
        .outputs
        .get::<provisioner::steps::security_groups::SecurityGroups>()
        .unwrap()
        .cluster_sg_id
        .clone();
    first
        .cx
        .aws
        .clients
        .ec2
        .authorize_security_group_ingress()
        .group_id(&cluster_sg)
        .ip_protocol("tcp")
        .from_port(443)
        .to_port(443)
        .cidr_ip("203.0.113.0/24")
        .send()
        .await
        .unwrap();
    let by_hand = ("203.0.113.0/24".to_owned(), String::new());

    // Added: two networks.
    let added = with_cidrs(name, &["172.16.0.0/12", "192.168.0.0/16"]);
    let lines = plan(&run(&emu, added.clone()).await).await;
    assert!(
        has_update(
            &lines,
            "security group",
            "authorize ingress 172.16.0.0/12 tcp 443 (private API endpoint); authorize ingress 192.168.0.0/16 tcp 443 (private API endpoint)"
        ),
        "{lines:#?}"
    );
    assert_eq!(updates(&lines).len(), 1, "{lines:#?}");
    let applied = up_with(&emu, added.clone()).await;
    assert_eq!(
        mutating(&applied),
        set(&["EC2:AuthorizeSecurityGroupIngress"])
    );
    let ours = |cidr: &str| (cidr.to_owned(), PRIVATE_API_RULE.to_owned());
    assert_eq!(
        api_cidrs(&applied).await,
        BTreeSet::from([
            ours("172.16.0.0/12"),
            ours("192.168.0.0/16"),
            by_hand.clone()
        ])
    );
    settled(&emu, added).await;

    // Removed: one of them.
    let removed = with_cidrs(name, &["192.168.0.0/16"]);
    let lines = plan(&run(&emu, removed.clone()).await).await;
    assert!(
        has_update(
            &lines,
            "security group",
            "revoke ingress 172.16.0.0/12 tcp 443 (private API endpoint)"
        ),
        "{lines:#?}"
    );
    assert_eq!(updates(&lines).len(), 1, "{lines:#?}");
    let applied = up_with(&emu, removed.clone()).await;
    assert_eq!(mutating(&applied), set(&["EC2:RevokeSecurityGroupIngress"]));
    assert_eq!(
        api_cidrs(&applied).await,
        BTreeSet::from([ours("192.168.0.0/16"), by_hand])
    );
    settled(&emu, removed).await;
}
