//! What moto does not check: the part sizes and byte ranges sent, that the manifest's digest is
//! the sha256 of the bytes sent, and that every blob a manifest references is in the registry
//! before PutImage names it. A fake ECR behind the SDK's HTTP client records each call in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use rand::RngCore;
use serde_json::{Value, json};

use super::*;
use crate::image::{Manifest, Recipe};

#[test]
fn the_advised_part_size_is_clamped_to_ecrs_limits() {
    assert_eq!(part_size(None), DEFAULT_PART);
    assert_eq!(part_size(Some(0)), DEFAULT_PART);
    assert_eq!(part_size(Some(-1)), DEFAULT_PART);
    assert_eq!(part_size(Some(1024)), MIN_PART);
    assert_eq!(part_size(Some(8 * MIB as i64)), 8 * MIB);
    assert_eq!(part_size(Some(100 * MIB as i64)), MAX_PART);
}

#[test]
fn parts_cover_the_blob_in_order_without_gaps() {
    for (len, advised) in [
        (1, None),
        (MIN_PART, Some(1)),
        (MIN_PART + 1, Some(1)),
        (25 * MIB + 3, Some(10 * MIB as i64)),
        (41 * MIB, Some(1 << 40)),
    ] {
        let size = part_size(advised);
        let parts = part_ranges(len, advised);
        assert_eq!(parts.len() as u64, len.div_ceil(size), "{len}");
        let mut next = 0;
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(
                *part.start(),
                next,
                "{len}: part {i} starts where the last ended"
            );
            let part_len = part.end() - part.start() + 1;
            assert!(part_len <= MAX_PART);
            if i + 1 < parts.len() {
                assert!(part_len >= MIN_PART, "{len}: only the last part is short");
            }
            next = part.end() + 1;
        }
        assert_eq!(next, len, "the last part ends at the last byte");
    }
}

#[test]
fn byte_ranges_are_inclusive() {
    assert_eq!(
        part_ranges(12 * MIB, Some(5 * MIB as i64)),
        vec![
            0..=5 * MIB - 1,
            5 * MIB..=10 * MIB - 1,
            10 * MIB..=12 * MIB - 1
        ]
    );
    assert_eq!(part_ranges(3, None), vec![0..=2]);
    assert!(part_ranges(0, None).is_empty());
}

#[test]
fn the_repository_is_named_after_the_stack() {
    let config = crate::config::StackConfig::default_for("demo").unwrap();
    assert_eq!(site_repository(&Stack::new(&config)), "demo/web");
}

/// An in-memory ECR for one repository, speaking the JSON protocol the SDK sends.
#[derive(Debug, Clone, Default)]
struct FakeEcr(Arc<Mutex<Registry>>);

#[derive(Debug, Default)]
struct Registry {
    /// The part size InitiateLayerUpload advises.
    advised: Option<i64>,
    /// Answer CompleteLayerUpload with a digest other than the bytes' (a corrupted upload).
    corrupt: bool,
    /// Operations in the order they arrived.
    calls: Vec<String>,
    /// The length of every UploadLayerPart, in order.
    parts: Vec<u64>,
    uploads: HashMap<String, Vec<u8>>,
    blobs: BTreeMap<String, u64>,
    /// tag → manifest digest.
    tags: BTreeMap<String, String>,
    /// Protocol rules the client broke.
    violations: Vec<String>,
}

impl FakeEcr {
    fn advising(part_size: i64) -> Self {
        let fake = Self::default();
        fake.registry().advised = Some(part_size);
        fake
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0.lock().unwrap()
    }

    fn client(&self) -> aws_sdk_ecr::Client {
        let config = aws_sdk_ecr::Config::builder()
            .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ecr::config::Credentials::new(
                "test", "test", None, None, "fake",
            ))
            .http_client(self.clone())
            .build();
        aws_sdk_ecr::Client::from_conf(config)
    }

    fn answer(&self, operation: &str, input: &Value) -> Result<Value, (&'static str, String)> {
        let mut r = self.registry();
        r.calls.push(operation.to_owned());
        let text = |field: &str| input[field].as_str().unwrap_or_default().to_owned();
        match operation {
            "DescribeImages" => {
                let tag = input["imageIds"][0]["imageTag"]
                    .as_str()
                    .unwrap_or_default();
                match r.tags.get(tag) {
                    Some(digest) => Ok(json!({
                        "imageDetails": [{"imageDigest": digest, "imageTags": [tag]}]
                    })),
                    None => Err(("ImageNotFoundException", format!("no image tagged {tag}"))),
                }
            }
            "BatchCheckLayerAvailability" => {
                let (mut layers, mut failures) = (Vec::new(), Vec::new());
                for digest in input["layerDigests"].as_array().into_iter().flatten() {
                    let digest = digest.as_str().unwrap_or_default();
                    match r.blobs.get(digest) {
                        Some(size) => layers.push(json!({
                            "layerDigest": digest, "layerAvailability": "AVAILABLE",
                            "layerSize": size
                        })),
                        None => failures.push(json!({
                            "layerDigest": digest, "failureCode": "MissingLayerDigest",
                            "failureReason": "not found"
                        })),
                    }
                }
                Ok(json!({"layers": layers, "failures": failures}))
            }
            "InitiateLayerUpload" => {
                let id = format!("upload-{}", r.calls.len());
                r.uploads.insert(id.clone(), Vec::new());
                Ok(json!({"uploadId": id, "partSize": r.advised}))
            }
            "UploadLayerPart" => {
                let id = text("uploadId");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text("layerPartBlob"))
                    .unwrap_or_default();
                let (first, last) = (&input["partFirstByte"], &input["partLastByte"]);
                let (first, last) = (first.as_u64().unwrap_or(0), last.as_u64().unwrap_or(0));
                let received = r.uploads.get(&id).map_or(0, |u| u.len() as u64);
                if first != received || last + 1 - first != bytes.len() as u64 {
                    let rule = format!(
                        "part {first}..={last} of {} bytes after {received}",
                        bytes.len()
                    );
                    r.violations.push(rule);
                }
                r.parts.push(bytes.len() as u64);
                r.uploads.entry(id).or_default().extend(bytes);
                Ok(json!({"lastByteReceived": last}))
            }
            "CompleteLayerUpload" => {
                let data = r.uploads.remove(&text("uploadId")).unwrap_or_default();
                let mut digest = Digest::of(&data).to_string();
                if r.corrupt {
                    digest = Digest::of(b"something else").to_string();
                }
                r.blobs.insert(digest.clone(), data.len() as u64);
                Ok(json!({"layerDigest": digest}))
            }
            "PutImage" => {
                let manifest = text("imageManifest");
                let sent = Digest::of(manifest.as_bytes()).to_string();
                if sent != text("imageDigest") {
                    r.violations
                        .push("imageDigest is not the sha256 of the manifest sent".to_owned());
                }
                let parsed: Manifest = serde_json::from_str(&manifest).unwrap();
                for blob in std::iter::once(&parsed.config).chain(&parsed.layers) {
                    if !r.blobs.contains_key(blob.digest.as_str()) {
                        r.violations.push(format!(
                            "PutImage names {} before it was uploaded",
                            blob.digest
                        ));
                    }
                }
                r.tags.insert(text("imageTag"), sent.clone());
                Ok(
                    json!({"image": {"imageId": {"imageDigest": sent, "imageTag": text("imageTag")}}}),
                )
            }
            other => Err(("UnsupportedOperation", other.to_owned())),
        }
    }
}

impl HttpConnector for FakeEcr {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        let input: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        let (status, body) = match self.answer(&operation, &input) {
            Ok(output) => (200, output),
            Err((code, message)) => (400, json!({"__type": code, "message": message})),
        };
        let mut response =
            HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body.to_string()));
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for FakeEcr {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn repository() -> Repository {
    Repository {
        name: "demo/web".to_owned(),
        arn: "arn:aws:ecr:us-east-1:123456789012:repository/demo/web".to_owned(),
        uri: "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo/web".to_owned(),
    }
}

/// The image of `len` random bytes: its layer is about as large.
fn image_of(len: usize) -> Image {
    let mut binary = vec![0; len];
    rand::rng().fill_bytes(&mut binary);
    Recipe::site().build(&binary).unwrap()
}

#[tokio::test]
async fn a_push_sends_clamped_parts_and_the_manifest_after_its_blobs() {
    // ECR advises 1 MiB: parts are still 5 MiB, except the last.
    let fake = FakeEcr::advising(MIB as i64);
    let client = fake.client();
    let image = image_of(6 * MIB as usize);
    let pushed = Ecr(&client)
        .push(&repository(), &image, "0.1.0")
        .await
        .unwrap();

    assert_eq!(
        pushed.reference,
        format!("{}@{}", repository().uri, image.manifest_digest)
    );
    let r = fake.registry();
    assert_eq!(r.violations, Vec::<String>::new());
    let layer = image.layers[0].size();
    assert_eq!(r.parts, vec![image.config.size(), 5 * MIB, layer - 5 * MIB]);
    assert_eq!(
        r.calls,
        [
            "DescribeImages",
            "BatchCheckLayerAvailability",
            "InitiateLayerUpload",
            "UploadLayerPart",
            "CompleteLayerUpload",
            "InitiateLayerUpload",
            "UploadLayerPart",
            "UploadLayerPart",
            "CompleteLayerUpload",
            "PutImage",
        ]
    );
    assert_eq!(
        r.tags.get("0.1.0"),
        Some(&image.manifest_digest.to_string())
    );
}

#[tokio::test]
async fn an_advised_part_size_within_limits_is_used_and_a_second_push_only_looks() {
    let fake = FakeEcr::advising(6 * MIB as i64);
    let client = fake.client();
    let image = image_of(7 * MIB as usize);
    Ecr(&client)
        .push(&repository(), &image, "0.1.0")
        .await
        .unwrap();
    {
        let r = fake.registry();
        assert_eq!(r.violations, Vec::<String>::new());
        let layer = image.layers[0].size();
        assert_eq!(r.parts[1..], [6 * MIB, layer - 6 * MIB]);
    }

    fake.registry().calls.clear();
    let again = Ecr(&client)
        .push(&repository(), &image, "0.1.0")
        .await
        .unwrap();
    assert!(!again.put && again.uploaded.is_empty());
    assert_eq!(fake.registry().calls, ["DescribeImages"]);
}

#[tokio::test]
async fn a_blob_ecr_digests_differently_stops_the_push_before_put_image() {
    let fake = FakeEcr::default();
    fake.registry().corrupt = true;
    let client = fake.client();
    let image = image_of(1000);
    let err = Ecr(&client)
        .push(&repository(), &image, "0.1.0")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EcrError::DigestMismatch { local, .. } if *local == image.config.digest),
        "{err:?}"
    );
    assert!(!fake.registry().calls.iter().any(|c| c == "PutImage"));
}
