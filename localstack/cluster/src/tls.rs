//! The API server over HTTPS, as kube-apiserver serves it (its insecure port has been inert since
//! Kubernetes 1.20 and its `--insecure-port` flag was removed in 1.24, CHANGELOG-1.24): a cluster
//! CA and a serving certificate signed by it, the CA handed to clients (EKS DescribeCluster
//! `certificateAuthority.data`, a kubeconfig's `certificate-authority-data`, a pod's `ca.crt`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make the cluster's certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the serving certificate or key is not usable PEM: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("the serving certificate and key are refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The API server's TLS identity: the serving certificate chain and its key, and the CA that
/// clients trust for it (all PEM).
#[derive(Clone)]
pub struct TlsIdentity {
    pub certificate_chain_pem: String,
    pub private_key_pem: String,
    pub certificate_authority_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificate_authority_pem", &self.certificate_authority_pem)
            .finish_non_exhaustive()
    }
}

/// The serving certificate's names: 127.0.0.1 and `localhost`, where the simulator listens, and
/// the in-cluster names kubeadm gives the API server's certificate
/// (kubernetes/kubernetes cmd/kubeadm/app/util/pkiutil/pki_helpers.go `GetAPIServerAltNames`).
const SERVING_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

impl TlsIdentity {
    /// A fresh cluster CA (CN `kubernetes`, as kubeadm's `ca.crt` and EKS's cluster CA are
    /// named) and a serving certificate it signs for [`SERVING_NAMES`] and 127.0.0.1, with the
    /// server-auth usage Go's and rustls's verifiers check.
    pub fn generate() -> Result<Self, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name.push(DnType::CommonName, "kubernetes");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_pem = ca.self_signed(&ca_key)?.pem();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(SERVING_NAMES.map(str::to_string).to_vec())?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let certificate = serving.signed_by(&key, &issuer)?;
        Ok(Self {
            certificate_chain_pem: certificate.pem(),
            private_key_pem: key.serialize_pem(),
            certificate_authority_pem: ca_pem,
        })
    }

    /// The server side of TLS with the workspace's one crypto provider (ring). HTTP/1.1 only by
    /// ALPN, the one protocol the simulator's server speaks.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(self.certificate_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.private_key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// How long a client has to finish its handshake; a connection that has not is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener whose connections have completed a TLS handshake. Handshakes run concurrently
/// (a slow or silent client holds no one else up); a failed one is logged and dropped, so a
/// plain-HTTP request gets no answer, as from any TLS server.
pub(crate) struct TlsListener {
    local: SocketAddr,
    established: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let (sender, established) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // As axum's own TCP listener does: EMFILE and the like pass.
                        tracing::warn!(error = %e, "API server accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self {
            local,
            established,
            accepting,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.established.recv().await {
            Some(connection) => connection,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
