//! How far a download is: bytes and files done out of those listed, counted by the download as
//! it writes and read by whoever shows it (`/health`, the log, the metrics, a progress bar).
//! Lock-free counters: the writers are the download's streams, the readers a timer.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one download.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    total_bytes: AtomicU64,
    files: AtomicU64,
    total_files: AtomicU64,
}

/// A reading of [`Progress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProgressReport {
    /// Bytes written so far.
    pub bytes: u64,
    /// Bytes listed (files whose size the store does not report count as 0).
    pub total_bytes: u64,
    /// Files complete.
    pub files: u64,
    /// Files listed.
    pub total_files: u64,
}

impl Progress {
    /// The download of `files` files of `bytes` bytes in all begins.
    pub fn start(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }

    /// `bytes` more were written.
    pub fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One more file is complete.
    pub fn file_done(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report(&self) -> ProgressReport {
        ProgressReport {
            bytes: self.bytes.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            total_files: self.total_files.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Display for ProgressReport {
    /// `120.0 MB of 400.0 MB (30%), 2 of 5 files`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", megabytes(self.bytes))?;
        if let Some(percent) =
            (self.bytes.min(self.total_bytes) * 100).checked_div(self.total_bytes)
        {
            write!(f, " of {} ({percent}%)", megabytes(self.total_bytes))?;
        }
        write!(f, ", {} of {} files", self.files, self.total_files)
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_as_a_sentence() {
        let progress = Progress::default();
        progress.start(5, 400_000_000);
        progress.add(120_000_000);
        progress.file_done();
        progress.file_done();
        assert_eq!(
            progress.report().to_string(),
            "120.0 MB of 400.0 MB (30%), 2 of 5 files"
        );
        let unknown_sizes = ProgressReport {
            bytes: 1_500_000,
            total_bytes: 0,
            files: 0,
            total_files: 3,
        };
        assert_eq!(unknown_sizes.to_string(), "1.5 MB, 0 of 3 files");
    }
}
