//! EKS authentication without the AWS CLI: a bearer token that is a presigned STS
//! `GetCallerIdentity` URL naming the cluster in the signed `x-k8s-aws-id` header, as
//! `aws eks get-token` and aws-iam-authenticator make it.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;

use crate::error::{Error, Result};

/// Tokens start with this; the rest is the base64url (unpadded) presigned URL.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL is valid. EKS accepts a token for 15 minutes from its signing time;
/// the URL itself says 60 s, as `aws eks get-token` does.
pub const PRESIGN_EXPIRY: Duration = Duration::from_secs(60);
/// How long a client may keep using a token before making a new one.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// A bearer token for the EKS cluster `cluster` in `region`, signed with `credentials` at `now`.
pub fn eks_token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String> {
    // The regional endpoint: the global one is not enabled in every partition and is slower.
    let host = format!("sts.{region}.amazonaws.com");
    let base = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRY);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| Error::Signing(e.into()))?
        .into();
    let headers = [("host", host.as_str()), (CLUSTER_HEADER, cluster)];
    let request = SignableRequest::new(
        "GET",
        base.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| Error::Signing(e.into()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| Error::Signing(e.into()))?
        .into_parts();
    let mut url = base;
    for (name, value) in instructions.params() {
        url.push('&');
        url.push_str(name);
        url.push('=');
        url.push_str(&encode_query_value(value));
    }
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    ))
}

/// RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 requires.
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The `ExecCredential` that `kubectl` expects from a credential plugin.
pub fn exec_credential(token: &str, expires: SystemTime) -> serde_json::Value {
    let expiration = humantime_rfc3339(expires);
    serde_json::json!({
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "spec": {},
        "status": { "expirationTimestamp": expiration, "token": token }
    })
}

/// `2026-11-25T20:30:00Z` without pulling in a date crate.
fn humantime_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn decode(token: &str) -> (String, HashMap<String, String>) {
        let encoded = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
        assert!(!encoded.contains('='), "unpadded");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(encoded)
                .unwrap(),
        )
        .unwrap();
        let (head, query) = url.split_once('?').unwrap();
        let params = query
            .split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.replace("%2F", "/").replace("%3B", ";"))
            })
            .collect();
        (head.to_owned(), params)
    }

    fn token_at(now: SystemTime) -> String {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        eks_token(&creds, "ap-northeast-2", "kdeploy", now).unwrap()
    }

    #[test]
    fn token_is_a_presigned_regional_get_caller_identity_url() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let (head, q) = decode(&token_at(now));
        assert_eq!(head, "https://sts.ap-northeast-2.amazonaws.com/");
        assert_eq!(q["Action"], "GetCallerIdentity");
        assert_eq!(q["Version"], "2011-06-15");
        assert_eq!(q["X-Amz-Algorithm"], "AWS4-HMAC-SHA256");
        assert_eq!(q["X-Amz-Expires"], "60");
        assert_eq!(q["X-Amz-SignedHeaders"], "host;x-k8s-aws-id");
        let credential: Vec<&str> = q["X-Amz-Credential"].split('/').collect();
        assert_eq!(
            credential,
            [
                "AKIDEXAMPLE",
                "20261118",
                "ap-northeast-2",
                "sts",
                "aws4_request"
            ]
        );
        assert_eq!(q["X-Amz-Date"], "20261118T110640Z");
        let signature = &q["X-Amz-Signature"];
        assert_eq!(signature.len(), 64);
        assert!(signature.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_signature_binds_the_cluster_name_and_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let a = eks_token(&creds, "ap-northeast-2", "one", now).unwrap();
        let b = eks_token(&creds, "ap-northeast-2", "two", now).unwrap();
        let c = eks_token(
            &creds,
            "ap-northeast-2",
            "one",
            now + Duration::from_secs(1),
        )
        .unwrap();
        assert_ne!(
            decode(&a).1["X-Amz-Signature"],
            decode(&b).1["X-Amz-Signature"]
        );
        assert_ne!(
            decode(&a).1["X-Amz-Signature"],
            decode(&c).1["X-Amz-Signature"]
        );
        assert_eq!(
            a,
            eks_token(&creds, "ap-northeast-2", "one", now).unwrap(),
            "deterministic"
        );
    }

    /// The same request presigned by botocore (what `aws eks get-token` runs), with these
    /// credentials at this time, has exactly this signature.
    #[test]
    fn signature_matches_botocores_presigned_url() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let (_, q) = decode(&token_at(now));
        assert_eq!(
            q["X-Amz-Signature"],
            "0422991794a3235fbf2a9a123419bcf92ae89d0f3fb4b3222a6bf4b20df6d566"
        );
    }

    #[test]
    fn session_tokens_are_carried() {
        let creds = Credentials::new(
            "ASIA1",
            "secret",
            Some("session/token+x".into()),
            None,
            "test",
        );
        let token = eks_token(&creds, "ap-northeast-2", "c", SystemTime::now()).unwrap();
        let (_, q) = decode(&token);
        assert!(q.contains_key("X-Amz-Security-Token"));
    }

    #[test]
    fn exec_credential_has_the_kubectl_shape() {
        let cred = exec_credential(
            "k8s-aws-v1.x",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        );
        assert_eq!(cred["kind"], "ExecCredential");
        assert_eq!(cred["apiVersion"], "client.authentication.k8s.io/v1beta1");
        assert_eq!(cred["status"]["token"], "k8s-aws-v1.x");
        assert_eq!(
            cred["status"]["expirationTimestamp"],
            "2026-11-18T11:06:40Z"
        );
    }
}
