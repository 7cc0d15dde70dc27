//! ECR's rules for an image push that moto 5.2.5 does not enforce, checked by the front on the
//! requests it sees (moto already keeps parts in order, `InvalidLayerPartException`, and computes
//! layer digests from the uploaded bytes). Each rule names the page of the Amazon ECR API
//! reference (`https://docs.aws.amazon.com/AmazonECR/latest/APIReference/`) or the ECR user
//! guide that states it.

use std::collections::HashMap;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// ECR user guide, "Amazon ECR service quotas": minimum layer part size 5 MiB (every part but
/// the last; CompleteLayerUpload answers `LayerPartTooSmallException`).
pub const MIN_PART: usize = 5 * MIB;
/// API reference, UploadLayerPart: `layerPartBlob` "Maximum length of 20971520".
pub const MAX_PART: usize = 20 * MIB;
const MIB: usize = 1024 * 1024;

/// An answer ECR would give instead of doing the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The layer uploads in progress, as far as the parts moto accepted.
#[derive(Default)]
pub struct Uploads {
    by_id: HashMap<String, Upload>,
}

#[derive(Default)]
struct Upload {
    part_sizes: Vec<usize>,
    bytes: Sha256,
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_default()
}

fn text<'a>(doc: &'a serde_json::Value, field: &str) -> &'a str {
    doc.get(field).and_then(|v| v.as_str()).unwrap_or_default()
}

/// `sha256:<hex>` of `bytes`, as ECR writes digests.
pub fn digest(bytes: &[u8]) -> String {
    digest_of(Sha256::new_with_prefix(bytes))
}

fn digest_of(hasher: Sha256) -> String {
    let mut out = String::from("sha256:");
    for byte in hasher.finalize() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// One UploadLayerPart request: upload id, first and last byte, the part's bytes.
struct Part {
    upload_id: String,
    first: Option<u64>,
    last: Option<u64>,
    bytes: Vec<u8>,
}

fn part(request: &[u8]) -> Part {
    let doc = json(request);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text(&doc, "layerPartBlob"))
        .unwrap_or_default();
    Part {
        upload_id: text(&doc, "uploadId").to_owned(),
        first: doc.get("partFirstByte").and_then(|v| v.as_u64()),
        last: doc.get("partLastByte").and_then(|v| v.as_u64()),
        bytes,
    }
}

/// UploadLayerPart before it reaches moto. API reference, UploadLayerPart: `layerPartBlob` at
/// most 20971520 bytes; InvalidLayerPartException: "The layer part size is not valid" (here: a
/// part larger than that, or one whose `partFirstByte..=partLastByte` is not its length).
pub fn check_part(request: &[u8]) -> Option<Refusal> {
    let part = part(request);
    let len = part.bytes.len();
    if len > MAX_PART {
        return Some(Refusal::new(
            "InvalidLayerPartException",
            format!("layer part of {len} bytes is larger than {MAX_PART} bytes"),
        ));
    }
    let (Some(first), Some(last)) = (part.first, part.last) else {
        return None;
    };
    if last < first || (last - first + 1) as usize != len {
        return Some(Refusal::new(
            "InvalidLayerPartException",
            format!("layer part {first}-{last} does not match its {len} bytes"),
        ));
    }
    None
}

/// PutImage before it reaches moto, apart from the blob lookup: API reference, PutImage,
/// ImageDigestDoesNotMatchException ("The specified image digest does not match the digest that
/// Amazon ECR calculated for the image": the sha256 of the manifest bytes). Answers the blobs the
/// manifest references (its config and layers), which must all be in the repository
/// (PutImage, LayersNotFoundException).
pub fn check_manifest(request: &[u8]) -> Result<Vec<String>, Refusal> {
    let doc = json(request);
    let manifest = text(&doc, "imageManifest");
    let computed = digest(manifest.as_bytes());
    if let Some(given) = doc.get("imageDigest").and_then(|v| v.as_str())
        && given != computed
    {
        return Err(Refusal::new(
            "ImageDigestDoesNotMatchException",
            format!("the image digest {given} does not match the manifest's digest {computed}"),
        ));
    }
    let manifest = json(manifest.as_bytes());
    fn blob_digest(d: &serde_json::Value) -> Option<&str> {
        d.get("digest").and_then(|v| v.as_str())
    }
    Ok(manifest
        .get("config")
        .and_then(blob_digest)
        .into_iter()
        .chain(
            manifest
                .get("layers")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
                .filter_map(blob_digest),
        )
        .map(str::to_owned)
        .collect())
}

/// PutImage's refusal for referenced blobs the repository does not have.
pub fn layers_not_found(missing: &[String]) -> Refusal {
    Refusal::new(
        "LayersNotFoundException",
        format!(
            "Layers {} not found in the repository; upload them before PutImage",
            missing.join(", ")
        ),
    )
}

impl Uploads {
    /// Records a part moto accepted.
    pub fn part_accepted(&mut self, request: &[u8]) {
        let part = part(request);
        let upload = self.by_id.entry(part.upload_id).or_default();
        upload.part_sizes.push(part.bytes.len());
        upload.bytes.update(&part.bytes);
    }

    /// CompleteLayerUpload before it reaches moto, for uploads whose parts the front saw.
    /// API reference, CompleteLayerUpload: EmptyUploadException ("does not contain any layer
    /// parts"), LayerPartTooSmallException ("Layer parts must be at least 5 MiB in size", all but
    /// the last), InvalidLayerException ("The layer digest calculation performed by Amazon ECR
    /// upon receipt of the image layer does not match the digest specified").
    pub fn check_complete(&self, request: &[u8]) -> Option<Refusal> {
        let doc = json(request);
        let upload_id = text(&doc, "uploadId");
        let upload = self.by_id.get(upload_id)?;
        let Some((_, all_but_last)) = upload.part_sizes.split_last() else {
            return Some(Refusal::new(
                "EmptyUploadException",
                format!("upload {upload_id} contains no layer parts"),
            ));
        };
        if let Some(small) = all_but_last.iter().find(|size| **size < MIN_PART) {
            return Some(Refusal::new(
                "LayerPartTooSmallException",
                format!("a layer part of {small} bytes is smaller than 5 MiB and not the last"),
            ));
        }
        let computed = digest_of(upload.bytes.clone());
        let given: Vec<&str> = doc
            .get("layerDigests")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str())
            .collect();
        if given.iter().any(|d| *d != computed) {
            return Some(Refusal::new(
                "InvalidLayerException",
                format!(
                    "the uploaded bytes have digest {computed}, not {}",
                    given.join(", ")
                ),
            ));
        }
        None
    }

    /// Forgets an upload moto completed.
    pub fn completed(&mut self, request: &[u8]) {
        self.by_id.remove(text(&json(request), "uploadId"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part_request(upload: &str, first: usize, bytes: &[u8]) -> Vec<u8> {
        serde_json::json!({
            "repositoryName": "s/web",
            "uploadId": upload,
            "partFirstByte": first,
            "partLastByte": first + bytes.len() - 1,
            "layerPartBlob": base64::engine::general_purpose::STANDARD.encode(bytes),
        })
        .to_string()
        .into_bytes()
    }

    fn complete_request(upload: &str, digest: &str) -> Vec<u8> {
        serde_json::json!({"repositoryName": "s/web", "uploadId": upload, "layerDigests": [digest]})
            .to_string()
            .into_bytes()
    }

    /// Uploads `sizes` as parts of one layer; answers the layer's bytes.
    fn uploaded(uploads: &mut Uploads, id: &str, sizes: &[usize]) -> Vec<u8> {
        let mut layer = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let bytes = vec![i as u8; *size];
            let request = part_request(id, layer.len(), &bytes);
            assert_eq!(check_part(&request), None);
            uploads.part_accepted(&request);
            layer.extend_from_slice(&bytes);
        }
        layer
    }

    #[test]
    fn complete_layer_upload_accepts_parts_of_5_mib_and_a_smaller_last_one() {
        let mut uploads = Uploads::default();
        let layer = uploaded(&mut uploads, "u1", &[MIN_PART, MIN_PART, 17]);
        assert_eq!(
            uploads.check_complete(&complete_request("u1", &digest(&layer))),
            None
        );
        uploads.completed(&complete_request("u1", ""));
        assert!(uploads.by_id.is_empty());
    }

    /// API reference CompleteLayerUpload, LayerPartTooSmallException; ECR service quotas,
    /// "Minimum layer part size 5 MiB".
    #[test]
    fn complete_layer_upload_refuses_a_part_under_5_mib_that_is_not_the_last() {
        let mut uploads = Uploads::default();
        let layer = uploaded(&mut uploads, "u1", &[MIN_PART - 1, 10]);
        let refusal = uploads
            .check_complete(&complete_request("u1", &digest(&layer)))
            .unwrap();
        assert_eq!(refusal.code, "LayerPartTooSmallException");
    }

    /// API reference CompleteLayerUpload, InvalidLayerException.
    #[test]
    fn complete_layer_upload_refuses_a_digest_other_than_the_bytes_uploaded() {
        let mut uploads = Uploads::default();
        uploaded(&mut uploads, "u1", &[100]);
        let refusal = uploads
            .check_complete(&complete_request("u1", &digest(b"something else")))
            .unwrap();
        assert_eq!(refusal.code, "InvalidLayerException");
    }

    /// API reference CompleteLayerUpload, EmptyUploadException.
    #[test]
    fn complete_layer_upload_of_no_parts_is_an_empty_upload() {
        let mut uploads = Uploads::default();
        uploads.by_id.insert("u1".into(), Upload::default());
        let refusal = uploads
            .check_complete(&complete_request("u1", &digest(b"")))
            .unwrap();
        assert_eq!(refusal.code, "EmptyUploadException");
        // An upload the front never saw is left to moto.
        assert_eq!(
            Uploads::default().check_complete(&complete_request("u2", "x")),
            None
        );
    }

    /// API reference UploadLayerPart: `layerPartBlob` at most 20971520 bytes;
    /// InvalidLayerPartException, "The layer part size is not valid".
    #[test]
    fn upload_layer_part_refuses_a_part_over_20_mib_or_of_another_length_than_its_range() {
        let big = part_request("u1", 0, &vec![0; MAX_PART + 1]);
        assert_eq!(
            check_part(&big).map(|r| r.code),
            Some("InvalidLayerPartException")
        );
        let mut request = json(&part_request("u1", 0, &[1, 2, 3]));
        request["partLastByte"] = 5.into();
        assert_eq!(
            check_part(request.to_string().as_bytes()).map(|r| r.code),
            Some("InvalidLayerPartException")
        );
    }

    fn put_image(manifest: &str, digest: &str) -> Vec<u8> {
        serde_json::json!({
            "repositoryName": "s/web",
            "imageManifest": manifest,
            "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
            "imageDigest": digest,
            "imageTag": "0.1.0",
        })
        .to_string()
        .into_bytes()
    }

    const MANIFEST: &str = r#"{"schemaVersion":2,"config":{"digest":"sha256:c"},"layers":[{"digest":"sha256:l1"},{"digest":"sha256:l2"}]}"#;

    /// API reference PutImage, ImageDigestDoesNotMatchException.
    #[test]
    fn put_image_refuses_a_digest_other_than_the_manifests_sha256() {
        let refusal = check_manifest(&put_image(MANIFEST, &digest(b"other"))).unwrap_err();
        assert_eq!(refusal.code, "ImageDigestDoesNotMatchException");
    }

    /// API reference PutImage, LayersNotFoundException: every blob the manifest references.
    #[test]
    fn put_image_names_every_blob_the_manifest_references() {
        let referenced = check_manifest(&put_image(MANIFEST, &digest(MANIFEST.as_bytes())));
        assert_eq!(
            referenced,
            Ok(vec![
                "sha256:c".into(),
                "sha256:l1".into(),
                "sha256:l2".into()
            ])
        );
        assert_eq!(
            layers_not_found(&["sha256:l2".into()]).code,
            "LayersNotFoundException"
        );
    }
}
