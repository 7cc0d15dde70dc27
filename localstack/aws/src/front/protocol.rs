//! Just enough of the AWS wire protocols to know which call a request is, and to answer with an
//! error exactly as that service would (EC2's XML, the query services' XML, EKS's REST JSON,
//! SSM's and ECR's AWS JSON 1.1), so that the SDK parses it into the right error code.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;

/// One AWS call as the front sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The SigV4 signing name: `ec2`, `iam`, `eks`, `autoscaling`, `elasticloadbalancing`, `ssm`,
    /// `sts`, `ecr`.
    pub service: String,
    pub operation: String,
    /// Form parameters of query-protocol calls (`RoleName`, `GroupId`, ...); top-level string
    /// fields of JSON calls (`repositoryName`, `uploadId`, ...).
    pub params: HashMap<String, String>,
    /// The EKS cluster a REST call is about, from its path.
    pub cluster: Option<String>,
}

impl Call {
    /// Read-only calls by AWS's naming convention; the rest change something.
    pub fn is_mutating(&self) -> bool {
        is_mutating(&self.operation)
    }
}

/// Reads are `Describe*`, `List*`, `Get*` and `BatchGet*`, plus ECR's
/// `BatchCheckLayerAvailability` (which only reports whether blobs exist); everything else,
/// `PutImage` and `UploadLayerPart` included, changes state.
pub fn is_mutating(operation: &str) -> bool {
    const READS: [&str; 4] = ["Describe", "List", "Get", "BatchGet"];
    operation != "BatchCheckLayerAvailability" && !READS.iter().any(|p| operation.starts_with(p))
}

/// Works out service and operation from the signature, the target header, the form body or
/// (for EKS) the REST path.
pub fn identify(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Call {
    let service = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(3))
        .unwrap_or("unknown")
        .to_owned();
    let mut call = Call {
        service,
        operation: "Unknown".to_owned(),
        params: HashMap::new(),
        cluster: None,
    };
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        call.operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        // UploadLayerPart carries megabytes of base64; nothing the front needs is in it.
        if call.operation != "UploadLayerPart" {
            call.params = json_strings(body);
        }
        return call;
    }
    if call.service == "eks" {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        call.cluster = segments.get(1).map(|s| (*s).to_owned());
        call.operation = match (method, segments.as_slice()) {
            (&Method::POST, ["clusters"]) => "CreateCluster",
            (&Method::GET, ["clusters"]) => "ListClusters",
            (&Method::GET, ["clusters", _]) => "DescribeCluster",
            (&Method::DELETE, ["clusters", _]) => "DeleteCluster",
            (&Method::POST, ["clusters", _, "update-config"]) => "UpdateClusterConfig",
            (&Method::GET, ["clusters", _, "access-entries", ..]) => "ListAccessEntries",
            (&Method::POST, ["clusters", _, "access-entries"]) => "CreateAccessEntry",
            (&Method::GET, _) => "GetOther",
            _ => "ChangeOther",
        }
        .to_owned();
        if call.operation == "CreateCluster" {
            call.params = json_strings(body);
        }
        return call;
    }
    call.params = form(body);
    if let Some(action) = call.params.get("Action") {
        call.operation = action.clone();
    }
    call
}

/// Top-level string fields of a JSON body (EKS CreateCluster's `name`, `roleArn`; ECR's
/// `repositoryName`).
fn json_strings(body: &[u8]) -> HashMap<String, String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect(),
        _ => HashMap::new(),
    }
}

/// `application/x-www-form-urlencoded`, as the query protocols send it.
pub fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// Kinds of error the front injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    ServerError,
}

/// The code AWS uses for a fault, per service.
pub fn fault_code(service: &str, fault: Fault) -> (&'static str, StatusCode) {
    match (service, fault) {
        ("ec2", Fault::Throttle) => ("RequestLimitExceeded", StatusCode::SERVICE_UNAVAILABLE),
        ("eks", Fault::Throttle) => ("ThrottlingException", StatusCode::TOO_MANY_REQUESTS),
        ("ssm", Fault::Throttle) => ("ThrottlingException", StatusCode::BAD_REQUEST),
        // ECR API reference, Common Errors: ThrottlingException, HTTP 400; the SDK retries it
        // (aws-runtime `retries/classifiers.rs`, THROTTLING_ERRORS).
        ("ecr", Fault::Throttle) => ("ThrottlingException", StatusCode::BAD_REQUEST),
        (_, Fault::Throttle) => ("Throttling", StatusCode::BAD_REQUEST),
        ("ec2", Fault::ServerError) => ("InternalError", StatusCode::INTERNAL_SERVER_ERROR),
        ("eks", Fault::ServerError) => ("ServerException", StatusCode::INTERNAL_SERVER_ERROR),
        ("ssm", Fault::ServerError) => ("InternalServerError", StatusCode::INTERNAL_SERVER_ERROR),
        // ECR API reference: ServerException, "usually caused by a server-side issue", HTTP 500.
        ("ecr", Fault::ServerError) => ("ServerException", StatusCode::INTERNAL_SERVER_ERROR),
        (_, Fault::ServerError) => ("ServiceUnavailable", StatusCode::SERVICE_UNAVAILABLE),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An error response in the service's own format.
pub fn error_response(
    service: &str,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let request_id = "00000000-0000-4000-8000-front0000000";
    let (content_type, body) = match service {
        "ec2" => (
            "text/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
                xml_escape(code),
                xml_escape(message)
            ),
        ),
        "eks" => (
            "application/json",
            serde_json::json!({ "message": message }).to_string(),
        ),
        // AWS JSON 1.1: the error code in `__type` (smithy awsJson1_1 protocol, "Operation error
        // serialization").
        "ssm" | "ecr" => (
            "application/x-amz-json-1.1",
            serde_json::json!({ "__type": code, "message": message }).to_string(),
        ),
        _ => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                if status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                },
                xml_escape(code),
                xml_escape(message)
            ),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    if service == "eks"
        && let Ok(value) = http::HeaderValue::from_str(code)
    {
        headers.insert("x-amzn-errortype", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(service: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("AWS4-HMAC-SHA256 Credential=test/20261125/ap-northeast-2/{service}/aws4_request, SignedHeaders=host, Signature=x")
                .parse()
                .unwrap(),
        );
        h
    }

    #[test]
    fn query_calls_are_named_by_their_action() {
        let call = identify(
            &Method::POST,
            "/",
            &signed("iam"),
            b"Action=CreateRole&RoleName=my-role&Version=2010-05-08",
        );
        assert_eq!(call.service, "iam");
        assert_eq!(call.operation, "CreateRole");
        assert_eq!(call.params["RoleName"], "my-role");
        assert!(call.is_mutating());
        let call = identify(
            &Method::POST,
            "/",
            &signed("ec2"),
            b"Action=DescribeVpcs&Filter.1.Name=tag%3Akdeploy.io%2Fstack",
        );
        assert!(!call.is_mutating());
        assert_eq!(call.params["Filter.1.Name"], "tag:kdeploy.io/stack");
    }

    /// Classic ELB (API version 2012-06-01) and ELBv2 (2015-12-01) share the signing name
    /// `elasticloadbalancing` and the endpoint (Elastic Load Balancing endpoints and quotas, AWS
    /// General Reference); both speak the query protocol, so a Classic call is named by its
    /// Action and judged mutating or not like any other.
    #[test]
    fn classic_elb_calls_are_elastic_load_balancing_query_calls() {
        let call =
            |body: &[u8]| identify(&Method::POST, "/", &signed("elasticloadbalancing"), body);
        let delete = call(b"Action=DeleteLoadBalancer&LoadBalancerName=a1b2&Version=2012-06-01");
        assert_eq!(
            (delete.service.as_str(), delete.operation.as_str()),
            ("elasticloadbalancing", "DeleteLoadBalancer")
        );
        assert_eq!(delete.params["LoadBalancerName"], "a1b2");
        assert!(delete.is_mutating());
        for read in ["DescribeLoadBalancers", "DescribeTags"] {
            let body = format!("Action={read}&Version=2012-06-01");
            assert!(!call(body.as_bytes()).is_mutating(), "{read}");
        }
        for change in [
            "CreateLoadBalancer",
            "AddTags",
            "ApplySecurityGroupsToLoadBalancer",
        ] {
            let body = format!("Action={change}&Version=2012-06-01");
            assert!(call(body.as_bytes()).is_mutating(), "{change}");
        }
        let (code, _) = fault_code("elasticloadbalancing", Fault::Throttle);
        assert_eq!(code, "Throttling");
    }

    #[test]
    fn eks_rest_calls_are_named_by_method_and_path() {
        let create = identify(
            &Method::POST,
            "/clusters",
            &signed("eks"),
            br#"{"name":"c1","roleArn":"arn:aws:iam::1:role/r"}"#,
        );
        assert_eq!(create.operation, "CreateCluster");
        assert_eq!(create.params["roleArn"], "arn:aws:iam::1:role/r");
        let describe = identify(&Method::GET, "/clusters/c1", &signed("eks"), b"");
        assert_eq!(
            (describe.operation.as_str(), describe.cluster.as_deref()),
            ("DescribeCluster", Some("c1"))
        );
        assert_eq!(
            identify(&Method::DELETE, "/clusters/c1", &signed("eks"), b"").operation,
            "DeleteCluster"
        );
    }

    #[test]
    fn json_calls_are_named_by_their_target() {
        let mut h = signed("ssm");
        h.insert("x-amz-target", "AmazonSSM.GetParameter".parse().unwrap());
        assert_eq!(
            identify(&Method::POST, "/", &h, b"{}").operation,
            "GetParameter"
        );
    }

    fn ecr(operation: &str, body: &[u8]) -> Call {
        let mut h = signed("ecr");
        h.insert(
            "x-amz-target",
            format!("AmazonEC2ContainerRegistry_V20150921.{operation}")
                .parse()
                .unwrap(),
        );
        identify(&Method::POST, "/", &h, body)
    }

    #[test]
    fn ecr_calls_are_named_by_their_target_with_their_repository() {
        let call = ecr("InitiateLayerUpload", br#"{"repositoryName":"s/web"}"#);
        assert_eq!(
            (call.service.as_str(), call.operation.as_str()),
            ("ecr", "InitiateLayerUpload")
        );
        assert_eq!(call.params["repositoryName"], "s/web");
        let part = ecr(
            "UploadLayerPart",
            br#"{"repositoryName":"s/web","layerPartBlob":"AAAA"}"#,
        );
        assert!(part.params.is_empty(), "the blob is not copied");
    }

    /// ECR API reference, Actions: the image push calls change the registry; the availability
    /// check, BatchGetImage and Describe/List/Get only read it.
    #[test]
    fn ecr_push_calls_change_state_and_checks_only_read() {
        for read in [
            "BatchCheckLayerAvailability",
            "BatchGetImage",
            "DescribeRepositories",
            "DescribeImages",
            "ListTagsForResource",
            "GetAuthorizationToken",
        ] {
            assert!(!ecr(read, b"{}").is_mutating(), "{read}");
        }
        for change in [
            "CreateRepository",
            "TagResource",
            "InitiateLayerUpload",
            "UploadLayerPart",
            "CompleteLayerUpload",
            "PutImage",
            "BatchDeleteImage",
            "DeleteRepository",
        ] {
            assert!(ecr(change, b"{}").is_mutating(), "{change}");
        }
    }

    /// ECR API reference, Common Errors: ThrottlingException is a 400 with the code in the
    /// AWS JSON 1.1 `__type`.
    #[test]
    fn ecr_throttling_is_a_json_throttling_exception() {
        let (code, status) = fault_code("ecr", Fault::Throttle);
        assert_eq!(
            (code, status),
            ("ThrottlingException", StatusCode::BAD_REQUEST)
        );
        let r = error_response("ecr", status, code, "Rate exceeded");
        assert_eq!(
            r.headers()[http::header::CONTENT_TYPE],
            "application/x-amz-json-1.1"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&r.into_body().into_inner_for_test()).unwrap();
        assert_eq!(body["__type"], "ThrottlingException");
        assert_eq!(fault_code("ecr", Fault::ServerError).0, "ServerException");
    }

    #[test]
    fn errors_use_each_services_format() {
        let r = error_response(
            "ec2",
            StatusCode::BAD_REQUEST,
            "DependencyViolation",
            "has <dependent> object",
        );
        let body = String::from_utf8(r.into_body().into_inner_for_test()).unwrap();
        assert!(
            body.contains("<Code>DependencyViolation</Code>") && body.contains("&lt;dependent&gt;")
        );
        let r = error_response(
            "eks",
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            "m",
        );
        assert_eq!(r.headers()["x-amzn-errortype"], "InvalidParameterException");
    }

    trait IntoInner {
        fn into_inner_for_test(self) -> Vec<u8>;
    }

    impl IntoInner for Full<Bytes> {
        fn into_inner_for_test(self) -> Vec<u8> {
            use http_body_util::BodyExt;
            futures_lite_block_on(self.collect())
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default()
        }
    }

    fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
