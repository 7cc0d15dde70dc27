//! A kube-rs client for the new cluster, built from what DescribeCluster returns: the endpoint,
//! the CA bundle and a bearer token (an EKS token on AWS, renewed before it expires; the
//! simulator's fixed token locally).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::future::BoxFuture;
use http::header::{AUTHORIZATION, HeaderValue};
use kube::config::AuthInfo;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower::buffer::BufferLayer;
use tower::filter::{AsyncFilterLayer, AsyncPredicate};

use crate::error::{BoxError, Error, Result};

/// How long a client uses an EKS token before making the next: EKS accepts one for 15 minutes
/// after its X-Amz-Date (kubernetes-sigs/aws-iam-authenticator pkg/token/token.go
/// `presignedURLExpiration`), and that date is this machine's clock, which SigV4 lets differ from
/// AWS's by up to 5 minutes.
pub const TOKEN_RENEW_AFTER: Duration = Duration::from_secs(10 * 60);

/// How to reach a cluster's API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `https://...eks.amazonaws.com`, or the simulator's `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Base64 PEM bundle as DescribeCluster returns it; `None` over plain HTTP.
    pub certificate_authority: Option<String>,
    pub token: String,
}

/// Turns a decoding failure into the error that says which part of the bundle is wrong.
fn invalid<E: std::error::Error + Send + Sync + 'static>(
    problem: &'static str,
) -> impl Fn(E) -> Error {
    move |e| Error::CertificateAuthority {
        problem,
        source: Some(Box::new(e)),
    }
}

/// DER certificates from a base64-encoded PEM bundle.
pub fn certificates(bundle_base64: &str) -> Result<Vec<Vec<u8>>> {
    let engine = base64::engine::general_purpose::STANDARD;
    let pem = engine
        .decode(bundle_base64.trim())
        .map_err(invalid("the bundle is not base64"))?;
    let pem = String::from_utf8(pem).map_err(invalid("the bundle is not text"))?;
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        match (line, &mut body) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b64)) => {
                certs.push(
                    engine
                        .decode(&*b64)
                        .map_err(invalid("a certificate is not base64"))?,
                );
                body = None;
            }
            (data, Some(b64)) => b64.push_str(data),
            _ => {}
        }
    }
    if certs.is_empty() {
        return Err(Error::CertificateAuthority {
            problem: "no CERTIFICATE block",
            source: None,
        });
    }
    Ok(certs)
}

/// The client configuration for `endpoint`, without credentials.
fn config(endpoint: &str, certificate_authority: Option<&str>) -> Result<kube::Config> {
    let url = endpoint
        .parse()
        .map_err(|_| Error::Endpoint(endpoint.to_owned()))?;
    let mut config = kube::Config::new(url);
    if let Some(ca) = certificate_authority {
        config.root_cert = Some(certificates(ca)?);
    }
    Ok(config)
}

/// A client for the cluster that sends `access.token` on every request: for a token that does not
/// expire (the simulator's), or for one short task. Long tasks on EKS use [`connect_renewing`].
pub fn connect(access: &Access) -> Result<kube::Client> {
    let mut config = config(&access.endpoint, access.certificate_authority.as_deref())?;
    config.auth_info = AuthInfo {
        token: Some(access.token.clone().into()),
        ..AuthInfo::default()
    };
    kube::Client::try_from(config).map_err(|source| Error::Client {
        endpoint: access.endpoint.clone(),
        source,
    })
}

/// Makes bearer tokens for a cluster whose tokens expire (EKS: a presigned STS URL, signed anew
/// each time with the current AWS credentials).
pub trait TokenSource: Send + Sync + 'static {
    fn token(&self) -> BoxFuture<'static, Result<String, BoxError>>;
}

/// A client for the cluster at `endpoint` that asks `tokens` for a new token once the current one
/// is `renew_after` old, before the request that would otherwise carry it, as kube's own
/// refreshable exec credentials do. The first token is made here, so that a failure to make one
/// shows now rather than on the first request.
pub async fn connect_renewing(
    endpoint: &str,
    certificate_authority: Option<&str>,
    tokens: Arc<dyn TokenSource>,
    renew_after: Duration,
) -> Result<kube::Client> {
    let config = config(endpoint, certificate_authority)?;
    let token = RenewingToken {
        tokens,
        renew_after,
        current: Arc::new(Mutex::new(None)),
    };
    token.header().await?;
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|source| Error::Client {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    // The filter needs a service it can clone; kube's stack is boxed, the buffer makes it shareable.
    Ok(builder
        .with_layer(&BufferLayer::new(1024))
        .with_layer(&AsyncFilterLayer::new(token))
        .build())
}

/// The token a client currently sends and when it was asked for.
#[derive(Clone)]
struct RenewingToken {
    tokens: Arc<dyn TokenSource>,
    renew_after: Duration,
    current: Arc<Mutex<Option<(HeaderValue, Instant)>>>,
}

impl RenewingToken {
    /// The `Authorization` value for the next request; concurrent requests wait for one renewal.
    async fn header(&self) -> Result<HeaderValue> {
        let mut current = self.current.lock().await;
        if let Some((header, since)) = current.as_ref()
            && since.elapsed() < self.renew_after
        {
            return Ok(header.clone());
        }
        // Timed from before the request for it: the token's own clock starts when it is signed.
        let since = Instant::now();
        let token = self.tokens.token().await.map_err(Error::Token)?;
        let mut header =
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|e| Error::Token(e.into()))?;
        header.set_sensitive(true);
        *current = Some((header.clone(), since));
        Ok(header)
    }
}

impl<B: Send + 'static> AsyncPredicate<http::Request<B>> for RenewingToken {
    type Future = BoxFuture<'static, Result<http::Request<B>, BoxError>>;
    type Request = http::Request<B>;

    fn check(&mut self, mut request: http::Request<B>) -> Self::Future {
        let token = self.clone();
        Box::pin(async move {
            let header = token.header().await?;
            request.headers_mut().insert(AUTHORIZATION, header);
            Ok(request)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Numbered tokens: `token-1`, `token-2`, ...
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl TokenSource for Counter {
        fn token(&self) -> BoxFuture<'static, Result<String, BoxError>> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move { Ok(format!("token-{n}")) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_reused_until_it_is_renew_after_old() {
        let counter = Arc::new(Counter::default());
        let token = RenewingToken {
            tokens: counter.clone(),
            renew_after: TOKEN_RENEW_AFTER,
            current: Arc::new(Mutex::new(None)),
        };
        assert_eq!(token.header().await.unwrap(), "Bearer token-1");
        tokio::time::advance(TOKEN_RENEW_AFTER - Duration::from_secs(1)).await;
        assert_eq!(token.header().await.unwrap(), "Bearer token-1");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(token.header().await.unwrap(), "Bearer token-2");
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert!(token.header().await.unwrap().is_sensitive());
    }

    #[test]
    fn pem_bundles_become_der_certificates() {
        let der_a = b"certificate-a-bytes";
        let der_b = b"certificate-b-bytes";
        let engine = base64::engine::general_purpose::STANDARD;
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            engine.encode(der_a),
            engine.encode(der_b)
        );
        let certs = certificates(&engine.encode(pem)).unwrap();
        assert_eq!(certs, vec![der_a.to_vec(), der_b.to_vec()]);
        assert!(certificates(&engine.encode("not a pem")).is_err());
    }
}
