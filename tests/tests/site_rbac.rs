//! The site's identity as the installed manifest declares it (ServiceAccount, ClusterRole, Role):
//! it can make the calls the site makes (its Secrets, developers' namespaces, their repositories'
//! objects and routes, the controller's verdicts on them), and none outside its scope. The
//! full-stack and routes tests run the real site under the same identity.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use cluster::{ClusterSim, SimConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Secret};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use platform::PublicUrl;
use platform::manifests::{SiteValues, apply, deploy_site};
use platform::names::{
    INGRESS_CLASS, INITIAL_ADMIN_SECRET, MANAGED_BY_LABEL, PRODUCT, SITE, SYSTEM_NAMESPACE,
};

fn object(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn the_sites_service_account_can_do_its_work_and_no_more() {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let admin = sim.client().await.expect("client");
    let site = SiteValues {
        public_url: PublicUrl::parse("http://kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com")
            .expect("a public URL"),
        image: "ghcr.io/kdeploy/web:0.1.0".into(),
    };
    apply(&admin, &deploy_site(&site).expect("render"))
        .await
        .expect("apply the site");
    let token = sim.service_account_token(SYSTEM_NAMESPACE, SITE);
    let site = sim.client_with_token(&token).await.expect("client");

    // What the site does: its own Secrets (the first credentials among them, created once), a
    // developer's namespace and the objects in it.
    let secrets: Api<Secret> = Api::namespaced(site.clone(), SYSTEM_NAMESPACE);
    let look = secrets.get_opt(INITIAL_ADMIN_SECRET).await;
    assert!(look.expect("look for the first credentials").is_none());
    let empty = |name: &str| Secret {
        metadata: object(name),
        ..Secret::default()
    };
    let create = PostParams::default();
    let first = secrets.create(&create, &empty(INITIAL_ADMIN_SECRET)).await;
    first.expect("store the first credentials");
    let second = secrets.create(&create, &empty(INITIAL_ADMIN_SECRET)).await;
    refused(second, 409, "a second replica loses the race");
    let user = secrets.create(&create, &empty("kdeploy-user-alice")).await;
    user.expect("create its own secret");
    let ns = Namespace {
        metadata: object("alice"),
        ..Namespace::default()
    };
    let created = Api::<Namespace>::all(site.clone())
        .create(&create, &ns)
        .await;
    created.expect("create a user namespace");
    let deployments: Api<Deployment> = Api::namespaced(site.clone(), "alice");
    let listed = deployments.list(&ListParams::default()).await;
    listed.expect("list deployments");
    // A repository's route: a minion of the public host's master, made, read and removed by the
    // site; the controller's verdicts on it are Events in the developer's namespace.
    let ingresses: Api<Ingress> = Api::namespaced(site.clone(), "alice");
    let route = ingresses.create(&create, &minion("web")).await;
    route.expect("create a repository's route");
    let all_of_alice = ingresses.list(&ListParams::default()).await;
    all_of_alice.expect("list the namespace's Ingresses (hand-made ones among them)");
    let about_ingresses = ListParams::default().fields("involvedObject.kind=Ingress");
    let events = Api::<Event>::namespaced(site.clone(), "alice")
        .list(&about_ingresses)
        .await;
    events.expect("read the controller's verdicts");
    let verdicts_on_the_site = Api::<Event>::namespaced(site.clone(), SYSTEM_NAMESPACE)
        .list(&about_ingresses)
        .await;
    verdicts_on_the_site.expect("read the verdicts on the platform's own routes");
    let every_route = Api::<Ingress>::all(site.clone()).list(&all_managed()).await;
    every_route.expect("list the routes of every namespace (to bring old ones up to date)");
    let removed = ingresses.delete("web", &DeleteParams::default()).await;
    removed.expect("delete a repository's route");

    // Outside its scope.
    let all = ListParams::default();
    let nodes = Api::<Node>::all(site.clone()).list(&all).await;
    refused(nodes, 403, "listing nodes");
    let system = Api::<Secret>::namespaced(site.clone(), "kube-system");
    refused(system.list(&all).await, 403, "kube-system secrets");
    let users = Api::<Secret>::namespaced(site.clone(), "alice");
    refused(users.list(&all).await, 403, "a user namespace's secrets");
    let namespaces = Api::<Namespace>::all(site);
    let deleted = namespaces.delete("alice", &DeleteParams::default()).await;
    refused(
        deleted,
        403,
        "deleting a namespace (uninstall does, as the operator)",
    );
}

/// What the site made, in every namespace.
fn all_managed() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={PRODUCT}"))
}

/// A repository's route as the site makes it (see the contract in web/src/repositories/objects.rs).
fn minion(name: &str) -> Ingress {
    let annotations = [
        ("nginx.org/mergeable-ingress-type", "minion".to_owned()),
        (
            "nginx.org/rewrites",
            format!("serviceName={name} rewrite=/"),
        ),
    ];
    Ingress {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: Some(INGRESS_CLASS.into()),
            rules: Some(vec![IngressRule {
                host: Some("kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com".into()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(format!("/alice/{name}/")),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: name.into(),
                                port: Some(ServiceBackendPort {
                                    number: Some(8080),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

/// Asserts the API server refused the call with `code`.
fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>, code: u16, what: &str) {
    let err = result.expect_err(what);
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == code),
        "{what}: {err:?}"
    );
}
