//! The instance metadata service of one joined node (EC2 User Guide, "Use the Instance Metadata
//! Service to access instance metadata", "Retrieve security credentials from instance
//! metadata"): IMDSv2 session tokens, the instance's identity and placement, and the
//! credentials of its instance profile's role from STS AssumeRole on the emulator.
//!
//! Deviation: EC2 serves it at 169.254.169.254 on every instance; here each node has a listener
//! of its own on 127.0.0.1, which the simulator hands to the node's pods that could reach IMDS
//! as `AWS_EC2_METADATA_SERVICE_ENDPOINT` (the SDKs' override of the address).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_sts::primitives::DateTimeFormat;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::task::JoinHandle;

use super::Instance;
use super::join::InstanceRole;
use crate::meta;

/// IMDSv2: a token lives at most six hours.
const MAX_TOKEN_TTL_SECONDS: u64 = 21_600;
/// Fresh credentials are fetched this long before the served ones expire (EC2 rotates them
/// well before expiry; the SDKs refresh a few minutes before).
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// What a node's metadata service serves.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub instance: Instance,
    pub region: String,
    pub account_id: String,
    pub instance_profile_arn: String,
    pub role: InstanceRole,
    /// `MetadataOptions.HttpTokens` = required: IMDSv1 requests (no token) get 401.
    pub tokens_required: bool,
    pub user_data: Option<Vec<u8>>,
}

struct Server {
    metadata: Metadata,
    sts: aws_sdk_sts::Client,
    /// Session tokens and when they expire.
    tokens: Mutex<HashMap<String, Instant>>,
    /// The role's current credentials (the IMDS JSON document) and their expiry.
    credentials: tokio::sync::Mutex<Option<(serde_json::Value, SystemTime)>>,
}

/// A running metadata service; stops when dropped.
pub struct Imds {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Imds {
    pub async fn start(metadata: Metadata, sts: aws_sdk_sts::Client) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = Arc::new(Server {
            metadata,
            sts,
            tokens: Mutex::new(HashMap::new()),
            credentials: tokio::sync::Mutex::new(None),
        });
        let app = axum::Router::new().fallback(serve).with_state(server);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "instance metadata service stopped");
            }
        });
        Ok(Self { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        body.into(),
    )
        .into_response()
}

async fn serve(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let path = uri.path();
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return text(StatusCode::METHOD_NOT_ALLOWED, "");
        }
        // "Instance metadata access considerations": a token request carrying
        // X-Forwarded-For (one that went through a proxy) is refused.
        if header("x-forwarded-for").is_some() {
            return text(StatusCode::FORBIDDEN, "");
        }
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|t| (1..=MAX_TOKEN_TTL_SECONDS).contains(t));
        let Some(ttl) = ttl else {
            return text(StatusCode::BAD_REQUEST, "");
        };
        let token = format!("AQAEA{}==", meta::random_suffix(51));
        let mut tokens = server.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        tokens.retain(|_, expires| *expires > now);
        tokens.insert(token.clone(), now + Duration::from_secs(ttl));
        let mut response = text(StatusCode::OK, token);
        if let Ok(value) = ttl.to_string().parse() {
            response
                .headers_mut()
                .insert("x-aws-ec2-metadata-token-ttl-seconds", value);
        }
        return response;
    }
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    // IMDSv2: a token, when sent, must be valid; without one only IMDSv1 (HttpTokens optional).
    match header("x-aws-ec2-metadata-token") {
        Some(token) => {
            let tokens = server.tokens.lock().unwrap_or_else(|p| p.into_inner());
            if tokens.get(token).is_none_or(|e| *e <= Instant::now()) {
                return text(StatusCode::UNAUTHORIZED, "");
            }
        }
        None if server.metadata.tokens_required => return text(StatusCode::UNAUTHORIZED, ""),
        None => {}
    }
    metadata(&server, path).await
}

async fn metadata(server: &Server, path: &str) -> Response {
    let m = &server.metadata;
    let i = &m.instance;
    let role = &m.role.name;
    let found = |body: &str| text(StatusCode::OK, body.to_string());
    match path {
        "/latest/meta-data" | "/latest/meta-data/" => found(
            "ami-id\nhostname\niam/\ninstance-id\ninstance-type\nlocal-hostname\nlocal-ipv4\nplacement/",
        ),
        "/latest/meta-data/ami-id" => found(&i.image_id),
        "/latest/meta-data/instance-id" => found(&i.id),
        "/latest/meta-data/instance-type" => found(&i.instance_type),
        "/latest/meta-data/local-ipv4" => found(&i.private_ip),
        "/latest/meta-data/local-hostname" | "/latest/meta-data/hostname" => {
            found(&i.private_dns_name)
        }
        "/latest/meta-data/placement/" => found("availability-zone\nregion"),
        "/latest/meta-data/placement/availability-zone" => found(&i.zone),
        "/latest/meta-data/placement/region" => found(&m.region),
        "/latest/meta-data/iam/" => found("info\nsecurity-credentials/"),
        "/latest/meta-data/iam/info" => {
            let body = json!({
                "Code": "Success",
                "LastUpdated": rfc3339(SystemTime::now()),
                "InstanceProfileArn": m.instance_profile_arn,
                "InstanceProfileId": format!("AIPA{}", i.id.trim_start_matches("i-").to_ascii_uppercase()),
            });
            found(&body.to_string())
        }
        "/latest/meta-data/iam/security-credentials"
        | "/latest/meta-data/iam/security-credentials/" => found(role),
        p if p.strip_prefix("/latest/meta-data/iam/security-credentials/") == Some(role) => {
            match credentials(server).await {
                Ok(body) => found(&body.to_string()),
                Err(message) => {
                    tracing::warn!(instance = %i.id, %message, "no credentials for the instance role");
                    text(StatusCode::INTERNAL_SERVER_ERROR, message)
                }
            }
        }
        "/latest/dynamic/instance-identity/document" => {
            let body = json!({
                "accountId": m.account_id,
                "architecture": i.architecture,
                "availabilityZone": i.zone,
                "imageId": i.image_id,
                "instanceId": i.id,
                "instanceType": i.instance_type,
                "privateIp": i.private_ip,
                "region": m.region,
                "version": "2017-09-30",
            });
            found(&body.to_string())
        }
        "/latest/user-data" => match &m.user_data {
            Some(data) => (StatusCode::OK, Body::from(data.clone())).into_response(),
            None => text(StatusCode::NOT_FOUND, ""),
        },
        _ => text(StatusCode::NOT_FOUND, ""),
    }
}

/// The role's credentials as IMDS serves them, renewed before they expire.
async fn credentials(server: &Server) -> Result<serde_json::Value, String> {
    let mut cached = server.credentials.lock().await;
    if let Some((body, expires)) = cached.as_ref()
        && expires
            .duration_since(SystemTime::now())
            .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
    {
        return Ok(body.clone());
    }
    let out = server
        .sts
        .assume_role()
        .role_arn(&server.metadata.role.arn)
        .role_session_name(&server.metadata.instance.id)
        .send()
        .await
        .map_err(|e| {
            format!(
                "STS AssumeRole {}: {}",
                server.metadata.role.arn,
                aws_sdk_sts::error::DisplayErrorContext(&e)
            )
        })?;
    let creds = out
        .credentials()
        .ok_or("STS AssumeRole returned no credentials")?;
    let expiration = creds.expiration();
    let expires = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(expiration.secs()).unwrap_or_default());
    let body = json!({
        "Code": "Success",
        "LastUpdated": rfc3339(SystemTime::now()),
        "Type": "AWS-HMAC",
        "AccessKeyId": creds.access_key_id(),
        "SecretAccessKey": creds.secret_access_key(),
        "Token": creds.session_token(),
        "Expiration": expiration.fmt(DateTimeFormat::DateTime).unwrap_or_default(),
    });
    *cached = Some((body.clone(), expires));
    Ok(body)
}

fn rfc3339(at: SystemTime) -> String {
    meta::format_rfc3339(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}
