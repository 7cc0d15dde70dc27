//! The node's local image store: an OCI image layout directory (OCI image-spec `image-layout.md`:
//! `oci-layout`, `index.json`, blobs under `blobs/<alg>/<hex>`), read the way a container runtime
//! reads its content store: every blob is checked against its descriptor's digest and size before
//! use (`descriptor.md`, "Digests"), and a layer is checked against the config's `rootfs.diff_ids`
//! after decompression (`config.md`).

mod unpack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub(crate) use unpack::running_as_root;
pub use unpack::unpack_layer;

/// image-spec `media-types.md`.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `annotations.md`: the reference (or tag) an index entry is known by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {what} {digest}: {source}")]
    Json {
        what: &'static str,
        digest: String,
        source: serde_json::Error,
    },
    #[error("unsupported digest {0:?} (only sha256 with 64 lowercase hex digits)")]
    Digest(String),
    #[error("blob {expected} is corrupt: its content has digest {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {digest} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("unsupported media type {media_type:?} for {what}")]
    MediaType {
        what: &'static str,
        media_type: String,
    },
    #[error("the image has {layers} layers but {diff_ids} rootfs.diff_ids")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error(
        "layer {layer}: uncompressed content has digest {actual}, rootfs.diff_ids says {expected}"
    )]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("layer {layer}: {reason}")]
    Layer { layer: String, reason: String },
}

/// An OCI content descriptor (`descriptor.md`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `image-index.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// `manifest.md`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// `config.md`: the image configuration, the fields a runtime uses to start a container.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub config: ExecutionConfig,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionConfig {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An image found in the store: its manifest descriptor and the reference it is known by.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub manifest: Descriptor,
    /// `repository@sha256:...`, what the kubelet reports as the container's `imageID`.
    pub image_id: String,
}

/// A pulled image: manifest and config, both verified.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Manifest,
    pub config: ImageConfig,
}

/// An OCI image layout on disk, re-reading `index.json` when it changes.
pub struct ImageStore {
    dir: PathBuf,
    index: Mutex<Option<(SystemTime, u64, Index)>>,
}

/// `name` split into repository and tag: the tag is after the last `:` that follows the last `/`
/// (so `registry:5000/repo` has no tag).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => (&name[..colon], Some(&name[colon + 1..])),
        _ => (name, None),
    }
}

/// The hex part of a `sha256:<hex>` digest, refusing anything else (it becomes a path).
fn sha256_hex(digest: &str) -> Result<&str, ImageError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| ImageError::Digest(digest.to_string()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

impl ImageStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            index: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current `index.json`; None when the layout has none (yet) or it is unreadable.
    fn index(&self) -> Option<Index> {
        let path = self.dir.join("index.json");
        let meta = std::fs::metadata(&path).ok()?;
        let stamp = (meta.modified().ok()?, meta.len());
        let mut cached = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((modified, len, index)) = cached.as_ref()
            && (*modified, *len) == stamp
        {
            return Some(index.clone());
        }
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<Index>(&bytes) {
            Ok(index) => {
                *cached = Some((stamp.0, stamp.1, index.clone()));
                Some(index)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable OCI index");
                None
            }
        }
    }

    /// The index entry a pod's image reference names: `repo@sha256:D` is the entry of digest D
    /// whose ref.name has repository `repo`; `repo:tag` (or `repo`, meaning `repo:latest`) is
    /// the entry named so.
    pub fn resolve(&self, reference: &str) -> Option<Resolved> {
        let index = self.index()?;
        let found = match reference.split_once('@') {
            Some((named, digest)) => {
                let (repo, _tag) = split_tag(named);
                index.manifests.into_iter().find(|d| {
                    d.digest == digest
                        && d.annotations
                            .get(REF_NAME)
                            .is_some_and(|n| split_tag(n).0 == repo)
                })
            }
            None => {
                let wanted = match split_tag(reference) {
                    (_, Some(_)) => reference.to_string(),
                    (repo, None) => format!("{repo}:latest"),
                };
                index
                    .manifests
                    .into_iter()
                    .find(|d| d.annotations.get(REF_NAME) == Some(&wanted))
            }
        }?;
        let repo = split_tag(reference.split('@').next().unwrap_or(reference)).0;
        Some(Resolved {
            image_id: format!("{repo}@{}", found.digest),
            manifest: found,
        })
    }

    fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.dir.join("blobs/sha256").join(sha256_hex(digest)?))
    }

    /// A blob's bytes, refused unless their size and sha256 match the descriptor.
    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(&descriptor.digest)?;
        let bytes = std::fs::read(&path).map_err(|source| ImageError::Read {
            path: path.clone(),
            source,
        })?;
        let actual = sha256_digest(&bytes);
        if actual != descriptor.digest {
            return Err(ImageError::DigestMismatch {
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        if bytes.len() as u64 != descriptor.size {
            return Err(ImageError::SizeMismatch {
                digest: descriptor.digest.clone(),
                expected: descriptor.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// The manifest and config of a resolved image, verified.
    pub fn image(&self, resolved: &Resolved) -> Result<Image, ImageError> {
        let descriptor = &resolved.manifest;
        if descriptor.media_type != MANIFEST_MEDIA_TYPE {
            return Err(ImageError::MediaType {
                what: "the index entry",
                media_type: descriptor.media_type.clone(),
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&self.read_blob(descriptor)?).map_err(|source| {
                ImageError::Json {
                    what: "manifest",
                    digest: descriptor.digest.clone(),
                    source,
                }
            })?;
        if manifest.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(ImageError::MediaType {
                what: "the config",
                media_type: manifest.config.media_type.clone(),
            });
        }
        let config: ImageConfig = serde_json::from_slice(&self.read_blob(&manifest.config)?)
            .map_err(|source| ImageError::Json {
                what: "config",
                digest: manifest.config.digest.clone(),
                source,
            })?;
        if manifest.layers.len() != config.rootfs.diff_ids.len() {
            return Err(ImageError::LayerCount {
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        Ok(Image { manifest, config })
    }

    /// Unpacks the image's layers, in order, into `root` (which must exist).
    pub fn unpack(&self, image: &Image, root: &Path) -> Result<(), ImageError> {
        for (layer, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
            let gzip = match layer.media_type.as_str() {
                LAYER_TAR_GZIP => true,
                LAYER_TAR => false,
                other => {
                    return Err(ImageError::MediaType {
                        what: "a layer",
                        media_type: other.to_string(),
                    });
                }
            };
            let bytes = self.read_blob(layer)?;
            let actual = unpack_layer(&bytes, gzip, root).map_err(|reason| ImageError::Layer {
                layer: layer.digest.clone(),
                reason,
            })?;
            if &actual != diff_id {
                return Err(ImageError::DiffIdMismatch {
                    layer: layer.digest.clone(),
                    expected: diff_id.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn the_tag_is_after_the_last_colon_of_the_last_path_component() {
        assert_eq!(split_tag("repo:1.0"), ("repo", Some("1.0")));
        assert_eq!(
            split_tag("123.dkr.ecr.us-east-1.amazonaws.com/kdeploy/web:0.1.0"),
            (
                "123.dkr.ecr.us-east-1.amazonaws.com/kdeploy/web",
                Some("0.1.0")
            )
        );
        assert_eq!(
            split_tag("localhost:5000/web"),
            ("localhost:5000/web", None)
        );
        assert_eq!(split_tag("web"), ("web", None));
    }
}
