//! Applying one layer changeset to a root filesystem (image-spec `layer.md`): entries are
//! extracted in order, whiteouts (`.wh.NAME` deletes NAME from the layers below, `.wh..wh..opq`
//! empties its directory of what the layers below put there) are applied and not extracted, and
//! the uncompressed stream's sha256 is returned for the `rootfs.diff_ids` check.
//!
//! Entries that could escape the root are refused: absolute paths and `..` components here, and
//! paths through a symlink pointing outside by the tar crate's `unpack_in`.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// A reader that hashes what passes through it: the diff_id is the digest of the uncompressed
/// tar stream, padding included.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Whether the simulator runs as root (the owner of `/proc/self` is the effective uid).
pub(crate) fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The entry's path as normal components only; None for an absolute path or a `..`.
fn confined(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `dir` (relative to `root`) resolved without leaving `root`; None when it does not exist or a
/// symlink leads outside.
fn inside(root: &Path, dir: &Path) -> Option<PathBuf> {
    let real_root = root.canonicalize().ok()?;
    let real = root.join(dir).canonicalize().ok()?;
    real.starts_with(&real_root).then_some(real)
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Extracts one layer blob (`gzip` or plain tar) into `root`; returns the `sha256:` digest of
/// the uncompressed tar, or why the layer was refused.
pub fn unpack_layer(blob: &[u8], gzip: bool, root: &Path) -> Result<String, String> {
    let source: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    };
    let mut stream = Hashing {
        inner: source,
        hasher: Sha256::new(),
    };
    // What this layer itself wrote: an opaque whiteout keeps it.
    let mut written: HashSet<PathBuf> = HashSet::new();
    {
        let mut archive = tar::Archive::new(&mut stream);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        // containerd applies the owners recorded in the layer when it can (as root).
        archive.set_preserve_ownerships(running_as_root());
        let entries = archive.entries().map_err(|e| format!("not a tar: {e}"))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| format!("bad tar entry: {e}"))?;
            let raw = entry
                .path()
                .map_err(|e| format!("bad tar entry path: {e}"))?
                .into_owned();
            let Some(path) = confined(&raw) else {
                return Err(format!(
                    "entry {} would escape the root filesystem",
                    raw.display()
                ));
            };
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
            if name == OPAQUE_WHITEOUT {
                let Some(dir) = inside(root, &parent) else {
                    continue;
                };
                let children = std::fs::read_dir(&dir)
                    .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
                for child in children.flatten() {
                    if !written.contains(&parent.join(child.file_name())) {
                        remove_any(&child.path())
                            .map_err(|e| format!("opaque whiteout in {}: {e}", dir.display()))?;
                    }
                }
                continue;
            }
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                if let Some(dir) = inside(root, &parent) {
                    remove_any(&dir.join(hidden))
                        .map_err(|e| format!("whiteout {}: {e}", path.display()))?;
                }
                continue;
            }
            let unpacked = entry
                .unpack_in(root)
                .map_err(|e| format!("cannot extract {}: {e}", path.display()))?;
            if !unpacked {
                return Err(format!(
                    "entry {} would escape the root filesystem",
                    path.display()
                ));
            }
            let mut ancestor = Some(path.as_path());
            while let Some(p) = ancestor.filter(|p| !p.as_os_str().is_empty()) {
                written.insert(p.to_path_buf());
                ancestor = p.parent();
            }
        }
    }
    std::io::copy(&mut stream, &mut std::io::sink())
        .map_err(|e| format!("cannot decompress: {e}"))?;
    Ok(format!("sha256:{}", super::hex(&stream.hasher.finalize())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the name bytes directly, as a hostile layer would.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cluster-unpack-{name}-{}",
            crate::meta::random_suffix(8)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// layer.md "Whiteouts": `.wh.NAME` removes NAME; `.wh..wh..opq` hides the lower layers'
    /// children of its directory but not the entries of its own layer.
    #[test]
    fn whiteouts_remove_what_lower_layers_put_there() {
        let root = scratch("wh");
        unpack_layer(
            &tar_of(&[("a/old", b"1"), ("a/keep", b"2"), ("b/x", b"3")]),
            false,
            &root,
        )
        .unwrap();
        unpack_layer(
            &tar_of(&[("a/new", b"4"), ("a/.wh..wh..opq", b""), ("b/.wh.x", b"")]),
            false,
            &root,
        )
        .unwrap();
        assert!(root.join("a/new").exists());
        assert!(!root.join("a/old").exists() && !root.join("a/keep").exists());
        assert!(!root.join("b/x").exists() && root.join("b").is_dir());
        assert!(!root.join("a/.wh..wh..opq").exists());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn parent_and_absolute_paths_are_refused() {
        let root = scratch("escape");
        for bad in ["../evil", "a/../../evil", "/etc/evil"] {
            let err = unpack_layer(&tar_of(&[(bad, b"x")]), false, &root).unwrap_err();
            assert!(err.contains("escape"), "{bad}: {err}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    /// config.md: a diff_id is the sha256 of the uncompressed tar.
    #[test]
    fn the_digest_is_of_the_uncompressed_stream() {
        let root = scratch("diff");
        let tar = tar_of(&[("f", b"hello")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let want = crate::images::sha256_digest(&tar);
        assert_eq!(unpack_layer(&gz, true, &root).unwrap(), want);
        assert_eq!(unpack_layer(&tar, false, &root).unwrap(), want);
        std::fs::remove_dir_all(root).unwrap();
    }
}
