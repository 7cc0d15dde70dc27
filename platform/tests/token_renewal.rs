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

fn is_unauthorized_ref(result: &Result<usize, kube::Error>) -> bool {
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
    let fixed = |token: String| {
        connect(&Access {
            endpoint: sim.api_url(),
            certificate_authority: None,
            token,
        })
        .unwrap()
    };

    assert!(list_namespaces(&renewing).await.unwrap() > 0);
    // Each round holds a fixed token signed after the renewing client's current one and waits
    // until the simulator refuses it: then the renewing client's token from the start of the
    // round is at least as old, so being accepted proves it renewed. The lifetime is real time
    // (the simulator compares X-Amz-Date with its clock), so real time passes, but only until the
    // refusal is seen, polled, with a deadline.
    for round in 1..=3 {
        assert!(list_namespaces(&renewing).await.is_ok());
        let signed_at = tokio::time::Instant::now();
        let young = fixed(eks_token(SystemTime::now()));
        assert!(
            list_namespaces(&young).await.unwrap() > 0,
            "round {round}: the fixed token works while it is young"
        );
        let limit = LIFETIME + Duration::from_secs(3);
        loop {
            let seen = list_namespaces(&young).await;
            if is_unauthorized_ref(&seen) {
                break;
            }
            assert!(
                signed_at.elapsed() < limit,
                "round {round}: the fixed token was not refused with 401 within {limit:?} of \
                 its signing (lifetime {LIFETIME:?}); last answer {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            signed_at.elapsed() >= LIFETIME - Duration::from_secs(1),
            "round {round}: refused after {:?}, before its lifetime ({LIFETIME:?}, less the \
             second X-Amz-Date drops)",
            signed_at.elapsed()
        );
        assert!(
            list_namespaces(&renewing).await.is_ok(),
            "round {round}: the renewing client is still accepted"
        );
    }
    // The renewing client's first token and at least one renewal per round.
    let signed = signer.signed.load(Ordering::SeqCst);
    assert!(signed >= 4, "{signed} tokens signed by the renewing client");
}

/// A token signed at `at`, as the provisioner signs them, for the fixed clients.
fn eks_token(at: SystemTime) -> String {
    platform::auth::eks_token(
        &Credentials::new(ACCESS_KEY, "secret", None, None, "test"),
        "ap-northeast-2",
        "kdeploy",
        at,
    )
    .unwrap()
}
