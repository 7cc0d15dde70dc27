//! A kube-rs client for the new cluster, built from what DescribeCluster returns: the endpoint,
//! the CA bundle and a bearer token (an EKS token on AWS, the simulator's token locally).

use base64::Engine;
use kube::config::AuthInfo;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the cluster endpoint {0:?} is not a URL")]
    Endpoint(String),
    #[error("the cluster's certificate authority is not base64 PEM: {0}")]
    Certificate(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// How to reach a cluster's API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `https://...eks.amazonaws.com`, or the simulator's `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Base64 PEM bundle as DescribeCluster returns it; `None` over plain HTTP.
    pub certificate_authority: Option<String>,
    pub token: String,
}

/// DER certificates from a base64-encoded PEM bundle.
pub fn certificates(bundle_base64: &str) -> Result<Vec<Vec<u8>>, ConnectError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let pem = engine
        .decode(bundle_base64.trim())
        .map_err(|e| ConnectError::Certificate(e.to_string()))?;
    let pem = String::from_utf8(pem).map_err(|e| ConnectError::Certificate(e.to_string()))?;
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        match (line, &mut body) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b64)) => {
                certs.push(
                    engine
                        .decode(&*b64)
                        .map_err(|e| ConnectError::Certificate(e.to_string()))?,
                );
                body = None;
            }
            (data, Some(b64)) => b64.push_str(data),
            _ => {}
        }
    }
    if certs.is_empty() {
        return Err(ConnectError::Certificate("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// A client for the cluster. EKS tokens last 15 minutes: make a new client for each long task.
pub fn connect(access: &Access) -> Result<kube::Client, ConnectError> {
    let url = access
        .endpoint
        .parse()
        .map_err(|_| ConnectError::Endpoint(access.endpoint.clone()))?;
    let mut config = kube::Config::new(url);
    if let Some(ca) = &access.certificate_authority {
        config.root_cert = Some(certificates(ca)?);
    }
    config.auth_info = AuthInfo {
        token: Some(access.token.clone().into()),
        ..AuthInfo::default()
    };
    Ok(kube::Client::try_from(config)?)
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
