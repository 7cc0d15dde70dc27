//! Local Kubernetes cluster simulator: an in-process API server with real API semantics, the
//! controllers that make Deployments run, and an ingress data path, so tests and the local demo
//! can use kube-rs and `kubectl` without a real cluster.

pub mod api;
pub mod apply;
pub mod auth;
pub mod cloud;
pub mod containers;
pub mod controllers;
pub mod defaults;
pub mod error;
pub mod expansion;
pub mod images;
pub mod ingress;
pub mod logs;
pub mod meta;
pub mod quantity;
pub mod quota;
pub mod recorder;
pub mod registry;
pub mod resources;
pub mod selectors;
pub mod store;
pub mod tls;
pub mod validation;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use auth::AwsIdentity;
pub use cloud::AwsJoin;
pub use error::ApiError;
pub use tls::TlsIdentity;

/// How the simulated cluster behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// API server port on 127.0.0.1; 0 picks a free one.
    pub api_port: u16,
    /// Ingress (NLB + NGINX) port on 127.0.0.1; 0 picks a free one.
    pub ingress_port: u16,
    /// Admin bearer token (group `system:masters`); random when None.
    pub admin_token: Option<String>,
    /// How long a started pod takes to become Ready.
    pub readiness_delay: Duration,
    /// Images containing one of these substrings fail to pull (ErrImagePull / ImagePullBackOff).
    pub missing_image_patterns: Vec<String>,
    /// Registries that refuse pulls without their login (see `controllers::pull_secrets`).
    pub private_registries: Vec<RegistryLogin>,
    /// Images containing one of these substrings crash on start (CrashLoopBackOff).
    pub crashing_image_patterns: Vec<String>,
    /// At most this many changes are kept for resuming watches (the watch cache's upper bound
    /// capacity, 100 * 1024); changes older than 75 s go too (see `store`). Older
    /// resourceVersions get 410 Expired.
    pub watch_history: usize,
    /// How often watches with `allowWatchBookmarks` receive a BOOKMARK.
    pub bookmark_interval: Duration,
    /// IAM identities EKS-style tokens map to by their access key, when [`Self::aws`] is None.
    /// With `aws` set, tokens are authenticated through the emulator's STS and the cluster's
    /// access entries, creator and aws-auth instead (see [`cloud::identity`]).
    pub aws_identities: Vec<AwsIdentity>,
    /// How long after its X-Amz-Date an EKS-style token is accepted: 15 minutes on EKS
    /// (kubernetes-sigs/aws-iam-authenticator pkg/token/token.go `presignedURLExpiration`);
    /// tests set seconds to see clients renew their tokens.
    pub eks_token_lifetime: Duration,
    /// Treat requests without credentials as the admin. kubectl (client-go) does not send bearer
    /// tokens to a plain-HTTP server, so kubectl needs this when [`Self::tls`] is None.
    pub anonymous_is_admin: bool,
    /// Serve the API over HTTPS with this identity, as kube-apiserver does (see [`tls`]); plain
    /// HTTP when None. The API URL, kubeconfigs and pods' service account volumes follow.
    pub tls: Option<TlsIdentity>,
    /// Images that run as real local processes instead of simulated containers (see [`LocalCommand`]).
    pub local_commands: Vec<LocalCommand>,
    /// How long after an Endpoints change the ingress data path uses it: on a real cluster the
    /// EndpointSlice update, the controller's queue and the NGINX reload take about this long,
    /// while the kubelet is already stopping the pod. Zero makes the ingress see changes at once.
    pub endpoint_propagation_delay: Duration,
    /// An OCI image layout (the node's image store): a pod whose first container's image is
    /// in it runs that image's program on a loopback pod IP of its own (127.1.0.0/16), before
    /// `local_commands` and the simulated containers are considered.
    pub image_store: Option<std::path::PathBuf>,
    /// Nodes come from the AWS emulator's instances of this EKS cluster (see [`cloud`]) instead
    /// of the three fixed nodes [`controllers::NODE_NAMES`].
    pub aws: Option<AwsJoin>,
    /// How long a pod bound to a Node that no longer exists is left before the pod garbage
    /// collector deletes it: 40 s in kube-controller-manager (pkg/controller/podgc
    /// gc_controller.go `quarantineTime`); tests shorten it.
    pub orphaned_pod_quarantine: Duration,
}

/// A local program standing in for an image: a pod whose first container's image starts with
/// `image_prefix` runs `program args...` on 127.0.0.1, with the container's env, `PORT` set to a
/// free port, and `{port}` in `args` replaced by it. Ingress traffic and Endpoints go to that port,
/// and the pod is Ready while the port accepts connections.
#[derive(Debug, Clone)]
pub struct LocalCommand {
    pub image_prefix: String,
    pub program: String,
    pub args: Vec<String>,
}

/// A private registry's host (with its port, if any) and the one login it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    pub host: String,
    pub username: String,
    pub password: String,
}

impl std::str::FromStr for RegistryLogin {
    type Err = String;

    /// `host=username:password`, the form of `cluster-sim --private-registry`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (host, login) = text
            .split_once('=')
            .ok_or("--private-registry: expected host=username:password")?;
        let (username, password) = login
            .split_once(':')
            .ok_or("--private-registry: expected host=username:password")?;
        if host.is_empty() || username.is_empty() || password.is_empty() {
            return Err("--private-registry: host, username and password must not be empty".into());
        }
        Ok(Self {
            host: host.to_string(),
            username: username.to_string(),
            password: password.to_string(),
        })
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            api_port: 0,
            ingress_port: 0,
            admin_token: None,
            readiness_delay: Duration::from_millis(500),
            missing_image_patterns: vec!["does-not-exist".into(), "missing".into()],
            crashing_image_patterns: vec!["crash".into()],
            private_registries: Vec::new(),
            watch_history: 100 * 1024,
            bookmark_interval: Duration::from_secs(10),
            aws_identities: Vec::new(),
            eks_token_lifetime: Duration::from_secs(15 * 60),
            anonymous_is_admin: false,
            tls: None,
            local_commands: Vec::new(),
            endpoint_propagation_delay: Duration::from_secs(1),
            image_store: None,
            aws: None,
            orphaned_pod_quarantine: Duration::from_secs(40),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind {what} on 127.0.0.1:{port}: {source}")]
    Bind {
        what: &'static str,
        port: u16,
        source: std::io::Error,
    },
    #[error("cannot build a kube client for the simulator: {0}")]
    Client(#[from] kube::Error),
    #[error("cannot build a kubeconfig for the simulator: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot render the kubeconfig: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("cannot serve the API over TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("the AWS emulator at {endpoint} did not take the cluster's endpoint: {problem}")]
    Announce { endpoint: String, problem: String },
}

pub struct ClusterSim;

impl ClusterSim {
    /// Starts the API server, the controllers and the ingress listener on 127.0.0.1.
    pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
        let api_listener = TcpListener::bind(("127.0.0.1", config.api_port))
            .await
            .map_err(|source| SimError::Bind {
                what: "the API server",
                port: config.api_port,
                source,
            })?;
        let ingress_listener = TcpListener::bind(("127.0.0.1", config.ingress_port))
            .await
            .map_err(|source| SimError::Bind {
                what: "the ingress",
                port: config.ingress_port,
                source,
            })?;
        let api_addr = api_listener.local_addr().map_err(|source| SimError::Bind {
            what: "the API server",
            port: config.api_port,
            source,
        })?;
        let ingress_addr = ingress_listener
            .local_addr()
            .map_err(|source| SimError::Bind {
                what: "the ingress",
                port: config.ingress_port,
                source,
            })?;

        let admin_token = config
            .admin_token
            .clone()
            .unwrap_or_else(|| format!("sim-admin.{}", meta::random_suffix(24)));
        let registry = Arc::new(registry::Registry::new(config.watch_history));
        let mut authenticator = auth::Authenticator::new(
            admin_token.clone(),
            config.aws_identities.clone(),
            config.eks_token_lifetime,
            config.anonymous_is_admin,
        );
        // With the AWS emulator, EKS tokens are authenticated as EKS does: its STS, then the
        // cluster's access entries, creator and aws-auth.
        if let Some(join) = config.aws.clone() {
            let eks = cloud::identity::EksAuth::new(join, registry.clone()).await;
            authenticator = authenticator.with_eks(Arc::new(eks));
        }
        let authenticator = Arc::new(authenticator);
        controllers::bootstrap(&registry, config.aws.is_none());

        let logs = Arc::new(logs::ContainerLogs::default());
        let state = Arc::new(api::ApiState {
            registry: registry.clone(),
            logs: logs.clone(),
            authenticator: authenticator.clone(),
            server_address: api_addr.to_string(),
            bookmark_interval: config.bookmark_interval,
        });
        let mut tasks = Vec::new();
        let app = api::router(state);
        let certificate_authority = config
            .tls
            .as_ref()
            .map(|identity| identity.certificate_authority_pem.clone());
        match &config.tls {
            Some(identity) => {
                let listener = tls::TlsListener::new(api_listener, identity.server_config()?);
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "API server stopped");
                    }
                }));
            }
            None => tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(api_listener, app).await {
                    tracing::error!(error = %e, "API server stopped");
                }
            })),
        }
        let containers = Arc::new(containers::Containers::default());
        let machines = Arc::new(cloud::Machines::default());
        let join_report = Arc::new(cloud::JoinReport::default());
        if let Some(join) = config.aws.clone() {
            tasks.push(tokio::spawn(cloud::run(
                registry.clone(),
                join,
                machines.clone(),
                join_report.clone(),
            )));
        }
        tasks.push(tokio::spawn(controllers::run(
            registry.clone(),
            Arc::new(config.clone()),
            containers.clone(),
            machines.clone(),
            controllers::ApiAccess {
                authenticator: authenticator.clone(),
                addr: api_addr,
                certificate_authority: certificate_authority.clone(),
            },
            logs,
        )));
        let nginx: ingress::Published = Arc::default();
        tasks.push(on_own_thread("ingress-controller", {
            let (registry, nginx) = (registry.clone(), nginx.clone());
            move || ingress::controller::run(registry, nginx)
        }));
        let endpoints = Arc::new(ingress::EndpointsView::default());
        tasks.push(tokio::spawn(ingress::follow_endpoints(
            registry.clone(),
            endpoints.clone(),
            config.endpoint_propagation_delay,
        )));
        let ingress_app = ingress::router(registry.clone(), nginx, endpoints, containers);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(ingress_listener, ingress_app).await {
                tracing::error!(error = %e, "ingress stopped");
            }
        }));
        tracing::info!(api = %api_addr, ingress = %ingress_addr, "cluster simulator started");
        Ok(RunningSim {
            api_addr,
            certificate_authority,
            ingress_addr,
            admin_token,
            registry,
            authenticator,
            machines,
            join_report,
            tasks,
        })
    }
}

/// Runs a component that is its own process in a real cluster (NIC runs in its own pod) on its
/// own thread and runtime: however long it computes (NIC regenerates a mergeable host's whole
/// configuration for each change of it, `internal/k8s/controller.go` syncIngress), the API
/// server's requests go on. Aborting the returned task stops the thread at its next await.
fn on_own_thread<F, Fut>(name: &str, make: F) -> JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "no runtime for a component");
                    return;
                }
            };
            runtime.block_on(async move {
                tokio::select! {
                    () = make() => {}
                    _ = stopped => {}
                }
            });
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "no thread for a component");
    }
    // Holds the sender: when this task is aborted (the simulator is dropped), the thread stops.
    tokio::spawn(async move {
        let _stop = stop;
        std::future::pending::<()>().await;
    })
}

/// A started simulator; everything stops when it is dropped.
pub struct RunningSim {
    api_addr: SocketAddr,
    /// The CA's PEM when the API is served over TLS.
    certificate_authority: Option<String>,
    ingress_addr: SocketAddr,
    admin_token: String,
    registry: Arc<registry::Registry>,
    authenticator: Arc<auth::Authenticator>,
    machines: Arc<cloud::Machines>,
    join_report: Arc<cloud::JoinReport>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSim {
    /// `https://127.0.0.1:PORT` with [`SimConfig::tls`], else `http://`.
    pub fn api_url(&self) -> String {
        let scheme = match self.certificate_authority {
            Some(_) => "https",
            None => "http",
        };
        format!("{scheme}://{}", self.api_addr)
    }

    /// The PEM of the CA the API server's certificate chains to, with [`SimConfig::tls`].
    pub fn certificate_authority_pem(&self) -> Option<&str> {
        self.certificate_authority.as_deref()
    }

    /// The CA as EKS's DescribeCluster gives it (`certificateAuthority.data`: the PEM, base64)
    /// and kubeconfigs carry it (`certificate-authority-data`).
    pub fn certificate_authority_data(&self) -> Option<String> {
        use base64::Engine;
        self.certificate_authority
            .as_ref()
            .map(|pem| base64::engine::general_purpose::STANDARD.encode(pem))
    }

    /// Has the AWS emulator at `aws_endpoint` report this API server (its URL and CA) as the
    /// endpoint of its EKS cluster `cluster_name` in DescribeCluster, as EKS reports its control
    /// plane's (localstack/aws/moto_server.py, `eks_cluster_endpoint`); before or after the
    /// cluster is created. Needs [`SimConfig::tls`]: an EKS endpoint is HTTPS.
    pub async fn announce_to_emulator(
        &self,
        aws_endpoint: &str,
        cluster_name: &str,
    ) -> Result<(), SimError> {
        use http_body_util::{BodyExt, Full};
        let fail = |problem: String| SimError::Announce {
            endpoint: aws_endpoint.to_owned(),
            problem,
        };
        let data = self.certificate_authority_data().ok_or_else(|| {
            fail("the API server serves no TLS, and EKS endpoints are HTTPS".into())
        })?;
        let body = serde_json::json!({
            "name": cluster_name,
            "endpoint": self.api_url(),
            "certificateAuthority": {"data": data},
        });
        let request = http::Request::post(format!(
            "{}/moto-api/kdeploy/eks-cluster-endpoint",
            aws_endpoint.trim_end_matches('/')
        ))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .map_err(|e| fail(e.to_string()))?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let response = client
            .request(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(fail(format!("{status}: {answer}")))
    }

    /// Base URL of the ingress data path (what the NLB's DNS name points at).
    pub fn ingress_url(&self) -> String {
        format!("http://{}", self.ingress_addr)
    }

    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress_addr
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Direct access to the stored objects, for tests that check state without HTTP.
    pub fn registry(&self) -> &Arc<registry::Registry> {
        &self.registry
    }

    /// With [`SimConfig::aws`]: each running instance that does not join, by id, with the reason
    /// (also logged once).
    pub fn instances_not_joining(&self) -> std::collections::BTreeMap<String, String> {
        self.join_report.not_joining()
    }

    /// The 127.0.0.1 address of a joined node's instance metadata service.
    pub fn instance_metadata_address(&self, node: &str) -> Option<SocketAddr> {
        self.machines.imds_address(node)
    }

    /// A bearer token for a ServiceAccount, subject to RBAC like any other user.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        self.authenticator
            .issue_service_account_token(namespace, name)
    }

    /// A kubeconfig for `kubectl` with one context `sim` and the admin token.
    pub fn kubeconfig_yaml(&self) -> Result<String, SimError> {
        self.kubeconfig_for_token(&self.admin_token)
    }

    pub fn kubeconfig_for_token(&self, token: &str) -> Result<String, SimError> {
        let mut cluster = serde_json::json!({"server": self.api_url()});
        if let Some(data) = self.certificate_authority_data() {
            cluster["certificate-authority-data"] = data.into();
        }
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sim", "cluster": cluster}],
            "users": [{"name": "sim-admin", "user": {"token": token}}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim-admin", "namespace": "default"}}],
            "current-context": "sim",
            "preferences": {},
        });
        Ok(serde_yaml::to_string(&config)?)
    }

    /// A kube-rs client authenticated as the admin.
    pub async fn client(&self) -> Result<kube::Client, SimError> {
        self.client_with_token(&self.admin_token).await
    }

    pub async fn client_with_token(&self, token: &str) -> Result<kube::Client, SimError> {
        let kubeconfig: kube::config::Kubeconfig =
            serde_yaml::from_str(&self.kubeconfig_for_token(token)?)?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
