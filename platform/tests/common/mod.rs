//! What the platform's tests share: the install's settings, the simulator, and the site's part
//! (its first credentials), which the simulated pods do not play.
#![allow(dead_code)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster::{ClusterSim, RunningSim, SimConfig};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use platform::manifests::SiteValues;
use platform::names::{INITIAL_ADMIN_SECRET, SITE, SYSTEM_NAMESPACE};
use platform::wait::{self, Patience};
use platform::{Credentials, InstallSpec, PublicUrl};

pub const PUBLIC_HOST: &str = "kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com";

pub fn site() -> SiteValues {
    SiteValues {
        public_url: PublicUrl::parse(&format!("http://{PUBLIC_HOST}")).unwrap(),
        image: "ghcr.io/kdeploy/web:0.1.0".into(),
    }
}

pub fn spec(wait_limit: Duration) -> InstallSpec {
    InstallSpec {
        site: site(),
        targets: Some(platform::targets::Settings {
            target_group_arn: "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/kdeploy-http/50dc6c495c0c9188".into(),
            port: platform::names::HTTP_NODE_PORT,
            region: "ap-northeast-2".into(),
            endpoint: None,
        }),
        nodes: 3,
        wait_limit,
    }
}

pub fn admin() -> Credentials {
    Credentials {
        username: "operator".into(),
        password: "s3cret-generated".into(),
    }
}

pub fn object(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

/// Plays the site, whose simulated pods are not real processes: once its rollout is complete,
/// it stores the first administrator's credentials as the site does on start.
/// The site's part: once its rollout is complete it stores its first credentials; with `lines`,
/// only once the installer reports waiting for them (so that the wait is certain to be seen).
pub fn play_the_site(
    client: kube::Client,
    lines: Option<Arc<Mutex<Vec<String>>>>,
) -> tokio::task::JoinHandle<()> {
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
        if let Some(lines) = lines {
            let waiting = || {
                lines
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("first credentials"))
            };
            let limit = Duration::from_secs(60);
            let deadline = tokio::time::Instant::now() + limit;
            while !waiting() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "install did not report waiting for the first credentials within {limit:?}; \
                     it reported: {:?}",
                    lines.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Api::<Secret>::namespaced(client, SYSTEM_NAMESPACE)
            .create(&PostParams::default(), &secret)
            .await
            .expect("the site stores its first credentials");
    })
}

pub async fn simulator() -> (RunningSim, kube::Client) {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let client = sim.client().await.expect("client");
    (sim, client)
}
