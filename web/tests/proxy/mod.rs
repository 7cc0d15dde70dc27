//! A TCP proxy between the site and the simulated API server that a test can freeze (bytes are
//! held in both directions and new connections wait, as with an API server that stops
//! answering) and cut (every open connection is dropped, as when the network fails), and the
//! site started behind it under its installed identity.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{ClusterSim, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use web::{AppState, Config};

use crate::common::{self, Site};

pub struct Proxy {
    pub addr: SocketAddr,
    frozen: watch::Sender<bool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copies one direction, holding each chunk while the proxy is frozen.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = watch::Sender::new(false);
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let frozen = frozen.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let mut gate = frozen.subscribe();
                    let pipes_frozen = frozen.subscribe();
                    let task = tokio::spawn(async move {
                        // A frozen API server accepts nothing: the connection waits.
                        if gate.wait_for(|f| !*f).await.is_err() {
                            return;
                        }
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let (client_read, client_write) = client.into_split();
                        let (server_read, server_write) = server.into_split();
                        tokio::join!(
                            pipe(client_read, server_write, pipes_frozen.clone()),
                            pipe(server_read, client_write, pipes_frozen),
                        );
                    });
                    connections.lock().unwrap().push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Self {
            addr,
            frozen,
            connections,
            accept,
        }
    }

    /// Holds every byte and every new connection until [`Proxy::thaw`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Drops every open connection (watches included); new ones are still accepted.
    pub fn cut(&self) {
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// A site whose calls to the API server go through a proxy the test controls.
pub struct ProxiedSite {
    pub site: Site,
    pub proxy: Proxy,
}

/// The simulator with the platform's fixtures, and the site under its installed identity
/// talking to the API server through a [`Proxy`]; `before` runs on the proxy before the site
/// starts (to start it frozen, for example).
pub async fn proxied_site(config: Config, before: impl FnOnce(&Proxy)) -> ProxiedSite {
    proxied_site_on(SimConfig::default(), config, before).await
}

/// [`proxied_site`] on a simulator configured by `sim` (its readiness delay is set to 200 ms).
pub async fn proxied_site_on(
    sim: SimConfig,
    mut config: Config,
    before: impl FnOnce(&Proxy),
) -> ProxiedSite {
    let sim = ClusterSim::start(SimConfig {
        readiness_delay: Duration::from_millis(200),
        ..sim
    })
    .await
    .expect("simulator starts");
    config.console.upstream = sim.ingress_url();
    let admin = sim.client().await.unwrap();
    common::system_namespace(&admin, &config.system_namespace).await;
    common::master_ingress(&admin, config.public_url.host(), &config.ingress_class).await;
    let token = common::install_site_identity(&sim, &admin, &config).await;
    let api_url = sim.api_url();
    let port: u16 = api_url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let kubeconfig = sim
        .kubeconfig_for_token(&token)
        .unwrap()
        .replace(&format!(":{port}"), &format!(":{}", proxy.addr.port()));
    let kubeconfig: kube::config::Kubeconfig = serde_yaml::from_str(&kubeconfig).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    // Any 403 fails the test when the site is dropped (`Site`'s `Drop`).
    let refusals = common::Refusals::default();
    let client = common::watched_client(client_config, refusals.clone());
    before(&proxy);
    let state = AppState::connect(client.clone(), config).await.unwrap();
    ProxiedSite {
        site: Site {
            sim,
            state,
            admin,
            client,
            refusals,
        },
        proxy,
    }
}
