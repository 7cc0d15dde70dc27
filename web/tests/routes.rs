//! Repositories' routes on the public host, against the simulator's model of F5 NGINX Ingress
//! Controller (NIC): each repository is a minion of the platform's master Ingress, the controller's
//! verdict (its Events on the Ingress) is part of the repository's state, and the links the site
//! shows are the public URL's.
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use common::{HOST, MASTER_INGRESS, eventually, site, through_ingress};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// A plain or mergeable Ingress for the public host, as someone might write by hand.
fn hand_made_ingress(name: &str, annotations: Value, path: &str, service: &str) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": HOST, "http": {"paths": [{
                "path": path, "pathType": "Prefix",
                "backend": {"service": {"name": service, "port": {"number": 80}}}
            }]}}]
        }
    }))
    .unwrap()
}

/// NIC decides ties between Ingresses by `creationTimestamp`, which has whole seconds (metav1.Time
/// is serialised as RFC 3339 without a fraction): what is created after this returns is stamped a
/// later second than what was created before. The order under test depends on real time, so real
/// time passes, but only until the wall clock's second changes (the simulator stamps objects with
/// the same clock).
async fn next_second() {
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now.as_secs() > start {
            return;
        }
        tokio::time::sleep(Duration::from_secs(now.as_secs() + 1) - now).await;
    }
}

#[tokio::test]
async fn a_repository_is_served_as_a_minion_of_the_platforms_master() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let j = site.deploy_ready(&mut alice, "hello").await;
    assert_eq!(j["route"]["verdict"], "accepted", "{j}");
    assert!(
        j["route"]["message"]
            .as_str()
            .unwrap()
            .contains("alice/hello"),
        "NIC's own message: {j}"
    );
    assert_eq!(j["endpoint"], "http://lb.test/alice/hello/");
    let page = alice.get("/repos/hello").await.body;
    assert!(
        page.contains(r#"data-verdict="accepted""#)
            && page.contains("accepted by the ingress controller"),
        "{page}"
    );

    // The minion belongs to the Deployment, so it can never outlive the repository.
    let d: Deployment = site.objects("alice").get("hello").await.unwrap();
    let i: Ingress = site.objects("alice").get("hello").await.unwrap();
    let uid = d.metadata.uid.unwrap();
    let owners = i.metadata.owner_references.unwrap();
    assert!(
        owners
            .iter()
            .any(|o| o.kind == "Deployment" && o.name == "hello" && o.uid == uid),
        "{owners:?}"
    );

    // NGINX redirects the bare prefix, and strips the prefix from what the service sees.
    let (status, _) = through_ingress(&site.sim, "/alice/hello").await;
    assert_eq!(status, 301);
    let (status, body) = through_ingress(&site.sim, "/alice/hello/v1/items").await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/v1/items");
    assert_eq!(echo["service"], "hello");
}

/// Ingresses the site wrote before issue 11 (plain, with `path-regex` and `rewrite-target`) become
/// minions on the repository's next change, and all at once when the site starts.
#[tokio::test]
async fn routes_of_the_older_form_are_upgraded_by_a_change_and_at_start_up() {
    let site = site().await;
    // The older form is refused only because the master is older (configuration.go
    // chooseObjectMetaWinner; in the same second the larger UID would win, either way).
    next_second().await;
    let mut alice = site.user("alice").await;
    site.deploy_ready(&mut alice, "hello").await;
    site.deploy_ready(&mut alice, "other").await;
    let ingresses = site.objects::<Ingress>("alice");
    // What the site of the older form applied, under the same field manager.
    let older_form = |name: &str| -> Ingress {
        serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": name,
                "labels": {"app": name, "app.kubernetes.io/name": name,
                           "app.kubernetes.io/managed-by": "kdeploy", "app.kubernetes.io/part-of": "kdeploy"},
                "annotations": {"nginx.org/path-regex": "case_sensitive", "nginx.org/rewrite-target": "/$2"}
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": HOST, "http": {"paths": [{
                    "path": format!("/alice/{name}(/|$)(.*)"), "pathType": "ImplementationSpecific",
                    "backend": {"service": {"name": name, "port": {"number": 80}}}
                }]}}]
            }
        }))
        .unwrap()
    };
    let as_the_site = PatchParams::apply("kdeploy-web").force();
    for name in ["hello", "other"] {
        ingresses
            .patch(name, &as_the_site, &Patch::Apply(older_form(name)))
            .await
            .unwrap();
    }
    let is_minion = |i: &Ingress| {
        let a = i.metadata.annotations.clone().unwrap_or_default();
        let path = i.spec.as_ref().unwrap().rules.as_ref().unwrap()[0]
            .http
            .as_ref()
            .unwrap()
            .paths[0]
            .clone();
        a.get("nginx.org/mergeable-ingress-type")
            .map(String::as_str)
            == Some("minion")
            && !a.contains_key("nginx.org/path-regex")
            && !a.contains_key("nginx.org/rewrite-target")
            && path
                .path
                .as_deref()
                .is_some_and(|p| p.ends_with('/') && !p.contains('('))
            && path.path_type == "Prefix"
    };
    assert!(!is_minion(&ingresses.get("hello").await.unwrap()));
    // A plain Ingress for the master's host is refused, and the repository says so.
    let j = alice
        .poll_json("the older form to be refused", "/api/v1/repos/other", |j| {
            j["state"] == "Failing"
        })
        .await;
    assert_eq!(j["reason"], "Rejected", "{j}");
    assert_eq!(j["message"], "All hosts are taken by other resources");

    // A change applies the Ingress again, in the current form.
    let r = alice
        .call(
            axum::http::Method::PATCH,
            "/api/v1/repos/hello",
            json!({"replicas": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let hello = ingresses.get("hello").await.unwrap();
    assert!(is_minion(&hello), "{hello:?}");
    assert_eq!(
        hello.spec.unwrap().rules.unwrap()[0]
            .http
            .as_ref()
            .unwrap()
            .paths[0]
            .path
            .as_deref(),
        Some("/alice/hello/")
    );

    // At start-up the site upgrades the rest, and leaves the platform's own Ingresses alone
    // (the master carries the same managed-by label).
    assert_eq!(site.state.repositories.upgrade_routes().await.unwrap(), 1);
    let (namespace, name) = MASTER_INGRESS;
    let master: Ingress = site.objects(namespace).get(name).await.unwrap();
    assert_eq!(
        master.metadata.annotations.unwrap()["nginx.org/mergeable-ingress-type"],
        "master"
    );
    assert!(is_minion(&ingresses.get("other").await.unwrap()));
    assert_eq!(site.state.repositories.upgrade_routes().await.unwrap(), 0);
    for name in ["hello", "other"] {
        alice
            .poll_json(
                "the upgraded route to be accepted",
                &format!("/api/v1/repos/{name}"),
                |j| j["state"] == "Ready",
            )
            .await;
        site.reachable(&format!("/alice/{name}/x")).await;
    }
}

/// A minion of another namespace that claimed the path first keeps it; the repository says so with
/// NIC's warning, and recovers when the path is free.
#[tokio::test]
async fn a_path_taken_by_an_older_minion_fails_the_repository_with_nics_message() {
    let site = site().await;
    common::system_namespace(&site.admin, "mallory").await;
    site.objects::<Ingress>("mallory")
        .create(
            &PostParams::default(),
            &hand_made_ingress(
                "squatter",
                json!({"nginx.org/mergeable-ingress-type": "minion"}),
                "/alice/hello/",
                "decoy",
            ),
        )
        .await
        .unwrap();
    next_second().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;

    let j = alice
        .poll_json("the route to be refused", "/api/v1/repos/hello", |j| {
            j["state"] == "Failing"
        })
        .await;
    assert_eq!(j["reason"], "AddedOrUpdatedWithWarning", "{j}");
    let message = j["message"].as_str().unwrap();
    assert!(
        message.contains("alice/hello")
            && message.contains("path /alice/hello/ is taken by another resource"),
        "{j}"
    );
    assert_eq!(j["route"]["verdict"], "failed");
    assert_eq!(j["route"]["reason"], "AddedOrUpdatedWithWarning");
    assert_eq!(j["route"]["message"], message);
    assert!(
        j["advice"]
            .as_str()
            .unwrap()
            .contains("had this repository's path first"),
        "{j}"
    );
    assert!(j["endpoint"].is_null(), "no link that leads elsewhere: {j}");
    let rows = &alice.get_json("/api/v1/repos").await["repositories"];
    assert_eq!(rows[0]["state"], "Failing");
    assert_eq!(rows[0]["route"]["message"], message);
    let list = alice.get("/repos").await.body;
    assert!(
        list.contains("pill failing") && list.contains("AddedOrUpdatedWithWarning"),
        "{list}"
    );
    let page = alice.get("/repos/hello").await.body;
    assert!(
        page.contains("path /alice/hello/ is taken by another resource")
            && page.contains(r#"data-verdict="failed""#)
            && page.contains("banner error"),
        "{page}"
    );

    // The path is free again: NIC gives it to alice's minion, and the repository is Ready.
    site.objects::<Ingress>("mallory")
        .delete("squatter", &DeleteParams::default())
        .await
        .unwrap();
    let j = alice
        .poll_json("the route to be accepted", "/api/v1/repos/hello", |j| {
            j["state"] == "Ready"
        })
        .await;
    assert_eq!(j["route"]["verdict"], "accepted");
    assert_eq!(j["endpoint"], "http://lb.test/alice/hello/");
    let echo: Value = serde_json::from_str(&site.reachable("/alice/hello/").await).unwrap();
    assert_eq!(
        echo["namespace"], "alice",
        "alice's service, not the squatter's"
    );
}

#[tokio::test]
async fn without_the_platforms_master_every_route_fails_with_the_operators_advice() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    site.deploy_ready(&mut alice, "hello").await;
    let (namespace, name) = MASTER_INGRESS;
    Api::<Ingress>::namespaced(site.admin.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap();

    let j = alice
        .poll_json("the route to lose its master", "/api/v1/repos/hello", |j| {
            j["state"] == "Failing"
        })
        .await;
    assert_eq!(j["reason"], "NoIngressMasterFound", "{j}");
    assert_eq!(j["message"], "Ingress master is invalid or doesn't exist");
    let advice = j["advice"].as_str().unwrap();
    assert!(
        advice.contains("master Ingress for lb.test") && advice.contains("provisioner up"),
        "{advice}"
    );
    assert!(j["endpoint"].is_null());
    eventually("a minion without a master to be served no more", || async {
        let (status, _) = through_ingress(&site.sim, "/alice/hello/").await;
        (status == 404).then_some(())
    })
    .await;

    // `provisioner up` installs it again; the route comes back.
    common::master_ingress(&site.admin, HOST, "nginx").await;
    alice
        .poll_json(
            "the route to be accepted again",
            "/api/v1/repos/hello",
            |j| j["state"] == "Ready",
        )
        .await;
    site.reachable("/alice/hello/").await;
}

/// A hand-made plain Ingress for the site's host cannot take it from the platform's master: NIC
/// rejects it, nobody's routes change, and its owner's list says why.
#[tokio::test]
async fn a_hand_made_ingress_for_the_sites_host_is_rejected_and_its_owner_told() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let mut bob = site.user("bob").await;
    site.deploy_ready(&mut alice, "hello").await;
    site.deploy_ready(&mut bob, "web").await;
    next_second().await;
    site.objects::<Ingress>("alice")
        .create(
            &PostParams::default(),
            &hand_made_ingress("mine", json!({}), "/", "hello"),
        )
        .await
        .unwrap();

    let list = eventually("the notice on alice's list", || {
        let mut alice = alice.clone();
        async move {
            let body = alice.get("/repos").await.body;
            body.contains(r#"data-ingress="mine""#).then_some(body)
        }
    })
    .await;
    assert!(
        list.contains("All hosts are taken by other resources")
            && list.contains("kubectl delete ingress mine -n alice"),
        "{list}"
    );
    let listed = alice.get_json("/api/v1/repos").await;
    assert_eq!(
        listed["notices"][0]["ingress"], "mine",
        "the JSON API says it too: {listed}"
    );
    assert_eq!(listed["notices"][0]["reason"], "Rejected");
    assert_eq!(
        listed["notices"][0]["message"],
        "All hosts are taken by other resources"
    );
    assert_eq!(listed["repositories"][0]["state"], "Ready");
    assert!(!bob.get("/repos").await.body.contains("data-ingress"));
    assert_eq!(bob.get_json("/api/v1/repos").await["notices"], json!([]));

    // Everyone's routes stay as they were.
    for (who, path) in [(&mut alice, "hello"), (&mut bob, "web")] {
        let j = who.get_json(&format!("/api/v1/repos/{path}")).await;
        assert_eq!(j["state"], "Ready", "{j}");
    }
    for path in ["/alice/hello/", "/bob/web/"] {
        let (status, body) = through_ingress(&site.sim, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _) = through_ingress(&site.sim, "/").await;
    assert_ne!(status, 200, "the hand-made route to / is not served");
}

#[tokio::test]
async fn deleting_a_repository_leaves_no_minion() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    alice.create_ok("keep", "nginx", "80", "1").await;
    let r = alice
        .api(axum::http::Method::DELETE, "/api/v1/repos/hello", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(!site.exists::<Ingress>("alice", "hello").await);

    // Had the site's own delete of the Ingress failed, the garbage collector removes it with
    // the Deployment that owns it.
    site.objects::<Deployment>("alice")
        .delete("keep", &DeleteParams::background())
        .await
        .unwrap();
    eventually("the garbage collector to remove the minion", || async {
        let gone = !site.exists::<Ingress>("alice", "keep").await
            && !site.exists::<Service>("alice", "keep").await;
        gone.then_some(())
    })
    .await;
    let left = site
        .objects::<Ingress>("alice")
        .list(&Default::default())
        .await
        .unwrap();
    assert!(left.items.is_empty(), "{:?}", left.items);
    let (namespace, name) = MASTER_INGRESS;
    assert!(
        site.exists::<Ingress>(namespace, name).await,
        "the platform's master stays"
    );
}

/// With the public URL on the simulated load balancer (`http://kdeploy.localhost:<port>`, as
/// `./dev up` sets it), every link, curl command and example carries the port, the Ingress host
/// does not, and the console sends the Host a browser would.
#[tokio::test]
async fn every_link_is_the_public_url_with_its_port() {
    let site = common::site_on_the_load_balancer().await;
    let port = site.sim.ingress_addr().port();
    let base = format!("http://kdeploy.localhost:{port}");
    assert_eq!(site.state.config.public_url.base(), base);
    let endpoint = format!("{base}/alice/hello/");
    let mut alice = site.user("alice").await;
    let j = site.deploy_ready(&mut alice, "hello").await;
    assert_eq!(j["endpoint"], endpoint.as_str());

    let i: Ingress = site.objects("alice").get("hello").await.unwrap();
    assert_eq!(
        i.spec.unwrap().rules.unwrap()[0].host.as_deref(),
        Some("kdeploy.localhost")
    );
    let link = format!(r#"href="{endpoint}""#);
    assert!(alice.get("/repos").await.body.contains(&link));
    assert!(alice.get("/repos/hello").await.body.contains(&link));
    let openapi = alice.get("/api/v1/openapi.yaml").await.body;
    assert!(
        openapi.contains(&endpoint) && !openapi.contains("lb.example.com"),
        "the examples are this site's"
    );

    let r = alice
        .post_json(
            "/api/v1/repos/hello/send",
            json!({"method": "GET", "path": "/items", "query": [{"name": "a", "value": "1"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let sent = r.json();
    assert_eq!(sent["outcome"]["url"], format!("{endpoint}items?a=1"));
    assert!(
        sent["curl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("curl -i -X GET '{endpoint}items?a=1'")),
        "{sent}"
    );
    let echo: Value =
        serde_json::from_str(sent["outcome"]["body"]["text"].as_str().unwrap()).unwrap();
    // NIC passes NGINX's `$host` on, the host without the port.
    assert_eq!(echo["headers"]["host"], "kdeploy.localhost");

    // The link itself, as a browser sends it (kdeploy.localhost is the loopback address).
    let (status, body) = common::through_ingress_as(
        &site.sim,
        &format!("kdeploy.localhost:{port}"),
        "/alice/hello/",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
