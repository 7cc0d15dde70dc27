//! The API server over HTTPS (`SimConfig::tls`, `cluster-sim --tls`), as kube-apiserver serves it:
//! clients that trust the cluster CA get in, others fail the handshake, plain HTTP gets no answer;
//! the real kubectl verifies the certificate from the kubeconfig `cluster-sim` writes and sends
//! its token; and the AWS emulator reports the simulator as the EKS cluster's endpoint and CA in
//! DescribeCluster (Amazon EKS API Reference, DescribeCluster: `endpoint`,
//! `certificateAuthority.data`), where the product's own client and EKS token reach it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test set-up

mod common;

use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use base64::Engine;
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;

use cluster::{AwsJoin, SimConfig, TlsIdentity};

const REGION: &str = "ap-northeast-2";

fn tls_config() -> SimConfig {
    SimConfig {
        tls: Some(TlsIdentity::generate().expect("certificates")),
        ..SimConfig::default()
    }
}

async fn namespaces(client: kube::Client) -> Result<Vec<String>, kube::Error> {
    Ok(Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

#[tokio::test]
async fn the_api_is_served_over_tls_to_clients_that_trust_the_cluster_ca() {
    let sim = common::sim_with(tls_config()).await;
    let url = sim.api_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // Through the kubeconfig, which carries the CA.
    let kubeconfig = sim.kubeconfig_yaml().unwrap();
    assert!(
        kubeconfig.contains("certificate-authority-data:"),
        "{kubeconfig}"
    );
    let found = namespaces(sim.client().await.unwrap()).await.unwrap();
    assert!(found.contains(&"default".to_string()), "{found:?}");

    // The same token with another cluster's CA: the certificate is not trusted.
    let other = TlsIdentity::generate().unwrap();
    let untrusting = platform::cluster::connect(&platform::cluster::Access {
        endpoint: url.clone(),
        certificate_authority: Some(
            base64::engine::general_purpose::STANDARD.encode(other.certificate_authority_pem),
        ),
        token: sim.admin_token().to_string(),
    })
    .unwrap();
    let refused = namespaces(untrusting).await;
    assert!(refused.is_err(), "{refused:?}");
    let message = format!("{:?}", refused.unwrap_err());
    assert!(
        message.contains("UnknownIssuer") || message.to_lowercase().contains("certificate"),
        "{message}"
    );

    // Plain HTTP to the API port: no HTTP answer, only a failed handshake.
    let plain = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = url.replacen("https://", "http://", 1).parse().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), plain.get(uri))
        .await
        .expect("the server closes the connection");
    assert!(answer.is_err(), "{answer:?}");
}

/// A scratch directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(40),
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl answers within 40 s")
    .unwrap_or_else(|e| {
        panic!("this test runs the real kubectl, which could not be started ({e}): install it")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn kubectl_verifies_the_certificate_from_cluster_sims_kubeconfig_and_sends_its_token() {
    let dir = TempDir(std::env::temp_dir().join(format!(
        "cluster-sim-tls-{}",
        cluster::meta::random_suffix(8)
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let kubeconfig = dir.0.join("kubeconfig");
    let _sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_cluster-sim"))
        .args([
            "--tls",
            "--port",
            "0",
            "--ingress-port",
            "0",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .kill_on_drop(true)
        .spawn()
        .expect("cluster-sim starts");
    // The binary writes its kubeconfig once it serves.
    let yaml = common::eventually("cluster-sim's kubeconfig", Duration::from_secs(30), || {
        let path = kubeconfig.clone();
        async move { std::fs::read_to_string(path).ok() }
    })
    .await;
    assert!(
        yaml.contains("server: https://127.0.0.1:") && yaml.contains("certificate-authority-data:"),
        "{yaml}"
    );

    let (ok, out) = kubectl(&kubeconfig, &["get", "namespaces", "-o", "name"]).await;
    assert!(ok && out.contains("namespace/default"), "{out}");

    // With --tls anonymous requests are not the admin: the answer above came with the token.
    let no_token = dir.0.join("no-token");
    let stripped: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with("token:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&no_token, stripped).unwrap();
    let (ok, out) = kubectl(&no_token, &["get", "namespaces", "-o", "name"]).await;
    assert!(!ok && !out.contains("namespace/default"), "{out}");

    // Without the CA, kubectl (Go's crypto/x509) does not trust the server.
    let no_ca = dir.0.join("no-ca");
    let stripped: String = yaml
        .lines()
        .filter(|l| !l.trim_start().starts_with("certificate-authority-data:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&no_ca, stripped).unwrap();
    let (ok, out) = kubectl(&no_ca, &["get", "namespaces", "-o", "name"]).await;
    assert!(
        !ok && out.contains("certificate signed by unknown authority"),
        "{out}"
    );
}

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(dummy())
        .http_client(http)
        .load()
        .await
}

/// The emulator's dummy credentials, which STS answers for as IAM user `moto`.
fn dummy() -> Credentials {
    Credentials::new("test", "test", None, None, "test")
}

async fn create_cluster(eks: &aws_sdk_eks::Client, name: &str) {
    eks.create_cluster()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/cluster")
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .send()
        .await
        .unwrap();
}

/// (endpoint, certificateAuthority.data) as DescribeCluster reports them.
async fn described(eks: &aws_sdk_eks::Client, name: &str) -> (String, String) {
    let out = eks.describe_cluster().name(name).send().await.unwrap();
    let cluster = out.cluster().unwrap();
    (
        cluster.endpoint().unwrap().to_string(),
        cluster
            .certificate_authority()
            .and_then(|c| c.data())
            .unwrap()
            .to_string(),
    )
}

#[tokio::test]
async fn the_emulator_reports_the_simulator_as_the_eks_endpoint_where_eks_tokens_get_in() {
    let emulator = aws::AwsEmulator::start(aws::Port::Any)
        .await
        .expect("the AWS emulator starts");
    let eks = aws_sdk_eks::Client::new(&sdk(emulator.endpoint()).await);
    let sim = common::sim_with(SimConfig {
        aws: Some(AwsJoin {
            endpoint: emulator.endpoint().to_string(),
            region: REGION.to_string(),
            cluster_name: "secure".to_string(),
            poll_interval: Duration::from_secs(5),
        }),
        ..tls_config()
    })
    .await;
    let pem = sim.certificate_authority_pem().unwrap().to_string();

    // Registered before the cluster exists (as the full-stack test does before `up`)...
    sim.announce_to_emulator(emulator.endpoint(), "secure")
        .await
        .unwrap();
    create_cluster(&eks, "secure").await;
    // ...and after (as `cluster-sim --tls` does against a running stack).
    create_cluster(&eks, "already").await;
    let (made_up, _) = described(&eks, "already").await;
    assert!(made_up.ends_with(".eks.amazonaws.com/"), "{made_up}");
    sim.announce_to_emulator(emulator.endpoint(), "already")
        .await
        .unwrap();
    for name in ["secure", "already"] {
        let (endpoint, data) = described(&eks, name).await;
        assert_eq!(endpoint, sim.api_url(), "{name}");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&data)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), pem, "{name}");
    }

    // The product's client from DescribeCluster's answer and an EKS token of CreateCluster's
    // caller: the CA validates, the token maps to the creator.
    let (endpoint, data) = described(&eks, "secure").await;
    let token = platform::auth::eks_token(&dummy(), REGION, "secure", SystemTime::now()).unwrap();
    let client = platform::cluster::connect(&platform::cluster::Access {
        endpoint,
        certificate_authority: Some(data),
        token,
    })
    .unwrap();
    let found = namespaces(client).await.unwrap();
    assert!(found.contains(&"kube-system".to_string()), "{found:?}");

    // The emulator takes only what EKS gives: an https:// endpoint and a PEM CA.
    let refused = http_post(
        emulator.endpoint(),
        serde_json::json!({
            "name": "secure",
            "endpoint": "http://127.0.0.1:1",
            "certificateAuthority": {"data": base64::engine::general_purpose::STANDARD.encode(&pem)},
        }),
    )
    .await;
    assert_eq!(refused, 400);
    let refused = http_post(
        emulator.endpoint(),
        serde_json::json!({
            "name": "secure",
            "endpoint": "https://127.0.0.1:1",
            "certificateAuthority": {"data": "bm90IGEgY2VydGlmaWNhdGU="},
        }),
    )
    .await;
    assert_eq!(refused, 400);
    assert_eq!(described(&eks, "secure").await.0, sim.api_url());
}

async fn http_post(endpoint: &str, body: serde_json::Value) -> u16 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::post(format!("{endpoint}/moto-api/kdeploy/eks-cluster-endpoint"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}
