//! The platform against the cluster simulator, with validation and RBAC on: install waits for the
//! nodes, applies, waits for both rollouts, for the ingress controller to accept the public host's
//! master and the site's minion, and for the site's first credentials; installing again changes
//! nothing; a wait that runs out of time says what it waited for (NIC's own verdict when the
//! controller will not serve the routes); uninstall removes LoadBalancer Services, the namespaces
//! the site created, the platform's namespaces and its cluster-wide objects.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Secret, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressClass, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use platform::names::{
    FIELD_MANAGER, HOST_INGRESS, INGRESS_CLASS, INGRESS_CONTROLLER, INGRESS_NAMESPACE,
    INITIAL_ADMIN_SECRET, MANAGED_BY_LABEL, PART_OF_LABEL, PRODUCT, SITE, SYSTEM_NAMESPACE,
    TARGETS_CONTROLLER,
};
use platform::verdict::{self, Verdict};
use platform::wait::{self, Patience};
use platform::{Error, Outcome, install, uninstall};

mod common;
use common::{PUBLIC_HOST, admin, object, play_the_site, simulator, spec};

async fn deployment(client: &kube::Client, namespace: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("deployment")
}

#[tokio::test]
async fn install_waits_for_the_first_credentials_and_installing_again_changes_nothing() {
    let (_sim, client) = simulator().await;
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let site_task = play_the_site(client.clone(), Some(lines.clone()));
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
    assert_eq!(first.applied, 22);
    let reported = lines.lock().unwrap().clone();
    assert!(
        reported.iter().any(|l| l.contains("first credentials")),
        "the wait for the first credentials was reported: {reported:?}"
    );

    let controller = deployment(&client, INGRESS_NAMESPACE, INGRESS_CONTROLLER).await;
    let site_before = deployment(&client, SYSTEM_NAMESPACE, SITE).await;
    let keeper = deployment(&client, SYSTEM_NAMESPACE, TARGETS_CONTROLLER).await;
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
        (keeper, SYSTEM_NAMESPACE, TARGETS_CONTROLLER),
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

/// A plain Ingress (`minion` or `master` given as `mergeable`) for the public host, path `/` to `service`.
fn ingress(name: &str, mergeable: Option<&str>, service: &str) -> Ingress {
    let paths = mergeable
        .is_none_or(|m| m == "minion")
        .then(|| HTTPIngressRuleValue {
            paths: vec![HTTPIngressPath {
                path: Some("/".into()),
                path_type: "Prefix".into(),
                backend: IngressBackend {
                    service: Some(IngressServiceBackend {
                        name: service.into(),
                        port: Some(ServiceBackendPort {
                            number: Some(80),
                            ..ServiceBackendPort::default()
                        }),
                    }),
                    ..IngressBackend::default()
                },
            }],
        });
    Ingress {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: mergeable
                .map(|m| [("nginx.org/mergeable-ingress-type".to_owned(), m.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: Some(INGRESS_CLASS.into()),
            rules: Some(vec![IngressRule {
                host: Some(PUBLIC_HOST.into()),
                http: paths,
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

/// The controller's latest verdict on Ingress `namespace/name`, if it has judged it.
async fn verdict_on(client: &kube::Client, namespace: &str, name: &str) -> Option<Verdict> {
    let uid = Api::<Ingress>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("the Ingress")
        .metadata
        .uid
        .unwrap();
    let events = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    verdict::latest(&events, &uid).map(Verdict::of)
}

#[tokio::test]
async fn the_controller_accepts_the_public_hosts_master_and_the_sites_minion() {
    let (_sim, client) = simulator().await;
    let site_task = play_the_site(client.clone(), None);
    install(&client, &spec(Duration::from_secs(60)), None)
        .await
        .expect("install");
    site_task.await.expect("the site's task");
    for name in [HOST_INGRESS, SITE] {
        let verdict = verdict_on(&client, SYSTEM_NAMESPACE, name).await;
        assert_eq!(
            verdict.map(|v| (v.reason, v.message)),
            Some((
                verdict::ADDED_OR_UPDATED.to_owned(),
                format!("Configuration for {SYSTEM_NAMESPACE}/{name} was added or updated")
            )),
            "{name}"
        );
    }
}

/// Waits until objects the API server creates are stamped later than `time`, so that what is
/// created next is younger than what was stamped `time`.
async fn a_later_second_than(client: &kube::Client, namespace: &str, time: &Time) {
    let clocks: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let clock = ConfigMap {
        metadata: ObjectMeta {
            generate_name: Some("clock-".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    // creationTimestamp has whole seconds, and the order under test is by it: real time has to
    // pass, until the API server stamps a later second (polled, with a deadline).
    let limit = Duration::from_secs(5);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let stamped = clocks
            .create(&PostParams::default(), &clock)
            .await
            .expect("a clock ConfigMap");
        let name = stamped.metadata.name.unwrap();
        clocks
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete the clock");
        let seen = stamped.metadata.creation_timestamp;
        if seen.as_ref() > Some(time) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the API server's clock did not pass {time:?} within {limit:?}; last stamp {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An install of an earlier version routed the site with a plain Ingress, which held the host.
/// Installing this one turns it into a minion of a new master; the controller's verdict on the
/// plain Ingress does not count for the minion, and the master gets the host once the site's
/// Ingress no longer holds it.
#[tokio::test]
async fn installing_over_a_plain_site_ingress_waits_for_the_verdict_on_the_minion() {
    let (_sim, client) = simulator().await;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: object(SYSTEM_NAMESPACE),
                ..Namespace::default()
            },
        )
        .await
        .expect("the site's namespace");
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    let plain = ingresses
        .create(&PostParams::default(), &ingress(SITE, None, SITE))
        .await
        .expect("the earlier site's Ingress");
    let earlier = wait::Route {
        name: SITE.to_owned(),
        uid: plain.metadata.uid.clone().unwrap(),
        changed_at: None,
    };
    wait::routes_accepted(
        &client,
        SYSTEM_NAMESPACE,
        &[earlier],
        Patience::new(Duration::from_secs(30)),
    )
    .await
    .expect("the controller serves the plain Ingress");

    install(&client, &spec(Duration::from_secs(60)), None)
        .await
        .expect("install over the earlier version");
    let minion = ingresses.get(SITE).await.expect("the site's Ingress");
    assert_eq!(minion.metadata.uid, plain.metadata.uid, "updated in place");
    for name in [HOST_INGRESS, SITE] {
        let verdict = verdict_on(&client, SYSTEM_NAMESPACE, name).await;
        assert_eq!(
            verdict.map(|v| v.reason).as_deref(),
            Some(verdict::ADDED_OR_UPDATED),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_older_ingress_holding_the_public_host_fails_the_install_with_the_controllers_verdict() {
    let (_sim, client) = simulator().await;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: object("squatter"),
                ..Namespace::default()
            },
        )
        .await
        .expect("a namespace");
    let first = Api::<Ingress>::namespaced(client.clone(), "squatter")
        .create(&PostParams::default(), &ingress("first", None, "web"))
        .await
        .expect("a plain Ingress for the public host");
    // Age is told by creationTimestamp, in whole seconds (a tie goes to the larger uid).
    let created = first.metadata.creation_timestamp.expect("a creation time");
    a_later_second_than(&client, "squatter", &created).await;

    let err = install(&client, &spec(Duration::from_secs(10)), None)
        .await
        .expect_err("the host belongs to the older Ingress");
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "{SYSTEM_NAMESPACE}/{HOST_INGRESS}: Rejected: All hosts are taken by other resources"
        )),
        "{message}"
    );
}

#[tokio::test]
async fn uninstall_removes_the_platform_and_the_namespaces_the_site_created() {
    let (_sim, client) = simulator().await;
    let site_task = play_the_site(client.clone(), None);
    install(&client, &spec(Duration::from_secs(60)), None)
        .await
        .expect("install");
    site_task.await.expect("the site's task");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // `alice` was made by someone else; `bob` by the site, labelled as web's `namespace()` does,
    // with a route of his: a minion of the public host's master.
    for (name, labels) in [
        ("alice", None),
        (
            "bob",
            Some([(MANAGED_BY_LABEL.to_owned(), PRODUCT.to_owned())].into()),
        ),
    ] {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels,
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("a developer's namespace");
    }
    Api::<Ingress>::namespaced(client.clone(), "bob")
        .create(
            &PostParams::default(),
            &ingress("web", Some("minion"), "web"),
        )
        .await
        .expect("bob's route");
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
            ("user namespace", "bob", Outcome::Deleted),
            ("namespace", SYSTEM_NAMESPACE, Outcome::Deleted),
            ("namespace", INGRESS_NAMESPACE, Outcome::Deleted),
            ("ClusterRoleBinding", TARGETS_CONTROLLER, Outcome::Deleted),
            ("ClusterRoleBinding", SITE, Outcome::Deleted),
            ("ClusterRoleBinding", INGRESS_CONTROLLER, Outcome::Deleted),
            ("ClusterRole", TARGETS_CONTROLLER, Outcome::Deleted),
            ("ClusterRole", SITE, Outcome::Deleted),
            ("ClusterRole", INGRESS_CONTROLLER, Outcome::Deleted),
            ("IngressClass", INGRESS_CLASS, Outcome::Deleted),
        ]
    );
    assert!(services.get_opt("public").await.expect("get").is_none());
    assert!(services.get_opt("inside").await.expect("get").is_some());
    let ours = ListParams::default().labels(&format!("{PART_OF_LABEL}={PRODUCT}"));
    for left in [
        Api::<ClusterRole>::all(client.clone())
            .list(&ours)
            .await
            .expect("list")
            .items
            .len(),
        Api::<IngressClass>::all(client.clone())
            .list(&ours)
            .await
            .expect("list")
            .items
            .len(),
    ] {
        assert_eq!(left, 0);
    }

    // Uninstalling again while the namespaces terminate goes on; once they are gone, it finds
    // nothing to do.
    uninstall(&client)
        .await
        .expect("uninstall while terminating");
    let gone = [SYSTEM_NAMESPACE, INGRESS_NAMESPACE, "bob"];
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let left: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .filter(|n| gone.contains(&n.as_str()))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {limit:?} for the namespaces {gone:?} to go; still there: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let changes = uninstall(&client).await.expect("uninstall again");
    assert!(
        changes.iter().all(|c| c.outcome == Outcome::Absent),
        "{changes:?}"
    );
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(namespaces.get_opt("alice").await.expect("get").is_some());
}
