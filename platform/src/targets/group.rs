//! The three ELBv2 calls of the targets controller, on its one target group, and the client
//! they go through.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use base64::Engine;

use super::{Registered, Settings, Target};
use crate::error::{Error, Result};

/// An ELBv2 client for `settings`' region and endpoint: credentials from `credentials` when
/// given (tests, the local emulator), otherwise from the SDK's default chain (on a node, the node
/// role through IMDS). HTTPS trusts the bundled Mozilla roots, since the site's image has no CA
/// store; the SDK retries throttling and 5xx itself.
pub async fn elbv2_client(settings: &Settings, credentials: Option<Credentials>) -> Result<Client> {
    let tls = TlsContext::builder()
        .with_trust_store(bundled_roots())
        .build()
        .map_err(|e| Error::TargetGroup {
            operation: "client set-up",
            target_group: settings.target_group_arn.clone(),
            code: "tls".to_owned(),
            message: e.to_string(),
        })?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls)
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .http_client(http)
        .retry_config(RetryConfig::standard());
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    Ok(Client::new(&loader.load().await))
}

/// `webpki-root-certs`' certificates, as the PEM the SDK's trust store takes.
fn bundled_roots() -> TrustStore {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .fold(TrustStore::empty(), |store, cert| {
            store.with_pem_certificate(pem(cert.as_ref()).into_bytes())
        })
}

/// One DER certificate as PEM (RFC 7468: base64 in lines of 64 characters).
fn pem(der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The stack's target group, as the controller reads and changes it.
#[derive(Debug, Clone)]
pub struct TargetGroup {
    client: Client,
    arn: String,
}

impl TargetGroup {
    pub fn new(client: Client, arn: impl Into<String>) -> Self {
        Self {
            client,
            arn: arn.into(),
        }
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        operation: &'static str,
        err: aws_sdk_elasticloadbalancingv2::error::SdkError<E>,
    ) -> Error {
        Error::TargetGroup {
            operation,
            target_group: self.arn.clone(),
            code: err.code().unwrap_or("unknown").to_owned(),
            message: err
                .message()
                .map_or_else(|| DisplayErrorContext(&err).to_string(), str::to_owned),
        }
    }

    /// Every target with its state (draining ones included).
    pub async fn registered(&self) -> Result<Vec<Registered>> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(&self.arn)
            .send()
            .await
            .map_err(|e| self.error("DescribeTargetHealth", e))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let target = d.target()?;
                let state = d
                    .target_health()
                    .and_then(|h| h.state())
                    .map_or("unknown", |s| s.as_str());
                Some(Registered::new(target.id()?, target.port()?, state))
            })
            .collect())
    }

    pub async fn register(&self, targets: &[Target]) -> Result<()> {
        self.client
            .register_targets()
            .target_group_arn(&self.arn)
            .set_targets(Some(descriptions(targets)))
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error("RegisterTargets", e))
    }

    /// The target group's deregistration delay then drains each one's connections.
    pub async fn deregister(&self, targets: &[Target]) -> Result<()> {
        self.client
            .deregister_targets()
            .target_group_arn(&self.arn)
            .set_targets(Some(descriptions(targets)))
            .send()
            .await
            .map(drop)
            .map_err(|e| self.error("DeregisterTargets", e))
    }
}

fn descriptions(targets: &[Target]) -> Vec<TargetDescription> {
    targets
        .iter()
        .map(|t| TargetDescription::builder().id(&t.ip).port(t.port).build())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_roots_become_pem_certificates() {
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        assert!(roots.len() > 100, "Mozilla's roots: {}", roots.len());
        for der in roots.iter().take(5) {
            let pem = pem(der.as_ref());
            let lines: Vec<&str> = pem.lines().collect();
            assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
            assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
            let body = &lines[1..lines.len() - 1];
            assert!(body.iter().all(|l| l.len() <= 64));
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(body.concat())
                .unwrap();
            assert_eq!(decoded, der.as_ref());
        }
    }
}
