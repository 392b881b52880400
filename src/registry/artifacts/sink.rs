//! What every download backend shares: one file being written into staging ([`Sink`]: created
//! new, hashed and counted on the way, flushed before its digest is handed out), the bounds on a
//! listing, and the error for a listed path that may not be written.

use std::path::Path;

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::files::{hex, FileDigest};
use crate::registry::{Progress, RegistryError};

/// Listings beyond these bounds are treated as hostile.
pub(crate) const MAX_FILES: usize = 100_000;
pub(crate) const MAX_DIRECTORIES: usize = 10_000;

/// A listed path that may not be written; `reason` completes "refusing artifact path ...".
pub(crate) fn unsafe_path(uri: &str, path: &str, reason: String) -> RegistryError {
    RegistryError::UnsafePath {
        uri: uri.to_string(),
        path: path.to_string(),
        reason,
    }
}

/// One file being downloaded into staging: created new, written through a buffer, hashed and
/// counted on the way, and flushed to disk before its digest is handed out. Each backend reads
/// its own stream and decides how a wrong size reads; this is what they share.
pub(crate) struct Sink<'a> {
    uri: &'a str,
    target: &'a Path,
    writer: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    /// Bytes written so far.
    received: u64,
    /// The download's counters.
    progress: &'a Progress,
}

impl<'a> Sink<'a> {
    /// Creates `target`, which must not exist.
    pub(crate) async fn create(
        uri: &'a str,
        target: &'a Path,
        progress: &'a Progress,
    ) -> Result<Sink<'a>, RegistryError> {
        let file = tokio::fs::File::create_new(target)
            .await
            .map_err(|source| write_error(uri, target, source))?;
        Ok(Sink {
            uri,
            target,
            writer: tokio::io::BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            received: 0,
            progress,
        })
    }

    /// Bytes written so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.received += chunk.len() as u64;
        self.progress.add(chunk.len() as u64);
        self.hasher.update(chunk);
        self.writer
            .write_all(chunk)
            .await
            .map_err(|source| write_error(self.uri, self.target, source))
    }

    /// Flushes the file to disk and returns its digest under the listed `path`.
    pub(crate) async fn finish(mut self, path: &str) -> Result<FileDigest, RegistryError> {
        let error = |source| write_error(self.uri, self.target, source);
        self.writer.flush().await.map_err(error)?;
        self.writer.get_ref().sync_all().await.map_err(error)?;
        self.progress.file_done();
        Ok(FileDigest {
            path: path.to_string(),
            size: self.received,
            sha256: hex(&self.hasher.finalize()),
        })
    }
}

fn write_error(uri: &str, target: &Path, source: std::io::Error) -> RegistryError {
    RegistryError::Io {
        uri: uri.to_string(),
        action: "write",
        path: target.to_path_buf(),
        source,
    }
}
