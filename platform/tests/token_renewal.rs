//! EKS tokens expire (kubernetes-sigs/aws-iam-authenticator pkg/token/token.go: a presigned STS
//! URL is accepted for `presignedURLExpiration`, 15 minutes, after its X-Amz-Date). Against a
//! simulator whose tokens live 2 seconds, a client built from a token source keeps working across
//! several lifetimes because it renews its token, while a client holding one token is refused
//! with 401 once that token is older than the lifetime.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use cluster::{AwsIdentity, ClusterSim, SimConfig};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use platform::cluster::{Access, TokenSource, connect, connect_renewing};

const ACCESS_KEY: &str = "AKIDEXAMPLE";
const LIFETIME: Duration = Duration::from_secs(2);

/// Signs EKS tokens as the provisioner does (platform::auth::eks_token), counting them.
struct Signer {
    credentials: Credentials,
    signed: AtomicUsize,
}

impl TokenSource for Signer {
    fn token(&self) -> BoxFuture<'static, Result<String, platform::error::BoxError>> {
        self.signed.fetch_add(1, Ordering::SeqCst);
        let token = platform::auth::eks_token(
            &self.credentials,
            "ap-northeast-2",
            "kdeploy",
            SystemTime::now(),
        );
        Box::pin(async move { token.map_err(Into::into) })
    }
}

async fn list_namespaces(client: &kube::Client) -> Result<usize, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    Ok(namespaces.list(&ListParams::default()).await?.items.len())
}

fn is_unauthorized(result: Result<usize, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 401)
}

#[tokio::test]
async fn a_renewing_client_outlives_the_token_lifetime_and_a_fixed_token_does_not() {
    let sim = ClusterSim::start(SimConfig {
        aws_identities: vec![AwsIdentity {
            access_key_id: ACCESS_KEY.into(),
            username: "arn:aws:iam::000000000000:user/operator".into(),
            groups: vec!["system:masters".into()],
        }],
        eks_token_lifetime: LIFETIME,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let signer = Arc::new(Signer {
        credentials: Credentials::new(ACCESS_KEY, "secret", None, None, "test"),
        signed: AtomicUsize::new(0),
    });
    // X-Amz-Date has whole seconds, so a token may be up to a second older than it looks:
    // renewing after half a second keeps every token sent well inside the 2 s lifetime.
    let renewing = connect_renewing(
        &sim.api_url(),
        None,
        signer.clone(),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    let fixed = connect(&Access {
        endpoint: sim.api_url(),
        certificate_authority: None,
        token: signer.token().await.unwrap(),
    })
    .unwrap();

    assert!(list_namespaces(&renewing).await.unwrap() > 0);
    assert!(
        list_namespaces(&fixed).await.unwrap() > 0,
        "the fixed token works while it is young"
    );
    for round in 1..=3 {
        tokio::time::sleep(LIFETIME + Duration::from_millis(500)).await;
        assert!(
            list_namespaces(&renewing).await.is_ok(),
            "round {round}: the renewing client is still accepted"
        );
        assert!(
            is_unauthorized(list_namespaces(&fixed).await),
            "round {round}: the fixed token is refused with 401"
        );
    }
    // The first token, the fixed client's, and one per round.
    assert!(signer.signed.load(Ordering::SeqCst) >= 5);
}
