//! The image's one layer (`layer.md`): a tar archive holding the binary, gzip-compressed, with
//! every byte fixed by the binary alone: path, mode, owner and mtime in the tar header; no name,
//! no time and a fixed level in the gzip stream.

use std::io::Write;

use flate2::{Compression, GzBuilder};

use super::{Digest, ImageError};

/// Read and execute for everyone, write for nobody but root: the process only runs the file.
pub const BINARY_MODE: u32 = 0o755;
/// Owned by root (0:0), so the unprivileged user the site runs as cannot rewrite its own binary.
pub const BINARY_OWNER: u32 = 0;
/// A fixed level (zlib's default trade-off): the compressed bytes, and so the layer digest,
/// depend on it, and on the compressor's version (miniz_oxide, pinned by Cargo.lock); the
/// `DiffID` depends on the binary alone.
const GZIP_LEVEL: u32 = 6;
/// RFC 1952 `OS = 255` (unknown), rather than the building machine's.
const GZIP_OS_UNKNOWN: u8 = 255;

/// A layer, compressed, with the `DiffID` of its uncompressed tar.
pub(super) struct Layer {
    pub compressed: Vec<u8>,
    pub diff_id: Digest,
}

/// The layer with `binary` at `path` (absolute in the image, stored relative in the tar as
/// `layer.md` shows its examples).
pub(super) fn binary_layer(path: &str, binary: &[u8]) -> Result<Layer, ImageError> {
    let tar = tar_of(path.trim_start_matches('/'), binary).map_err(ImageError::Layer)?;
    let diff_id = Digest::of(&tar);
    let compressed = deterministic_gzip(&tar).map_err(ImageError::Layer)?;
    Ok(Layer {
        compressed,
        diff_id,
    })
}

fn tar_of(path: &str, binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(binary.len() as u64);
    header.set_mode(BINARY_MODE);
    header.set_uid(u64::from(BINARY_OWNER));
    header.set_gid(u64::from(BINARY_OWNER));
    header.set_mtime(0);
    let mut archive = tar::Builder::new(Vec::with_capacity(binary.len() + 2048));
    archive.append_data(&mut header, path, binary)?;
    archive.into_inner()
}

/// gzip with an all-zero MTIME, no FNAME/FCOMMENT/FEXTRA, OS unknown and a fixed level.
pub(super) fn deterministic_gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(
            Vec::with_capacity(data.len() / 2),
            Compression::new(GZIP_LEVEL),
        );
    encoder.write_all(data)?;
    encoder.finish()
}
