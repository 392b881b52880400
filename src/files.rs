//! A model's files as data: the one rule for relative paths that come from outside
//! ([`confine`]: an artifact listing, a zip entry, a path named in `MLmodel`) and the content
//! digests that identify a model ([`FileDigest`], [`digest_dir`], [`combined_digest`], [`hex`]).
//!
//! It sits beside `registry` and `model` rather than inside either because both need it and
//! neither should depend on the other for it: the registry confines listed paths and records
//! digests while downloading, the model layer confines zip entries and `MLmodel` paths and
//! digests local directories, and the cache compares the results. Nothing here knows about
//! MLflow or ONNX.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The publish-time digests a writer may put beside the model files (`<sha256>  <path>` per
/// line, as `sha256sum` writes them).
pub const SUMS_FILE: &str = "SHA256SUMS";

/// The sha256 and size of one file of a model directory. The registry records these while
/// downloading; for local models [`digest_dir`] computes them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FileDigest {
    /// Path relative to the model directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// Why a relative path was refused by [`confine`]. The messages complete a sentence such as
/// "refusing artifact path '../x': ...".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// `""`.
    #[error("the path is empty")]
    Empty,
    /// `/etc/passwd`.
    #[error("absolute paths are not allowed")]
    Absolute,
    /// `a\b`: a separator on Windows, and never written by MLflow or zip tools on Unix.
    #[error("backslashes are not allowed")]
    Backslash,
    /// A NUL byte (which truncates the path in system calls) or another control character.
    #[error("NUL and control characters are not allowed")]
    Control,
    /// `a//b` or `dir/`: not how a file's path is spelled, and two spellings of one file
    /// would defeat the check that no file is listed twice.
    #[error("empty path segments ('//' or a trailing '/') are not allowed")]
    EmptySegment,
    /// `./a`, for the same reason as [`PathError::EmptySegment`].
    #[error("'.' segments are not allowed")]
    Dot,
    /// `../a`: the one that escapes.
    #[error("'..' segments are not allowed")]
    DotDot,
}

/// Checks a relative path that came from outside and returns it as a path that stays inside
/// whatever directory it is joined to: `/`-separated, in one canonical spelling (no empty,
/// `.` or `..` segments), not absolute, no backslash, NUL or other control characters.
pub fn confine(relative: &str) -> Result<PathBuf, PathError> {
    if relative.is_empty() {
        return Err(PathError::Empty);
    }
    if relative.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if relative.contains('\\') {
        return Err(PathError::Backslash);
    }
    if relative.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    let mut confined = PathBuf::new();
    for segment in relative.split('/') {
        match segment {
            "" => return Err(PathError::EmptySegment),
            "." => return Err(PathError::Dot),
            ".." => return Err(PathError::DotDot),
            _ => confined.push(segment),
        }
    }
    Ok(confined)
}

/// A directory could not be read while hashing it.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read it to compute the model's digest: {source}", path.display())]
pub struct DigestError {
    /// The file or directory that failed.
    pub path: PathBuf,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

/// The sha256 and size of every regular file under `dir`, sorted by relative path; symbolic
/// links and other special files are skipped. Blocking: call it from a blocking thread.
pub fn digest_dir(dir: &Path) -> Result<Vec<FileDigest>, DigestError> {
    digest_dir_counting(dir, &|_| {})
}

/// [`digest_dir`], telling `read` the number of bytes of each read as it goes (for a progress
/// display).
pub fn digest_dir_counting(dir: &Path, read: &dyn Fn(u64)) -> Result<Vec<FileDigest>, DigestError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DigestError { path, source }
    };
    let mut digests = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(failed(&current))? {
            let entry = entry.map_err(failed(&current))?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(failed(&path))?;
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file() {
                let mut file = std::fs::File::open(&path).map_err(failed(&path))?;
                let mut hasher = Counting {
                    hasher: Sha256::new(),
                    read,
                };
                let size = std::io::copy(&mut file, &mut hasher).map_err(failed(&path))?;
                let hasher = hasher.hasher;
                let relative = path.strip_prefix(dir).unwrap_or(&path);
                digests.push(FileDigest {
                    path: relative.to_string_lossy().replace('\\', "/"),
                    size,
                    sha256: hex(&hasher.finalize()),
                });
            }
        }
    }
    digests.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(digests)
}

/// One digest for a whole model: the sha256 of its `"path size sha256\n"` lines, in the order
/// given (sorted by path wherever digests are produced).
pub fn combined_digest(digests: &[FileDigest]) -> String {
    let mut hasher = Sha256::new();
    for digest in digests {
        hasher.update(format!(
            "{} {} {}\n",
            digest.path, digest.size, digest.sha256
        ));
    }
    hex(&hasher.finalize())
}

/// Lowercase hex of a digest's bytes.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A hasher that tells how many bytes it was given.
struct Counting<'a> {
    hasher: Sha256,
    read: &'a dyn Fn(u64),
}

impl std::io::Write for Counting<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(bytes);
        (self.read)(bytes.len() as u64);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confinement() {
        let check = |relative: &str, expected: Result<&str, PathError>| {
            assert_eq!(
                confine(relative),
                expected.map(PathBuf::from),
                "confine({relative:?})"
            );
        };
        check("MLmodel", Ok("MLmodel"));
        check("tokenizer/tokenizer.json", Ok("tokenizer/tokenizer.json"));
        check("a/b/c/d.bin", Ok("a/b/c/d.bin"));
        check("a b/..c/d..", Ok("a b/..c/d.."));
        check(".hidden", Ok(".hidden"));
        check("ünïcode/名前.txt", Ok("ünïcode/名前.txt"));
        check("", Err(PathError::Empty));
        check("..", Err(PathError::DotDot));
        check("../evil", Err(PathError::DotDot));
        check("a/../../evil", Err(PathError::DotDot));
        check("a/..", Err(PathError::DotDot));
        check(".", Err(PathError::Dot));
        check("./a", Err(PathError::Dot));
        check("a/./b", Err(PathError::Dot));
        check("/etc/passwd", Err(PathError::Absolute));
        check("/", Err(PathError::Absolute));
        check("a//b", Err(PathError::EmptySegment));
        check("dir/", Err(PathError::EmptySegment));
        check("..\\evil", Err(PathError::Backslash));
        check("a\\b", Err(PathError::Backslash));
        check("C:\\evil", Err(PathError::Backslash));
        check("a\0b", Err(PathError::Control));
        check("a\nb", Err(PathError::Control));
        check("a\u{7f}b", Err(PathError::Control));
    }

    #[test]
    fn path_errors_read_as_reasons() {
        assert_eq!(
            PathError::DotDot.to_string(),
            "'..' segments are not allowed"
        );
        assert_eq!(
            PathError::Control.to_string(),
            "NUL and control characters are not allowed"
        );
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        let check = |bytes: &[u8], expected: &str| assert_eq!(hex(bytes), expected, "{bytes:?}");
        check(&[], "");
        check(&[0x00, 0x0f, 0xab, 0xff], "000fabff");
    }

    #[test]
    fn digests_are_stable_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.txt"), "abc").unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "").unwrap();
        std::os::unix::fs::symlink(dir.path().join("b.txt"), dir.path().join("link")).unwrap();
        let digests = digest_dir(dir.path()).unwrap();
        assert_eq!(
            digests,
            [
                FileDigest {
                    path: "b.txt".into(),
                    size: 3,
                    sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                        .into(),
                },
                FileDigest {
                    path: "sub/a.txt".into(),
                    size: 0,
                    sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                        .into(),
                },
            ]
        );
        // One line per file: local versions (`local-<prefix>`) and cache manifests depend on
        // this exact format.
        assert_eq!(
            combined_digest(&digests),
            hex(&Sha256::digest(format!(
                "b.txt 3 {}\nsub/a.txt 0 {}\n",
                digests[0].sha256, digests[1].sha256
            )))
        );
    }

    #[test]
    fn unreadable_directories_name_the_path() {
        let err = digest_dir(Path::new("/nonexistent/hotserve-model")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/hotserve-model: cannot read it"),
            "{err}"
        );
    }
}
