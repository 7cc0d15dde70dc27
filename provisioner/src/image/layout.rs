//! An OCI image layout directory (`image-layout.md`): `oci-layout`, `index.json` and
//! `blobs/sha256/<hex>`. The build writes the site's image here too, so that the local cluster
//! simulator can run the very image that was pushed; skopeo, crane and containerd read the same
//! format.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Blob, Descriptor, Digest, INDEX_MEDIA_TYPE, Image, ImageError, Manifest, Platform};

/// `annotations.md`: the annotation naming a manifest in an index ("Name of the reference").
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// `image-layout.md`, "oci-layout file": the layout version this code writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";

/// `image-layout.md`: the `oci-layout` marker file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayoutMarker {
    image_layout_version: String,
}

/// `image-index.md`: `index.json`, the layout's entry point.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// Writes `image` into the layout at `dir` (created if needed) under `ref_name`, replacing an
/// earlier image of that name and keeping the others. Blobs are written whole and renamed into
/// place, so a reader never sees half a blob; two writers of one `index.json` at once may lose
/// one of their entries (the last writer wins).
pub fn write(dir: &Path, ref_name: &str, image: &Image) -> Result<(), ImageError> {
    image.verify()?;
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io(&blobs))?;
    for (digest, data) in image
        .blobs()
        .map(|b| (&b.digest, b.data.as_slice()))
        .chain([(&image.manifest_digest, image.manifest.as_slice())])
    {
        let path = blobs.join(digest.hex());
        if fs::read(&path).is_ok_and(|existing| Digest::of(&existing) == *digest) {
            continue;
        }
        replace(dir, &path, data)?;
    }
    let marker = LayoutMarker {
        image_layout_version: LAYOUT_VERSION.to_owned(),
    };
    replace(dir, &dir.join("oci-layout"), &json(&marker, "oci-layout")?)?;

    let mut index = match read_index(dir) {
        Ok(index) => index,
        Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Index {
                schema_version: 2,
                media_type: INDEX_MEDIA_TYPE.to_owned(),
                manifests: Vec::new(),
                annotations: BTreeMap::new(),
            }
        }
        Err(e) => return Err(e),
    };
    index
        .manifests
        .retain(|m| m.annotations.get(REF_NAME).map(String::as_str) != Some(ref_name));
    let config = image.configuration()?;
    index.manifests.push(Descriptor {
        media_type: super::MANIFEST_MEDIA_TYPE.to_owned(),
        digest: image.manifest_digest.clone(),
        size: image.manifest.len() as u64,
        annotations: BTreeMap::from([(REF_NAME.to_owned(), ref_name.to_owned())]),
        platform: Some(Platform {
            architecture: config.architecture,
            os: config.os,
        }),
    });
    replace(dir, &dir.join("index.json"), &json(&index, "index.json")?)
}

/// Reads the image that `reference` names in the layout at `dir`: a `ref.name` of `index.json`
/// (`demo/web:0.1.0`), or a manifest digest, bare (`sha256:…`) or at the end of a reference
/// (`…/demo/web@sha256:…`), as a digest-pinned Deployment names it. Every blob is checked
/// against its digest and size.
pub fn read(dir: &Path, reference: &str) -> Result<Image, ImageError> {
    let marker: LayoutMarker = parse(&dir.join("oci-layout"), "oci-layout")?;
    if marker.image_layout_version != LAYOUT_VERSION {
        return Err(ImageError::NotALayout {
            dir: dir.to_owned(),
            reason: "unsupported imageLayoutVersion",
        });
    }
    let index = read_index(dir)?;
    let pinned = reference
        .rsplit_once('@')
        .map_or(reference, |(_, digest)| digest);
    let wanted = |m: &&Descriptor| match Digest::parse(pinned) {
        Ok(digest) => m.digest == digest,
        Err(_) => m.annotations.get(REF_NAME).map(String::as_str) == Some(reference),
    };
    let unknown = || ImageError::UnknownReference {
        dir: dir.to_owned(),
        reference: reference.to_owned(),
    };
    let descriptor = match index.manifests.iter().find(wanted) {
        Some(found) => found.clone(),
        // A pinned digest need not be named in the index: the blob is enough.
        None => match Digest::parse(pinned) {
            Ok(digest) if blob_path(dir, &digest).exists() => Descriptor {
                media_type: super::MANIFEST_MEDIA_TYPE.to_owned(),
                size: fs::metadata(blob_path(dir, &digest))
                    .map_err(io(&blob_path(dir, &digest)))?
                    .len(),
                digest,
                annotations: BTreeMap::new(),
                platform: None,
            },
            _ => return Err(unknown()),
        },
    };
    let manifest_bytes = read_blob(dir, &descriptor)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|source| ImageError::Json {
            what: "image manifest",
            source,
        })?;
    let blob = |d: &Descriptor| -> Result<Blob, ImageError> {
        Ok(Blob {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            data: read_blob(dir, d)?,
        })
    };
    let image = Image {
        config: blob(&manifest.config)?,
        layers: manifest.layers.iter().map(blob).collect::<Result<_, _>>()?,
        manifest_digest: descriptor.digest,
        manifest: manifest_bytes,
    };
    image.verify()?;
    Ok(image)
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

fn read_blob(dir: &Path, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
    let path = blob_path(dir, &descriptor.digest);
    let data = fs::read(&path).map_err(io(&path))?;
    let actual = Digest::of(&data);
    if actual != descriptor.digest || data.len() as u64 != descriptor.size {
        return Err(ImageError::DigestMismatch {
            expected: descriptor.digest.clone(),
            actual,
        });
    }
    Ok(data)
}

fn read_index(dir: &Path) -> Result<Index, ImageError> {
    parse(&dir.join("index.json"), "index.json")
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, what: &'static str) -> Result<T, ImageError> {
    let bytes = fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|source| ImageError::Json { what, source })
}

fn json(value: &impl Serialize, what: &'static str) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec_pretty(value).map_err(|source| ImageError::Json { what, source })
}

/// Writes `path` whole: a temporary file in the layout's root (never in `blobs/`, where every
/// file must be a blob), then a rename.
fn replace(dir: &Path, path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    fs::write(&temporary, data).map_err(io(&temporary))?;
    fs::rename(&temporary, path).map_err(|source| {
        let _ = fs::remove_file(&temporary);
        ImageError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Recipe;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kdeploy-layout-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_image_reads_back_by_name_and_by_digest() {
        let dir = scratch("roundtrip");
        let image = Recipe::site().build(b"#!binary").unwrap();
        write(&dir, "demo/web:0.1.0", &image).unwrap();

        assert_eq!(read(&dir, "demo/web:0.1.0").unwrap(), image);
        assert_eq!(read(&dir, image.manifest_digest.as_str()).unwrap(), image);
        let pinned = format!(
            "123.dkr.ecr.x.amazonaws.com/demo/web@{}",
            image.manifest_digest
        );
        assert_eq!(read(&dir, &pinned).unwrap(), image);
        assert!(matches!(
            read(&dir, "demo/web:9"),
            Err(ImageError::UnknownReference { .. })
        ));

        let marker: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("oci-layout")).unwrap()).unwrap();
        assert_eq!(marker, serde_json::json!({"imageLayoutVersion": "1.0.0"}));
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], INDEX_MEDIA_TYPE);
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], image.manifest_digest.as_str());
        assert_eq!(entry["annotations"][REF_NAME], "demo/web:0.1.0");
        assert_eq!(entry["platform"]["architecture"], "amd64");
        let mut files: Vec<String> = fs::read_dir(dir.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let mut digests: Vec<String> = image
            .blobs()
            .map(|b| b.digest.hex().to_owned())
            .chain([image.manifest_digest.hex().to_owned()])
            .collect();
        digests.sort();
        assert_eq!(files, digests);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_image_under_a_name_replaces_the_old_one_and_keeps_the_others() {
        let dir = scratch("replace");
        let old = Recipe::site().build(b"old").unwrap();
        let new = Recipe::site().build(b"new").unwrap();
        let other = Recipe::site().build(b"other").unwrap();
        write(&dir, "web:1", &old).unwrap();
        write(&dir, "web:2", &other).unwrap();
        write(&dir, "web:1", &new).unwrap();
        write(&dir, "web:1", &new).unwrap();

        assert_eq!(read(&dir, "web:1").unwrap(), new);
        assert_eq!(read(&dir, "web:2").unwrap(), other);
        let index = read_index(&dir).unwrap();
        assert_eq!(index.manifests.len(), 2);
        // The old image's blobs stay readable by digest until someone collects them.
        assert_eq!(read(&dir, old.manifest_digest.as_str()).unwrap(), old);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupted_blob_is_refused() {
        let dir = scratch("corrupt");
        let image = Recipe::site().build(b"bytes").unwrap();
        write(&dir, "web:1", &image).unwrap();
        fs::write(blob_path(&dir, &image.layers[0].digest), b"tampered").unwrap();
        assert!(matches!(
            read(&dir, "web:1"),
            Err(ImageError::DigestMismatch { .. })
        ));
        // Writing again repairs it.
        write(&dir, "web:1", &image).unwrap();
        assert_eq!(read(&dir, "web:1").unwrap(), image);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_without_the_marker_is_not_a_layout() {
        let dir = scratch("empty");
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(read(&dir, "web:1"), Err(ImageError::Io { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
