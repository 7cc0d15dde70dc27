//! The site through `app(state)` against the cluster simulator: every request is a real
//! Kubernetes API call made by kube-rs.
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{PASSWORD, eventually, site, through_ingress};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use serde_json::json;

/// Alice's Deployment of that name, as the cluster holds it.
async fn deployment(site: &common::Site, name: &str) -> Deployment {
    site.objects("alice").get(name).await.unwrap()
}

/// How many Deployments the namespace holds.
async fn deployment_count(site: &common::Site, ns: &str) -> usize {
    let list = site
        .objects::<Deployment>(ns)
        .list(&Default::default())
        .await;
    list.unwrap().items.len()
}

#[tokio::test]
async fn sign_in_sign_out_and_csrf() {
    let site = site().await;
    site.account("alice", false).await;
    let mut b = site.browser();

    let r = b.get("/repos").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/login");

    let r = b.sign_in("alice", "wrong password!").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("wrong username or password"), "{}", r.body);
    assert!(r.body.contains("value=\"alice\""), "the username is kept");

    // A form without the token (a cross-site post) is refused before anything happens.
    let r = b
        .post_raw("/login", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = b.sign_in("alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("kdeploy_session="))
        .unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    let r = b.get("/repos").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("kdeploy") && r.body.contains("<strong>alice</strong>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("New repository"));

    // A second replica (another router over the same cluster) accepts the same session.
    let mut replica = b.clone();
    replica.app = site.app();
    assert_eq!(replica.get("/repos").await.status, StatusCode::OK);

    let stolen = b.cookies.clone();
    b.submit("/logout", &[]).await;
    assert_eq!(b.get("/repos").await.location(), "/login");
    // The old cookie no longer works anywhere: sign-out is recorded in the cluster.
    replica.cookies = stolen;
    assert_eq!(replica.get("/repos").await.location(), "/login");
}

#[tokio::test]
async fn login_attempts_are_limited_through_the_cluster() {
    let site = site().await;
    site.account("alice", false).await;
    let mut b = site.browser();
    for _ in 0..3 {
        assert_eq!(
            b.sign_in("alice", "not the password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let secret = Api::<Secret>::namespaced(site.admin.clone(), "kdeploy-system")
        .get("kdeploy-user-alice")
        .await
        .unwrap();
    assert_eq!(
        secret.metadata.annotations.unwrap()["kdeploy.dev/failed-logins"],
        "3"
    );
    // Even the right password is refused now, also by another replica.
    let mut other = site.browser();
    other.app = site.app();
    let r = other.sign_in("alice", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    assert!(r.body.contains("too many failed sign-ins"));
}

#[tokio::test]
async fn create_repository_makes_deployment_service_and_ingress() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let r = alice.create("hello", "nginx", "8080", "2").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/repos/hello");

    let ns = Api::<k8s_openapi::api::core::v1::Namespace>::all(site.admin.clone())
        .get("alice")
        .await
        .unwrap();
    assert_eq!(
        ns.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "kdeploy"
    );

    let d = deployment(&site, "hello").await;
    let labels = d.metadata.labels.clone().unwrap();
    assert_eq!(labels["app"], "hello");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kdeploy");
    let spec = d.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let c = &spec.template.spec.unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx:latest"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
    assert!(c.readiness_probe.as_ref().unwrap().tcp_socket.is_some());
    let managers: Vec<String> = d
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subresource.is_none())
        .filter_map(|m| m.manager)
        .collect();
    // The controller manager writes the revision annotation, as in a real cluster; the rest
    // of the object is the site's.
    assert!(managers.iter().any(|m| m == "kdeploy-web"), "{managers:?}");
    assert!(
        managers
            .iter()
            .all(|m| m == "kdeploy-web" || m == "kube-controller-manager"),
        "{managers:?}"
    );

    let s = site.objects::<Service>("alice").get("hello").await.unwrap();
    let port = &s.spec.unwrap().ports.unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (
            8080,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
        )
    );
    // The route is a minion of the platform's master Ingress for the public host.
    let i = site.objects::<Ingress>("alice").get("hello").await.unwrap();
    let annotations = i.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["nginx.org/mergeable-ingress-type"], "minion");
    assert_eq!(
        annotations["nginx.org/rewrites"],
        "serviceName=hello rewrite=/"
    );
    assert!(!annotations.contains_key("nginx.org/rewrite-target"));
    let rule = &i.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some(common::HOST));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(
        (path.path.as_deref(), path.path_type.as_str()),
        (Some("/alice/hello/"), "Prefix")
    );

    // The list's JSON turns Ready with the endpoint once the pods are.
    let rows = alice
        .poll_json("repository ready", "/api/v1/repos", |list| {
            list["repositories"][0]["state"] == "Ready"
        })
        .await;
    let row = &rows["repositories"][0];
    assert_eq!(rows["notices"], json!([]));
    assert_eq!(row["endpoint"], "http://lb.test/alice/hello/");
    assert_eq!(row["replicas"]["ready"], 2);
    assert_eq!(row["route"]["verdict"], "accepted", "{row}");

    // The list page and the detail page show it.
    let list = alice.get("/repos").await.body;
    assert!(
        list.contains("pill ready") && list.contains("http://lb.test/alice/hello/"),
        "{list}"
    );
    let detail = alice.get("/repos/hello").await;
    assert_eq!(detail.status, StatusCode::OK);
    for part in [
        "Overview",
        "Pods",
        "Recent events",
        "Revisions",
        "Kubernetes objects",
        "nginx:latest",
    ] {
        assert!(detail.body.contains(part), "detail lacks {part}");
    }

    // The endpoint answers through the ingress with the prefix rewritten away.
    let body = site.reachable("/alice/hello/v1/items?x=1").await;
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/v1/items");
}

#[tokio::test]
async fn bad_input_is_refused_by_form_and_api_with_the_field() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let long = "a".repeat(64);
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("Hello", "nginx", "80", "1", "name"),
        ("my.app", "nginx", "80", "1", "name"),
        ("1app", "nginx", "80", "1", "name"),
        (&long, "nginx", "80", "1", "name"),
        ("ok", "ngi nx", "80", "1", "image"),
        ("ok", "nginx@sha256:abc", "80", "1", "image"),
        ("ok", "nginx", "0", "1", "port"),
        ("ok", "nginx", "70000", "1", "port"),
        ("ok", "nginx", "80", "0", "replicas"),
        ("ok", "nginx", "80", "6", "replicas"),
    ];
    for (name, image, port, replicas, field) in cases {
        let r = alice.create(name, image, port, replicas).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name} {image} {port} {replicas}"
        );
        assert!(
            r.body.contains(&format!("id=\"{field}-error\"")),
            "no inline error for {field}"
        );
        // Nothing typed is lost.
        assert!(r.body.contains(&format!("value=\"{image}\"")), "image lost");
        assert!(r.body.contains(&format!("value=\"{port}\"")), "port lost");

        let r = alice.post_json("/api/v1/repos", json!({"name": name, "image": image, "port": port.parse::<i64>().unwrap(), "replicas": replicas.parse::<i64>().unwrap()}))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        let body = r.json();
        assert_eq!(body["field"], *field, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "ok", "image": "nginx", "port": "eighty"}),
        )
        .await;
    assert_eq!(r.json()["field"], "port");
    assert_eq!(deployment_count(&site, "alice").await, 0);
}

#[tokio::test]
async fn another_users_repository_cannot_be_read_or_changed() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let mut bob = site.user("bob").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let snapshot = |d: Deployment| (d.metadata.generation, d.spec);
    let before = snapshot(deployment(&site, "hello").await);

    assert_eq!(bob.get("/repos/hello").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        bob.api(Method::GET, "/api/v1/repos/hello", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.post("/repos/hello/delete", &[("namespace", "alice")])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.post("/repos/hello/redeploy", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.post(
            "/repos/hello/change",
            &[("image", "evil"), ("port", "80"), ("replicas", "5")]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    // A namespace cannot be chosen through the body: the key is unknown, and refused as such.
    let r = bob
        .call(
            Method::PATCH,
            "/api/v1/repos/hello",
            json!({"replicas": 5, "namespace": "alice"}),
        )
        .await;
    r.assert_refused("namespace");
    let r = bob
        .call(Method::PATCH, "/api/v1/repos/hello", json!({"replicas": 5}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        bob.api(Method::DELETE, "/api/v1/repos/hello", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A forged namespace field is refused like any unknown field: nothing is created anywhere.
    let r = bob.create("other", "nginx", "80", "1").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = bob
        .post(
            "/repos",
            &[
                ("name", "forged"),
                ("image", "nginx"),
                ("port", "80"),
                ("namespace", "alice"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("namespace"), "{}", r.body);
    assert!(!site.exists::<Deployment>("bob", "forged").await);
    assert!(!site.exists::<Deployment>("alice", "forged").await);
    // Bob's list shows only his.
    let names: Vec<String> = bob.get_json("/api/v1/repos").await["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["other"]);
    // Requests without a session get nothing at all.
    let mut anonymous = site.browser();
    assert_eq!(
        anonymous
            .api(Method::GET, "/api/v1/repos/hello", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let after = snapshot(deployment(&site, "hello").await);
    assert_eq!(before, after, "alice's repository was not touched");
}

#[tokio::test]
async fn a_failed_step_rolls_back_the_earlier_objects() {
    // The site runs as a ServiceAccount that may not create Ingresses, so step three fails.
    let mut bootstrap = common::site().await;
    let rbac = json!([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "web-no-ingress"}, "rules": [
            {"apiGroups": [""], "resources": ["namespaces", "secrets", "configmaps", "services", "pods", "events", "resourcequotas", "limitranges"], "verbs": ["*"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["*"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": ["get", "list", "delete"]}
        ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "web-no-ingress"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "web-no-ingress"},
         "subjects": [{"kind": "ServiceAccount", "name": "web", "namespace": "kdeploy-system"}]}
    ]);
    let role: k8s_openapi::api::rbac::v1::ClusterRole =
        serde_json::from_value(rbac[0].clone()).unwrap();
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
        serde_json::from_value(rbac[1].clone()).unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(bootstrap.admin.clone())
        .create(&Default::default(), &role)
        .await
        .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(bootstrap.admin.clone())
        .create(&Default::default(), &binding)
        .await
        .unwrap();
    let token = bootstrap.sim.service_account_token("kdeploy-system", "web");
    let client = bootstrap.sim.client_with_token(&token).await.unwrap();
    bootstrap.state = web::AppState::connect(client, common::config())
        .await
        .unwrap();
    let site = bootstrap;

    let mut alice = site.user("alice").await;
    let r = alice.create("hello", "nginx", "80", "1").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert!(r.body.contains("Creating the Ingress failed"), "{}", r.body);
    // The API server's sentence, not a debug dump of its Status.
    assert!(r.body.contains("forbidden"), "{}", r.body);
    assert!(!r.body.contains("Status {"), "{}", r.body);
    assert!(r.body.contains("value=\"hello\""), "what was typed is kept");
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "again", "image": "nginx", "port": 80}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(r.message().contains("nothing was created"));

    for name in ["hello", "again"] {
        assert!(
            !site.exists::<Deployment>("alice", name).await,
            "{name} deployment left"
        );
        assert!(
            !site.exists::<Service>("alice", name).await,
            "{name} service left"
        );
    }
    assert!(
        alice.get_json("/api/v1/repos").await["repositories"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// Every other test's site talks to the cluster as the installed manifest's ServiceAccount:
/// outside its role it is refused, and taking its ClusterRoleBinding away stops the site's work.
#[tokio::test]
async fn the_site_works_as_its_installed_service_account_and_no_more() {
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    assert!(site.refusals.take().is_empty());

    // The identity's limits: nodes and another namespace's Secrets are not the site's.
    let nodes = Api::<Node>::all(site.client.clone())
        .list(&Default::default())
        .await;
    assert!(
        matches!(nodes, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{nodes:?}"
    );
    let secrets = Api::<Secret>::namespaced(site.client.clone(), "kube-system")
        .list(&Default::default())
        .await;
    assert!(
        matches!(secrets, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{secrets:?}"
    );
    let refused = site.refusals.take();
    assert_eq!(refused.len(), 2, "each refusal is noted: {refused:?}");
    assert!(refused[0].starts_with("GET /api/v1/nodes"), "{refused:?}");

    // Without the binding of its ClusterRole the site can no longer work in alice's namespace.
    Api::<ClusterRoleBinding>::all(site.admin.clone())
        .delete(platform::names::SITE, &Default::default())
        .await
        .unwrap();
    let r = alice.create("again", "nginx", "80", "1").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert!(r.body.contains("forbidden"), "{}", r.body);
    let refused = site.refusals.take();
    assert!(
        refused.iter().any(|c| c.contains("/namespaces/alice")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn two_simultaneous_creates_make_one_repository_and_one_error() {
    let site = site().await;
    let alice = site.user("alice").await;
    let body = json!({"name": "twin", "image": "nginx", "port": 80});
    let (mut a, mut b) = (alice.clone(), alice.clone());
    let (ra, rb) = tokio::join!(
        a.post_json("/api/v1/repos", body.clone()),
        b.post_json("/api/v1/repos", body.clone()),
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{ra:?} {rb:?}"
    );
    let conflict = if ra.status == StatusCode::CONFLICT {
        ra
    } else {
        rb
    };
    assert_eq!(conflict.json()["field"], "name");
    assert_eq!(deployment_count(&site, "alice").await, 1);
    // The loser did not roll back the winner's objects.
    assert!(site.exists::<Ingress>("alice", "twin").await);

    // Through the form, a taken name comes back as an error next to the name field.
    let mut form = alice.clone();
    let r = form.create("twin", "nginx", "80", "1").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body.contains("id=\"name-error\"")
            && r.body.contains("already have a repository named twin")
    );
}

#[tokio::test]
async fn redeploy_change_scale_and_delete() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    // The Deployment controller works from the latest template, as Kubernetes' does
    // (pkg/controller/deployment/sync.go `getAllReplicaSetsAndSyncRevision`): templates replaced
    // before it syncs make no ReplicaSet of their own. So the first revision must exist before
    // the changes below, for the history to show two.
    alice
        .poll_json("the first revision", "/api/v1/repos/hello", |d| {
            d["history"].as_array().map_or(0, Vec::len) >= 1
        })
        .await;
    let template_annotation = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("kubectl.kubernetes.io/restartedAt").cloned())
    };
    assert!(template_annotation(&deployment(&site, "hello").await).is_none());

    alice.submit("/repos/hello/redeploy", &[]).await;
    let d = deployment(&site, "hello").await;
    let first = template_annotation(&d).expect("restartedAt set");
    // No pause: the site stamps restartedAt with sub-second precision, so a second redeploy in
    // the same second still changes the template and restarts the pods (kubectl's whole-second
    // stamp would make it a no-op).
    let r = alice
        .api(Method::POST, "/api/v1/repos/hello/redeploy", None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let second = template_annotation(&deployment(&site, "hello").await).unwrap();
    assert_ne!(first, second);

    // Change the image from the detail page; the restart annotation is kept (no extra restart).
    alice
        .submit(
            "/repos/hello/change",
            &[("image", "nginx:1.27"), ("port", "80"), ("replicas", "2")],
        )
        .await;
    let d = deployment(&site, "hello").await;
    let c = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx:1.27"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(template_annotation(&d), Some(second));

    // A bad change is refused next to the field and keeps what was typed.
    let r = alice
        .post(
            "/repos/hello/change",
            &[
                ("image", "nginx:1.27"),
                ("port", "70000"),
                ("replicas", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"port-error\"") && r.body.contains("value=\"70000\""));

    // Scale through the API.
    let r = alice
        .call(Method::PATCH, "/api/v1/repos/hello", json!({"replicas": 3}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        deployment(&site, "hello").await.spec.unwrap().replicas,
        Some(3)
    );
    let r = alice
        .call(Method::PATCH, "/api/v1/repos/hello", json!({"replicas": 9}))
        .await;
    assert_eq!(r.json()["field"], "replicas");

    // Rollout history lists more than one revision after the image change.
    let detail = alice
        .poll_json("two revisions", "/api/v1/repos/hello", |d| {
            d["history"].as_array().map_or(0, Vec::len) >= 2
        })
        .await;
    assert_eq!(detail["namespace"], "alice");

    // Delete removes its objects only.
    alice.create_ok("keep", "nginx", "80", "1").await;
    alice.submit("/repos/hello/delete", &[]).await;
    assert!(!site.exists::<Deployment>("alice", "hello").await);
    assert!(!site.exists::<Service>("alice", "hello").await);
    assert!(!site.exists::<Ingress>("alice", "hello").await);
    assert!(site.exists::<Deployment>("alice", "keep").await);
    assert_eq!(
        alice.get("/repos/hello").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn failing_images_show_the_reason() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "broken", "image": "example/does-not-exist:1", "port": 80}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let rows = alice
        .poll_json("failing state", "/api/v1/repos", |list| {
            list["repositories"][0]["state"] == "Failing"
        })
        .await;
    let row = &rows["repositories"][0];
    let reason = row["reason"].as_str().unwrap();
    assert!(
        reason == "ErrImagePull" || reason == "ImagePullBackOff",
        "{row}"
    );
    assert!(row["advice"].as_str().unwrap().contains("image"));
    assert!(row["endpoint"].is_null());
    let page = alice.get("/repos/broken").await.body;
    assert!(page.contains("pill failing") && page.contains(reason));
}

#[tokio::test]
async fn admin_creates_users_and_toggles_registration() {
    let site = site().await;
    site.account("chief", true).await;
    let mut admin = site.browser();
    assert_eq!(
        admin.sign_in("chief", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let mut alice = site.user("alice").await;
    assert_eq!(alice.get("/admin").await.status, StatusCode::FORBIDDEN);

    let r = admin
        .post(
            "/admin/users",
            &[("username", "kube-system"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"username-error\""));
    admin
        .submit(
            "/admin/users",
            &[("username", "carol"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(
        site.browser().sign_in("carol", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );

    let mut stranger = site.browser();
    assert_eq!(
        stranger.get("/register").await.status,
        StatusCode::FORBIDDEN
    );
    admin
        .submit("/admin/registration", &[("enabled", "true")])
        .await;
    stranger.get("/register").await;
    stranger
        .submit("/register", &[("username", "dave"), ("password", PASSWORD)])
        .await;
    assert_eq!(stranger.get("/repos").await.status, StatusCode::OK);
    let r = site
        .browser()
        .post("/register", &[("username", "dave"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn health_openapi_and_api_sign_in() {
    let site = site().await;
    site.account("alice", false).await;
    let mut b = site.browser();
    assert_eq!(b.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(b.get("/readyz").await.status, StatusCode::OK);
    let spec = b.get("/api/v1/openapi.yaml").await;
    assert!(spec.body.contains("openapi: 3.1.0") && spec.body.contains("/repos/{name}/redeploy"));

    let mut api = site.browser();
    let r = api
        .post_json(
            "/api/v1/session",
            json!({"username": "alice", "password": "nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["message"], "wrong username or password");
    let r = api
        .post_json(
            "/api/v1/session",
            json!({"username": "alice", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["namespace"], "alice");
    api.csrf = Some(r.json()["csrfToken"].as_str().unwrap().to_string());
    let r = api
        .post_json(
            "/api/v1/repos",
            json!({"name": "viaapi", "image": "nginx", "port": 80}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Without the CSRF header a cookie-authenticated change is refused.
    api.csrf = Some(String::new());
    let r = api.api(Method::DELETE, "/api/v1/repos/viaapi", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.message().contains("reload"));
}

#[tokio::test]
async fn changing_the_port_moves_service_and_ingress() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let r = alice
        .call(Method::PATCH, "/api/v1/repos/hello", json!({"port": 8080}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let s = site.objects::<Service>("alice").get("hello").await.unwrap();
    let ports = s.spec.unwrap().ports.unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, 8080);
    let i = site.objects::<Ingress>("alice").get("hello").await.unwrap();
    let backend = i.spec.unwrap().rules.unwrap()[0]
        .http
        .as_ref()
        .unwrap()
        .paths[0]
        .backend
        .service
        .clone()
        .unwrap();
    assert_eq!(backend.port.unwrap().number, Some(8080));
}

#[tokio::test]
async fn detail_page_polls_and_scales_and_error_pages_keep_the_top_bar() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let page = alice.get("/repos/hello").await;
    assert!(page.body.contains(r#"data-poll="/api/v1/repos/hello""#));
    assert!(page.body.contains(r#"data-field="progress""#));
    // The JSON the page polls carries what it redraws.
    let j = alice.get_json("/api/v1/repos/hello").await;
    assert_eq!(j["replicas"]["desired"], 1);
    assert!(j["state"].is_string());

    // The scale control sends only `replicas`; image and port stay.
    alice
        .submit("/repos/hello/change", &[("replicas", "3")])
        .await;
    let d = deployment(&site, "hello").await;
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(3));
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx:latest"));

    // A bad count is shown next to the scale control, and the change form keeps the real values.
    let r = alice
        .post("/repos/hello/change", &[("replicas", "99")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains(r#"id="scale-error""#), "{}", r.body);
    assert!(!r.body.contains(r#"id="replicas-error""#));
    assert!(r.body.contains(r#"value="nginx:latest""#));
    assert_eq!(
        deployment(&site, "hello").await.spec.unwrap().replicas,
        Some(3)
    );

    // A missing page still shows who is signed in.
    let r = alice.get("/repos/nothere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("Signed in as"), "{}", r.body);
    let mut anonymous = site.browser();
    let r = anonymous.get("/no-such-page").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(!r.body.contains("Signed in as"));
}

#[tokio::test]
async fn quota_and_limit_range_are_created_and_a_scale_beyond_the_quota_is_explained() {
    let mut config = common::config();
    config.quota = Some(web::config::QuotaPolicy {
        pods: 2,
        ..web::config::QuotaPolicy::default()
    });
    let site = common::site_with(config).await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "2").await;
    let quota = site
        .objects::<k8s_openapi::api::core::v1::ResourceQuota>("alice")
        .get("kdeploy")
        .await
        .unwrap();
    assert_eq!(quota.spec.unwrap().hard.unwrap()["pods"].0, "2");
    site.objects::<k8s_openapi::api::core::v1::LimitRange>("alice")
        .get("kdeploy")
        .await
        .unwrap();
    alice
        .poll_json("two ready pods", "/api/v1/repos/hello", |j| {
            j["state"] == "Ready" && j["replicas"]["ready"] == 2
        })
        .await;
    alice
        .submit("/repos/hello/change", &[("replicas", "4")])
        .await;
    let j = alice
        .poll_json("the quota failure to show", "/api/v1/repos/hello", |j| {
            j["state"] == "Failing"
        })
        .await;
    assert_eq!(j["reason"], "FailedCreate", "{j}");
    assert!(j["advice"].as_str().unwrap().contains("quota"), "{j}");
    let page = alice.get("/repos/hello").await;
    assert!(page.body.contains("FailedCreate"));
}

/// A redeploy is a rolling restart with `maxUnavailable: 0`: requests sent through the ingress all
/// the way through it succeed, and the pods end up replaced.
#[tokio::test]
async fn requests_through_the_ingress_all_succeed_during_a_redeploy() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "2").await;
    let deployments = site.objects::<Deployment>("alice");
    let ready = |d: &Deployment| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(2);
    eventually("two ready replicas", || async {
        deployments
            .get("hello")
            .await
            .ok()
            .filter(ready)
            .map(|_| ())
    })
    .await;
    // NGINX has the pods once the endpoint change has reached it.
    site.reachable("/alice/hello/").await;
    let before: std::collections::BTreeSet<String> = pods_answering(&site).await;

    let rollout = async {
        alice.submit("/repos/hello/redeploy", &[]).await;
        eventually("the redeploy to complete", || async {
            let d = deployments.get("hello").await.ok()?;
            let status = d.status.as_ref()?;
            let done = d.metadata.generation == status.observed_generation
                && status.updated_replicas == Some(2)
                && status.ready_replicas == Some(2)
                && status.replicas == Some(2);
            done.then_some(())
        })
        .await;
    };
    common::load_across(&site.sim, "/alice/hello/ping", &before, rollout)
        .await
        .assert_served_throughout(&before);
    // Endpoints follow the new pods within a moment of the rollout's end.
    eventually("only new pods to answer", || async {
        let after = pods_answering(&site).await;
        before.is_disjoint(&after).then_some(())
    })
    .await;
}

/// Names of the pods that answer through the ingress (the simulator's echo names its pod).
async fn pods_answering(site: &common::Site) -> std::collections::BTreeSet<String> {
    let mut pods = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let (status, body) = through_ingress(&site.sim, "/alice/hello/").await;
        assert_eq!(status, 200, "{body}");
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        pods.insert(echo["pod"].as_str().unwrap().to_owned());
    }
    pods
}

#[tokio::test]
async fn json_bodies_refuse_unknown_keys_wrong_types_and_oversize_bodies() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    for (body, field) in [
        (
            json!({"name": "a", "image": "nginx", "port": 80, "colour": "red"}),
            "colour",
        ),
        (json!({"name": ["a"], "image": "nginx", "port": 80}), "name"),
        (json!(["a", "nginx"]), "body"),
    ] {
        alice
            .post_json("/api/v1/repos", body)
            .await
            .assert_refused(field);
    }
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "a", "image": "x".repeat(70 * 1024), "port": 80}),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["field"], "body");
    assert!(r.message().contains("the body is over 64 KiB"));
    assert_eq!(deployment_count(&site, "alice").await, 0);
}
