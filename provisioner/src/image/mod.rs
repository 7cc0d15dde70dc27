//! The deploy site's OCI image, built in memory from a static binary, the way `ko` and Jib build
//! images without a daemon: one layer holding the binary, an image config and an image manifest,
//! all of them byte-for-byte reproducible, so the same binary always has the same digest and a
//! re-run of `up` finds its image already in the registry.
//!
//! The formats are those of the OCI image specification (v1.1):
//! - `manifest.md`: the image manifest (schemaVersion 2, the config and layer descriptors);
//! - `config.md`: the image configuration (platform, execution parameters, `rootfs.diff_ids`);
//! - `descriptor.md`: media type, digest and size of every referenced blob;
//! - `layer.md`: a layer is a tar archive, here gzip-compressed, whose `DiffID` is the digest of
//!   the uncompressed tar;
//! - `image-layout.md`: the directory form written and read by [`layout`].

mod layer;
pub mod layout;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use layer::{BINARY_MODE, BINARY_OWNER};

/// `manifest.md`: the media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// `config.md`: the media type of an OCI image configuration.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// `layer.md`: a gzip-compressed tar layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `image-index.md`: the media type of `index.json` in an image layout.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Where the site's binary lives in its image: at the root, the only file there is.
pub const SITE_BINARY_PATH: &str = "/kdeploy-web";
/// The unprivileged user and group the site runs as (distroless's `nonroot`), matching the
/// `runAsUser` of the site's Deployment.
pub const SITE_USER: &str = "65532:65532";

/// A content digest, `sha256:<64 lowercase hex digits>` (`descriptor.md`, "Digests").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The SHA-256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut text = String::with_capacity(7 + 64);
        text.push_str("sha256:");
        for byte in Sha256::digest(bytes) {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Self(text)
    }

    /// Parses `sha256:<hex>`; the only algorithm this project writes or accepts.
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let valid = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(ImageError::InvalidDigest(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part: the blob's file name under `blobs/sha256/` in an image layout.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = ImageError;
    fn try_from(text: String) -> Result<Self, ImageError> {
        Self::parse(&text)
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.0
    }
}

/// A blob of an image (config or layer) with its media type and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            media_type: media_type.into(),
            digest: Digest::of(&data),
            data,
        }
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// How a manifest or an index refers to this blob.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size(),
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// A built image: the manifest's exact bytes (its digest is the image's identity, so they are
/// never re-serialised), the config and the layers, in the manifest's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// Every blob the manifest references: the config first, then the layers.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// The manifest as UTF-8 text, as ECR's PutImage takes it.
    pub fn manifest_text(&self) -> Result<&str, ImageError> {
        std::str::from_utf8(&self.manifest).map_err(|_| ImageError::ManifestNotUtf8)
    }

    /// The image's configuration, parsed from its config blob.
    pub fn configuration(&self) -> Result<ImageConfig, ImageError> {
        serde_json::from_slice(&self.config.data).map_err(|source| ImageError::Json {
            what: "image config",
            source,
        })
    }

    /// Checks that every blob's bytes match its digest and the manifest lists exactly these
    /// blobs: what a registry checks on push, done before anything is sent.
    pub fn verify(&self) -> Result<(), ImageError> {
        check(&self.manifest_digest, &self.manifest)?;
        let manifest: Manifest =
            serde_json::from_slice(&self.manifest).map_err(|source| ImageError::Json {
                what: "image manifest",
                source,
            })?;
        let listed: Vec<&Digest> = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| &d.digest)
            .collect();
        let present: Vec<&Digest> = self.blobs().map(|b| &b.digest).collect();
        if listed != present {
            return Err(ImageError::ManifestMismatch);
        }
        for blob in self.blobs() {
            check(&blob.digest, &blob.data)?;
        }
        Ok(())
    }
}

/// An error unless `data` has `digest`.
fn check(digest: &Digest, data: &[u8]) -> Result<(), ImageError> {
    let actual = Digest::of(data);
    if actual == *digest {
        Ok(())
    } else {
        Err(ImageError::DigestMismatch {
            expected: digest.clone(),
            actual,
        })
    }
}

/// How to package one static binary as an image; [`Recipe::site`] is the deploy site's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// Absolute path of the binary in the image; also the entrypoint.
    pub binary_path: &'static str,
    /// `uid:gid` the container runs as.
    pub user: &'static str,
    /// The TCP port the binary listens on (documentation for tools; Kubernetes ignores it).
    pub port: i32,
    /// The default arguments (`Cmd`).
    pub command: Vec<String>,
}

impl Recipe {
    /// The deploy site: `/kdeploy-web serve` as 65532, listening on the site's port.
    pub fn site() -> Self {
        Self {
            binary_path: SITE_BINARY_PATH,
            user: SITE_USER,
            port: platform::names::SITE_PORT,
            command: vec!["serve".to_owned()],
        }
    }

    /// Builds the image of `binary`: a pure function of the recipe and the bytes.
    pub fn build(&self, binary: &[u8]) -> Result<Image, ImageError> {
        let layer = layer::binary_layer(self.binary_path, binary)?;
        let config = ImageConfig {
            architecture: "amd64".to_owned(),
            os: "linux".to_owned(),
            config: ExecutionConfig {
                user: Some(self.user.to_owned()),
                exposed_ports: BTreeMap::from([(format!("{}/tcp", self.port), Empty {})]),
                // The image has no directories to search; `/` lets the binary be named alone.
                env: vec!["PATH=/".to_owned()],
                entrypoint: vec![self.binary_path.to_owned()],
                cmd: self.command.clone(),
                working_dir: Some("/".to_owned()),
            },
            rootfs: RootFs {
                kind: "layers".to_owned(),
                diff_ids: vec![layer.diff_id.clone()],
            },
            // No `created` anywhere: a timestamp would change the digest on every build.
            history: vec![History {
                created_by: Some(format!("kdeploy provisioner: {}", self.binary_path)),
            }],
        };
        let config = Blob::new(CONFIG_MEDIA_TYPE, to_json(&config, "image config")?);
        let layer = Blob::new(LAYER_MEDIA_TYPE, layer.compressed);
        let manifest = Manifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE.to_owned(),
            config: config.descriptor(),
            layers: vec![layer.descriptor()],
        };
        let manifest = to_json(&manifest, "image manifest")?;
        Ok(Image {
            manifest_digest: Digest::of(&manifest),
            manifest,
            config,
            layers: vec![layer],
        })
    }
}

fn to_json(value: &impl Serialize, what: &'static str) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|source| ImageError::Json { what, source })
}

/// `descriptor.md`: a reference to a blob by media type, digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Only in an index (`image-index.md`): the platform the manifest is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// `image-index.md`: a manifest's platform in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

/// `manifest.md`: the image manifest. Field order is the serialisation order, so it is fixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// `config.md`: the image configuration (the parts this project writes and reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub config: ExecutionConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// `config.md`, `config`: how a container of the image runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// The empty JSON object that `ExposedPorts` maps each port to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `config.md`, `rootfs`: the layers' `DiffID`s, digests of the uncompressed tars, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

/// `config.md`, `history`: one entry per layer, without the optional timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Why an image could not be built, written or read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("writing the image layer: {0}")]
    Layer(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{0}` is not a sha256 digest")]
    InvalidDigest(String),
    #[error("blob {expected} has the digest {actual}: its bytes are not the ones referenced")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("the manifest does not list exactly the image's config and layers")]
    ManifestMismatch,
    #[error("the manifest is not UTF-8 text")]
    ManifestNotUtf8,
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not an OCI image layout ({reason})", dir.display())]
    NotALayout {
        dir: std::path::PathBuf,
        reason: &'static str,
    },
    #[error("{}: no image `{reference}` in this layout", dir.display())]
    UnknownReference {
        dir: std::path::PathBuf,
        reference: String,
    },
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn binary(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn uncompressed(layer: &Blob) -> Vec<u8> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(layer.data.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        tar
    }

    #[test]
    fn the_same_binary_gives_the_same_digests() {
        let bytes = binary(7, 300_000);
        let first = Recipe::site().build(&bytes).unwrap();
        let second = Recipe::site().build(&bytes.clone()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.manifest_digest, second.manifest_digest);
    }

    #[test]
    fn a_different_binary_gives_different_digests() {
        let first = Recipe::site().build(&binary(7, 4096)).unwrap();
        let second = Recipe::site().build(&binary(8, 4096)).unwrap();
        assert_ne!(first.manifest_digest, second.manifest_digest);
        assert_ne!(first.layers[0].digest, second.layers[0].digest);
        assert_ne!(first.config.digest, second.config.digest);
    }

    #[test]
    fn the_manifest_digest_is_the_sha256_of_its_bytes() {
        let image = Recipe::site().build(&binary(1, 1000)).unwrap();
        assert_eq!(image.manifest_digest, Digest::of(&image.manifest));
        image.verify().unwrap();
        let manifest: Manifest = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest.schema_version, 2);
        assert_eq!(manifest.media_type, MANIFEST_MEDIA_TYPE);
        assert_eq!(manifest.config, image.config.descriptor());
        assert_eq!(manifest.config.media_type, CONFIG_MEDIA_TYPE);
        assert_eq!(manifest.layers, vec![image.layers[0].descriptor()]);
        assert_eq!(manifest.layers[0].media_type, LAYER_MEDIA_TYPE);
        assert_eq!(manifest.layers[0].size, image.layers[0].data.len() as u64);
    }

    #[test]
    fn diff_ids_are_the_digests_of_the_uncompressed_layers() {
        let image = Recipe::site().build(&binary(2, 50_000)).unwrap();
        let config = image.configuration().unwrap();
        assert_eq!(config.rootfs.kind, "layers");
        assert_eq!(
            config.rootfs.diff_ids,
            vec![Digest::of(&uncompressed(&image.layers[0]))]
        );
        assert_ne!(config.rootfs.diff_ids[0], image.layers[0].digest);
    }

    #[test]
    fn the_config_runs_the_binary_as_the_unprivileged_user() {
        let image = Recipe::site().build(&binary(3, 10)).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&image.config.data).unwrap();
        assert_eq!(json["architecture"], "amd64");
        assert_eq!(json["os"], "linux");
        assert_eq!(json["config"]["User"], "65532:65532");
        assert_eq!(
            json["config"]["ExposedPorts"],
            serde_json::json!({ format!("{}/tcp", platform::names::SITE_PORT): {} })
        );
        assert_eq!(
            json["config"]["Entrypoint"],
            serde_json::json!(["/kdeploy-web"])
        );
        assert_eq!(json["config"]["Cmd"], serde_json::json!(["serve"]));
        assert_eq!(json["config"]["Env"], serde_json::json!(["PATH=/"]));
        assert!(json.get("created").is_none());
        assert!(json["history"][0].get("created").is_none());
    }

    #[test]
    fn the_layer_holds_only_the_binary_with_fixed_metadata() {
        let bytes = binary(4, 70_000);
        let image = Recipe::site().build(&bytes).unwrap();
        let tar = uncompressed(&image.layers[0]);
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        let header = entry.header().clone();
        assert_eq!(header.path().unwrap().to_str(), Some("kdeploy-web"));
        assert_eq!(header.mode().unwrap(), BINARY_MODE);
        assert_eq!(header.uid().unwrap(), u64::from(BINARY_OWNER));
        assert_eq!(header.gid().unwrap(), u64::from(BINARY_OWNER));
        assert_eq!(header.mtime().unwrap(), 0);
        assert_eq!(header.entry_type(), tar::EntryType::Regular);
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, bytes);
        drop(entry);
        assert!(entries.next().is_none());
    }

    #[test]
    fn the_gzip_header_carries_no_name_or_time() {
        let image = Recipe::site().build(&binary(5, 10)).unwrap();
        let gz = &image.layers[0].data;
        assert_eq!(
            &gz[..4],
            &[0x1f, 0x8b, 8, 0],
            "no FNAME, FCOMMENT or FEXTRA"
        );
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "MTIME is zero");
    }

    #[test]
    fn digests_parse_only_in_their_canonical_form() {
        let digest = Digest::of(b"");
        assert_eq!(
            digest.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(digest.as_str()).unwrap(), digest);
        for bad in ["sha256:E3B0", "sha512:00", "e3b0c442", ""] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verify_catches_a_changed_blob() {
        let mut image = Recipe::site().build(&binary(6, 100)).unwrap();
        image.config.data.push(b' ');
        assert!(matches!(
            image.verify(),
            Err(ImageError::DigestMismatch { .. })
        ));
    }
}
