//! The public host's routes as NGINX Ingress Controller serves them (modelled by the simulator):
//! the platform installed with the site as our real binary under its own ServiceAccount, the
//! developers' repositories deployed through the site's JSON API, and every request sent to the
//! simulated NLB with the public host, as a browser sends it for the address the site shows.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use platform::manifests::SiteValues;
use platform::names::{HOST_INGRESS, INGRESS_CLASS, SITE, SYSTEM_NAMESPACE};
use platform::verdict::{ADDED_OR_UPDATED, ADDED_OR_UPDATED_WITH_WARNING, REJECTED};
use platform::{Credentials, InstallSpec, PublicUrl};
use serde_json::{Value, json};
use tests::{Browser, SITE_IMAGE_PREFIX, SiteCluster, eventually, route_verdict};

/// How long a wait on the cluster may take: 30 rollouts on two shared cores.
const PATIENCE: Duration = Duration::from_secs(240);

/// Any image the simulator does not fail is a simulated pod that echoes each request as JSON.
const ECHO_IMAGE: &str = "nginx:1.27";
const ECHO_PORT: i32 = 80;

/// The platform installed on a fresh simulator, with the public URL its NLB answers on.
struct Platform {
    cluster: SiteCluster,
    kube: kube::Client,
    public_url: PublicUrl,
    admin: Credentials,
}

impl Platform {
    async fn install() -> Self {
        let cluster = SiteCluster::start(SYSTEM_NAMESPACE, SITE).await;
        let port = cluster.sim.ingress_addr().port();
        let public_url = PublicUrl::parse(&format!("http://kdeploy.localhost:{port}")).unwrap();
        let kube = cluster.sim.client().await.expect("admin client");
        let spec = InstallSpec {
            site: SiteValues {
                public_url: public_url.clone(),
                image: format!("{SITE_IMAGE_PREFIX}:{}", env!("CARGO_PKG_VERSION")),
            },
            nodes: 3,
            wait_limit: Duration::from_secs(120),
            // The routes need no load balancer targets.
            targets: None,
        };
        let installed = platform::install(&kube, &spec, None)
            .await
            .unwrap_or_else(|e| panic!("install: {e}"));
        let admin = installed
            .initial_admin
            .expect("the site made its first administrator");
        let platform = Self {
            cluster,
            kube,
            public_url,
            admin,
        };
        // The controller has accepted the site's route; NGINX learns of its pods' endpoints
        // after a propagation delay, and answers 502 until then (as NIC does with no endpoints).
        let browser = platform.browser();
        eventually("the site to answer on its URL", PATIENCE, || async {
            (browser.get("/login").await.status == 200).then_some(())
        })
        .await;
        platform
    }

    /// A browser on the public URL, signed in as nobody.
    fn browser(&self) -> Browser {
        Browser::new(self.cluster.sim.ingress_addr(), self.public_url.authority())
    }

    /// The first administrator, signed in through the load balancer.
    async fn operator(&self) -> Browser {
        let operator = self.browser();
        let signed_in = operator
            .sign_in(&self.admin.username, &self.admin.password)
            .await;
        assert_eq!(signed_in.status, 200, "{}", signed_in.body);
        operator
    }

    /// Creates the developer `name` as the operator (the admin page's form), then signs them in.
    async fn developer(&self, operator: &Browser, name: &str) -> Browser {
        let password = format!("{name}-secret-password");
        let created = operator
            .post_form(
                "/admin/users",
                &[("username", name), ("password", password.as_str())],
            )
            .await;
        assert_eq!(created.status, 303, "creating {name}: {}", created.body);
        let developer = self.browser();
        let signed_in = developer.sign_in(name, &password).await;
        assert_eq!(signed_in.status, 200, "{}", signed_in.body);
        assert_eq!(signed_in.json()["namespace"], name);
        developer
    }

    /// `http://<host>[:port]/<namespace>/<repo>/`: the address the site must show.
    fn endpoint(&self, namespace: &str, repo: &str) -> String {
        format!("{}/{namespace}/{repo}/", self.public_url)
    }

    /// Requests `url` (an address on the public URL) through the simulated NLB.
    async fn open(&self, url: &str) -> tests::Reply {
        let prefix = self.public_url.to_string();
        let path = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{url} is not on {prefix}"));
        self.browser().get(path).await
    }
}

async fn deploy(developer: &Browser, repo: &str) {
    let body = json!({"name": repo, "image": ECHO_IMAGE, "port": ECHO_PORT, "replicas": 1});
    let created = developer.send_json("POST", "/api/v1/repos", &body).await;
    assert_eq!(created.status, 201, "deploying {repo}: {}", created.body);
}

/// The repositories of the JSON API's list, whichever of its two shapes (a list, or the overview
/// with `repositories` and `notices`).
fn repositories(list: &Value) -> Vec<Value> {
    let rows = if list.is_array() {
        list
    } else {
        &list["repositories"]
    };
    rows.as_array().cloned().unwrap_or_default()
}

/// Waits until every one of `repos` is Ready with its route accepted, and returns their endpoints.
async fn ready_endpoints(developer: &Browser, namespace: &str, repos: &[&str]) -> Vec<String> {
    let what = format!("{namespace}'s {} repositories to be Ready", repos.len());
    eventually(&what, PATIENCE, || async {
        let list = developer.get("/api/v1/repos").await;
        assert_eq!(list.status, 200, "{}", list.body);
        let rows = repositories(&list.json());
        let endpoints: Vec<String> = repos
            .iter()
            .filter_map(|repo| {
                let row = rows.iter().find(|r| r["name"] == *repo)?;
                let ready = row["state"] == "Ready" && row["route"]["verdict"] == "accepted";
                ready.then(|| row["endpoint"].as_str().map(str::to_owned))?
            })
            .collect();
        (endpoints.len() == repos.len()).then_some(endpoints)
    })
    .await
}

/// Waits until `url` answers, then checks who answered. The verdict comes before the route is
/// live: NIC records `AddedOrUpdated` as it syncs each Ingress of a batch and reloads NGINX once
/// the batch is done (5.5.4 internal/k8s/controller.go `sync`, `ReloadForBatchUpdates`), so until
/// then the path falls through to the site's `/` (its 404); and NGINX learns of new endpoints
/// after a propagation delay, answering 502 until then.
async fn first_answer_from(platform: &Platform, url: &str, namespace: &str, service: &str) {
    let root = eventually(&format!("{url} to answer"), PATIENCE, || async {
        let reply = platform.open(url).await;
        (![404, 502].contains(&reply.status)).then_some(reply)
    })
    .await;
    echoed_by(url, &root, namespace, service);
    deeper_paths_reach(platform, url, service).await;
}

/// Asserts that `url` is answered by the echo pod of `namespace/service`, with the route's prefix
/// rewritten away (`/<ns>/<repo>/x` reaches the service as `/x`).
async fn answers_from(platform: &Platform, url: &str, namespace: &str, service: &str) {
    echoed_by(url, &platform.open(url).await, namespace, service);
    deeper_paths_reach(platform, url, service).await;
}

/// `reply` (to `url`, the route's root) comes from the echo pod of `namespace/service`, as `/`.
fn echoed_by(url: &str, reply: &tests::Reply, namespace: &str, service: &str) {
    assert_eq!(reply.status, 200, "{url}: {}", reply.body);
    let echo = reply.json();
    assert_eq!(
        (&echo["namespace"], &echo["service"], &echo["path"]),
        (&json!(namespace), &json!(service), &json!("/")),
        "{url}: {echo}"
    );
}

/// A path under the route reaches the service without the route's prefix, with its query.
async fn deeper_paths_reach(platform: &Platform, url: &str, service: &str) {
    let deeper = platform.open(&format!("{url}orders/7?full=1")).await;
    assert_eq!(deeper.status, 200, "{url}orders/7: {}", deeper.body);
    let echo = deeper.json();
    assert_eq!(
        (&echo["service"], &echo["path"], &echo["query"]),
        (&json!(service), &json!("/orders/7"), &json!("full=1")),
        "{url}orders/7: {echo}"
    );
}

/// The site itself answers on the public URL, through its own minion.
async fn the_site_answers(platform: &Platform) {
    let page = platform.browser().get("/login").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Sign in"), "{}", page.body);
}

/// Thirty, not fifty: the platform's three t3.medium nodes hold 17 pods each (the VPC CNI's
/// limit, which the simulator's nodes declare and its scheduler enforces, kube-scheduler
/// NodeResourcesFit), and the platform's own five pods leave 46 places here (38 on EKS, where
/// aws-node, kube-proxy and CoreDNS take eight more). Fifty single-replica repositories would
/// leave some Pending with "Too many pods", as they would on the real cluster.
#[tokio::test]
async fn thirty_repositories_of_ten_developers_each_answer_at_the_address_the_site_shows() {
    let platform = Platform::install().await;
    let operator = platform.operator().await;
    let names: Vec<String> = (1..=10).map(|i| format!("dev{i:02}")).collect();
    let repos = ["api", "worker-1", "blog"];
    let mut developers = Vec::new();
    for name in &names {
        developers.push(platform.developer(&operator, name).await);
    }

    join_all(developers.iter().map(|developer| async move {
        for repo in repos {
            deploy(developer, repo).await;
        }
    }))
    .await;
    let endpoints = join_all(
        developers
            .iter()
            .zip(&names)
            .map(|(developer, name)| ready_endpoints(developer, name, &repos)),
    )
    .await;

    let shown: Vec<(&str, &str, &str)> = names
        .iter()
        .zip(&endpoints)
        .flat_map(|(name, shown)| {
            repos
                .iter()
                .zip(shown)
                .map(|(r, e)| (name.as_str(), *r, e.as_str()))
        })
        .collect();
    assert_eq!(shown.len(), 30);
    let platform = &platform;
    join_all(shown.into_iter().map(|(name, repo, endpoint)| async move {
        assert_eq!(endpoint, platform.endpoint(name, repo));
        first_answer_from(platform, endpoint, name, repo).await;
    }))
    .await;

    // NIC redirects the path without its trailing slash to the route.
    let bare = platform.browser().get("/dev03/blog").await;
    assert_eq!(bare.status, 301, "{}", bare.body);
    assert!(
        bare.location
            .as_deref()
            .is_some_and(|l| l.ends_with("/dev03/blog/")),
        "{:?}",
        bare.location
    );
    the_site_answers(platform).await;
    for name in [HOST_INGRESS, SITE] {
        let verdict = route_verdict(&platform.kube, SYSTEM_NAMESPACE, name).await;
        assert_eq!(verdict.map(|v| v.reason).as_deref(), Some(ADDED_OR_UPDATED));
    }
}

/// An Ingress for the public host with `paths` (path, service), as someone with kubectl writes it:
/// plain, or a minion when `mergeable` says so.
fn hand_made(name: &str, host: &str, mergeable: Option<&str>, paths: &[(&str, &str)]) -> Ingress {
    let paths = paths
        .iter()
        .map(|(path, service)| HTTPIngressPath {
            path: Some((*path).into()),
            path_type: "Prefix".into(),
            backend: IngressBackend {
                service: Some(IngressServiceBackend {
                    name: (*service).into(),
                    port: Some(ServiceBackendPort {
                        number: Some(ECHO_PORT),
                        ..ServiceBackendPort::default()
                    }),
                }),
                ..IngressBackend::default()
            },
        })
        .collect();
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
                host: Some(host.into()),
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}

#[tokio::test]
async fn a_hand_made_ingress_for_the_public_host_hijacks_no_route_and_its_owner_is_told() {
    let platform = Platform::install().await;
    let operator = platform.operator().await;
    let alice = platform.developer(&operator, "alice").await;
    let bob = platform.developer(&operator, "bob").await;
    for developer in [&alice, &bob] {
        deploy(developer, "web").await;
        deploy(developer, "api").await;
    }
    ready_endpoints(&alice, "alice", &["web", "api"]).await;
    ready_endpoints(&bob, "bob", &["web", "api"]).await;
    let routes = [
        ("alice", "web"),
        ("alice", "api"),
        ("bob", "web"),
        ("bob", "api"),
    ];
    for (namespace, repo) in routes {
        let endpoint = platform.endpoint(namespace, repo);
        first_answer_from(&platform, &endpoint, namespace, repo).await;
    }

    // In alice's namespace, with kubectl: a plain Ingress that claims the whole host and bob's
    // route, and a minion that claims bob's other route.
    let ingresses: Api<Ingress> = Api::namespaced(platform.kube.clone(), "alice");
    let host = platform.public_url.host();
    let shortcut = hand_made(
        "shortcut",
        host,
        None,
        &[("/", "web"), ("/bob/web/", "web")],
    );
    let takeover = hand_made("takeover", host, Some("minion"), &[("/bob/api/", "api")]);
    for ingress in [shortcut, takeover] {
        ingresses
            .create(&PostParams::default(), &ingress)
            .await
            .expect("a hand-made Ingress");
    }

    // The controller says no: the host is the master's (older), the path bob's (older minion).
    let rejected = eventually("the controller's verdict on shortcut", PATIENCE, || async {
        route_verdict(&platform.kube, "alice", "shortcut").await
    })
    .await;
    assert_eq!(
        (rejected.reason.as_str(), rejected.message.as_str()),
        (REJECTED, "All hosts are taken by other resources")
    );
    let warned = eventually("the controller's verdict on takeover", PATIENCE, || async {
        route_verdict(&platform.kube, "alice", "takeover")
            .await
            .filter(|v| v.reason != ADDED_OR_UPDATED)
    })
    .await;
    assert_eq!(warned.reason, ADDED_OR_UPDATED_WITH_WARNING);
    assert!(
        warned
            .message
            .ends_with("with warning(s): path /bob/api/ is taken by another resource"),
        "{}",
        warned.message
    );

    // Every route still reaches its own service, and the site still answers its paths.
    for (namespace, repo) in routes {
        answers_from(
            &platform,
            &platform.endpoint(namespace, repo),
            namespace,
            repo,
        )
        .await;
    }
    the_site_answers(&platform).await;
    // `/` is the site's (it sends a visitor to sign in), not the shortcut's.
    let root = platform.browser().get("/").await;
    assert_eq!(
        root.location.as_deref(),
        Some("/login"),
        "{} {}",
        root.status,
        root.body
    );
    for (namespace, name) in [
        (SYSTEM_NAMESPACE, HOST_INGRESS),
        (SYSTEM_NAMESPACE, SITE),
        ("alice", "web"),
        ("alice", "api"),
        ("bob", "web"),
        ("bob", "api"),
    ] {
        let verdict = route_verdict(&platform.kube, namespace, name).await;
        assert_eq!(
            verdict.map(|v| v.reason).as_deref(),
            Some(ADDED_OR_UPDATED),
            "{namespace}/{name}"
        );
    }

    // The site tells alice, whose namespace holds them, what the controller said; bob's routes
    // are fine and his pages say nothing of it.
    let list = eventually(
        "alice's page to show the refused Ingress",
        PATIENCE,
        || async {
            let page = alice.get("/repos").await;
            (page.body.contains("shortcut")
                && page.body.contains("All hosts are taken by other resources"))
            .then_some(page)
        },
    )
    .await;
    assert!(list.body.contains("takeover"), "{}", list.body);
    let listed = alice.get("/api/v1/repos").await.json();
    let notices = listed["notices"].as_array().cloned().unwrap_or_default();
    let notice = notices
        .iter()
        .find(|n| n["ingress"] == "shortcut")
        .unwrap_or_else(|| panic!("no notice of shortcut in {listed}"));
    assert_eq!(notice["reason"], REJECTED);
    assert_eq!(notice["message"], "All hosts are taken by other resources");
    assert!(notice["advice"].as_str().is_some_and(|a| !a.is_empty()));
    for row in repositories(&listed) {
        assert_eq!(row["state"], "Ready", "{row}");
    }
    let bobs = bob.get("/repos").await;
    assert!(!bobs.body.contains("shortcut"), "{}", bobs.body);

    // And still, now that the controller and the data path have had time to change their minds.
    for (namespace, repo) in routes {
        let endpoint = platform.endpoint(namespace, repo);
        answers_from(&platform, &endpoint, namespace, repo).await;
    }
}
