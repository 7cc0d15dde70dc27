//! A kube-rs client for the new cluster, built from what DescribeCluster returns: the endpoint,
//! the CA bundle and a bearer token (an EKS token on AWS, the simulator's token locally).

use base64::Engine;
use kube::config::AuthInfo;

use crate::error::{Error, Result};

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

/// A client for the cluster. EKS tokens last 15 minutes: make a new client for each long task.
pub fn connect(access: &Access) -> Result<kube::Client> {
    let url = access
        .endpoint
        .parse()
        .map_err(|_| Error::Endpoint(access.endpoint.clone()))?;
    let mut config = kube::Config::new(url);
    if let Some(ca) = &access.certificate_authority {
        config.root_cert = Some(certificates(ca)?);
    }
    config.auth_info = AuthInfo {
        token: Some(access.token.clone().into()),
        ..AuthInfo::default()
    };
    kube::Client::try_from(config).map_err(|source| Error::Client {
        endpoint: access.endpoint.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
