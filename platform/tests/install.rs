//! The platform against the cluster simulator, with validation and RBAC on: install waits for the
//! nodes, applies, waits for both rollouts and for the site's first credentials; installing again
//! changes nothing; a wait that runs out of time says what it waited for; uninstall removes
//! LoadBalancer Services and the platform's namespaces.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{ClusterSim, RunningSim, SimConfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServicePort, ServiceSpec};
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use platform::manifests::SiteValues;
use platform::names::{
    FIELD_MANAGER, INGRESS_CONTROLLER, INGRESS_NAMESPACE, INITIAL_ADMIN_SECRET, SITE,
    SYSTEM_NAMESPACE,
};
use platform::wait::{self, Patience};
use platform::{Credentials, Error, InstallSpec, Outcome, install, uninstall};

fn site() -> SiteValues {
    SiteValues {
        public_host: "kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com".into(),
        image: "ghcr.io/kdeploy/web:0.1.0".into(),
    }
}

fn spec(wait_limit: Duration) -> InstallSpec {
    InstallSpec {
        site: site(),
        nodes: 3,
        wait_limit,
    }
}

fn admin() -> Credentials {
    Credentials {
        username: "operator".into(),
        password: "s3cret-generated".into(),
    }
}

fn object(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

/// Plays the site, whose simulated pods are not real processes: once its rollout is complete,
/// it stores the first administrator's credentials as the site does on start.
fn play_the_site(client: kube::Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        wait::rollout_complete(
            &client,
            SYSTEM_NAMESPACE,
            SITE,
            Patience::new(Duration::from_secs(60)),
        )
        .await
        .expect("the site rolls out");
        let secret = Secret {
            metadata: object(INITIAL_ADMIN_SECRET),
            type_: Some("Opaque".into()),
            data: Some(
                [
                    (
                        "username".to_owned(),
                        ByteString(admin().username.into_bytes()),
                    ),
                    (
                        "password".to_owned(),
                        ByteString(admin().password.into_bytes()),
                    ),
                ]
                .into(),
            ),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(client, SYSTEM_NAMESPACE)
            .create(&PostParams::default(), &secret)
            .await
            .expect("the site stores its first credentials");
    })
}

async fn simulator() -> (RunningSim, kube::Client) {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let client = sim.client().await.expect("client");
    (sim, client)
}

async fn deployment(client: &kube::Client, namespace: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("deployment")
}

#[tokio::test]
async fn install_waits_for_the_first_credentials_and_installing_again_changes_nothing() {
    let (_sim, client) = simulator().await;
    let site_task = play_the_site(client.clone());
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorder = {
        let lines = lines.clone();
        move |line: &str| lines.lock().unwrap().push(line.to_owned())
    };

    let first = install(&client, &spec(Duration::from_secs(60)), Some(&recorder))
        .await
        .expect("install");
    site_task.await.expect("the site's task");
    assert!(first.site_newly_created);
    assert_eq!(first.initial_admin, Some(admin()));
    assert_eq!(first.applied, 17);
    assert!(
        !lines.lock().unwrap().is_empty(),
        "no progress was reported"
    );

    let controller = deployment(&client, INGRESS_NAMESPACE, INGRESS_CONTROLLER).await;
    let site_before = deployment(&client, SYSTEM_NAMESPACE, SITE).await;
    let again = install(&client, &spec(Duration::from_secs(60)), None)
        .await
        .expect("install again");
    assert!(!again.site_newly_created);
    assert_eq!(
        again.initial_admin,
        Some(admin()),
        "the Secret is still there"
    );
    for (before, namespace, name) in [
        (controller, INGRESS_NAMESPACE, INGRESS_CONTROLLER),
        (site_before, SYSTEM_NAMESPACE, SITE),
    ] {
        let after = deployment(&client, namespace, name).await;
        assert_eq!(
            before.metadata.uid, after.metadata.uid,
            "{name} was recreated"
        );
        assert_eq!(
            before.metadata.generation, after.metadata.generation,
            "re-installing changed the spec of {name}"
        );
        let managers: Vec<String> = after
            .metadata
            .managed_fields
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert!(managers.contains(&FIELD_MANAGER.to_owned()), "{managers:?}");
    }

    // Once the administrator deletes the Secret, installing neither waits for nor shows it.
    Api::<Secret>::namespaced(client.clone(), SYSTEM_NAMESPACE)
        .delete(INITIAL_ADMIN_SECRET, &DeleteParams::default())
        .await
        .expect("delete the secret");
    let third = install(&client, &spec(Duration::from_secs(5)), None)
        .await
        .expect("install without the secret");
    assert_eq!(
        (third.site_newly_created, third.initial_admin),
        (false, None)
    );
    assert_eq!(platform::initial_admin(&client).await.expect("read"), None);
}

#[tokio::test]
async fn a_wait_that_runs_out_of_time_says_what_it_waited_for() {
    let (_sim, client) = simulator().await;
    let short = Patience::new(Duration::from_secs(2));

    let err = wait::nodes_ready(&client, 5, short)
        .await
        .expect_err("only 3 nodes");
    assert_eq!(
        err.to_string(),
        "timed out after 2s waiting for 5 nodes to be Ready; last seen: 3/5 Ready"
    );
    assert_eq!(
        wait::nodes_ready(&client, 3, short).await.expect("3 nodes"),
        3
    );

    let err = wait::rollout_complete(&client, "nowhere", "nothing", short)
        .await
        .expect_err("no such deployment");
    assert!(
        matches!(&err, Error::Timeout { what, last, .. }
            if what == "the rollout of Deployment nowhere/nothing"
            && last == "the Deployment does not exist yet"),
        "{err}"
    );

    // Nobody plays the site here, so the first credentials never come.
    let err = install(&client, &spec(Duration::from_secs(6)), None)
        .await
        .expect_err("the site never stores its credentials");
    let message = err.to_string();
    assert!(
        message.contains(&format!("Secret {SYSTEM_NAMESPACE}/{INITIAL_ADMIN_SECRET}"))
            && message.contains("the Secret does not exist yet"),
        "{message}"
    );
}

fn service(name: &str, type_: &str) -> Service {
    Service {
        metadata: object(name),
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some([("app".to_owned(), name.to_owned())].into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[tokio::test]
async fn uninstall_removes_load_balancer_services_and_the_platform_namespaces() {
    let (_sim, client) = simulator().await;
    let site_task = play_the_site(client.clone());
    install(&client, &spec(Duration::from_secs(60)), None)
        .await
        .expect("install");
    site_task.await.expect("the site's task");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: object("alice"),
                ..Namespace::default()
            },
        )
        .await
        .expect("a developer's namespace");
    let services: Api<Service> = Api::namespaced(client.clone(), "alice");
    for (name, type_) in [("public", "LoadBalancer"), ("inside", "ClusterIP")] {
        services
            .create(&PostParams::default(), &service(name, type_))
            .await
            .expect("service");
    }

    let changes = uninstall(&client).await.expect("uninstall");
    let seen: Vec<(&str, &str, Outcome)> = changes
        .iter()
        .map(|c| (c.kind, c.name.as_str(), c.outcome))
        .collect();
    assert_eq!(
        seen,
        [
            ("LoadBalancer service", "alice/public", Outcome::Deleted),
            ("namespace", SYSTEM_NAMESPACE, Outcome::Deleted),
            ("namespace", INGRESS_NAMESPACE, Outcome::Deleted),
        ]
    );
    assert!(services.get_opt("public").await.expect("get").is_none());
    assert!(services.get_opt("inside").await.expect("get").is_some());

    // Namespaces go once their content is gone; then uninstalling again finds nothing to do.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for _ in 0..100 {
        let left = namespaces
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        if !left.iter().any(|n| {
            [SYSTEM_NAMESPACE, INGRESS_NAMESPACE]
                .contains(&n.metadata.name.as_deref().unwrap_or(""))
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let changes = uninstall(&client).await.expect("uninstall again");
    assert!(
        changes.iter().all(|c| c.outcome == Outcome::Absent),
        "{changes:?}"
    );
    assert_eq!(changes.len(), 2);
}
