//! Safe extraction of `.zip` model bundles: every entry name passes [`confine`] (no `..`, no
//! absolute paths, no backslashes, one spelling per file), symbolic links are refused, and the
//! bytes really written are counted against a bound, so a hostile or corrupt bundle cannot write
//! outside the cache or fill the disk. Blocking: the reload pipeline calls it from a blocking
//! thread.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::files::{confine, PathError};

/// Why a bundle was rejected.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file is not a zip archive, or an entry cannot be decompressed.
    #[error("{path}: not a readable zip archive: {why}")]
    Zip { path: PathBuf, why: String },
    /// An entry is a symbolic link, which could point anywhere once extracted.
    #[error(
        "{path}: entry '{entry}' is a symbolic link; the bundle was rejected, rebuild it with \
         the real files"
    )]
    Symlink { path: PathBuf, entry: String },
    /// An entry's name is not a path [`confine`] accepts.
    #[error(
        "{path}: entry '{entry}' is not a plain relative path ({reason}); the bundle was \
         rejected, rebuild it with paths relative to the model directory (e.g. python -m \
         zipfile -c model.zip model/)"
    )]
    UnsafePath {
        path: PathBuf,
        entry: String,
        reason: PathError,
    },
    /// More bytes came out than `max_bundle_bytes` allows (counted as written, not as the
    /// headers claim).
    #[error(
        "{path}: extracts to more than {limit} bytes (max_bundle_bytes); the bundle was rejected"
    )]
    TooLarge { path: PathBuf, limit: u64 },
    /// Reading the archive or writing the extracted files failed.
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
}

/// Extracts `archive` into `dest` (created; must not exist) and returns the model directory:
/// `dest` itself, or its only subdirectory when the zip wraps everything in one folder.
pub fn extract(archive: &Path, dest: &Path, max_bytes: u64) -> Result<PathBuf, BundleError> {
    let zip_error = |why: String| BundleError::Zip {
        path: archive.to_path_buf(),
        why,
    };
    let io_error = |path: &Path, err: std::io::Error| BundleError::Io {
        path: path.to_path_buf(),
        why: err.to_string(),
    };
    let file = std::fs::File::open(archive).map_err(|e| io_error(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| zip_error(e.to_string()))?;
    std::fs::create_dir_all(dest).map_err(|e| io_error(dest, e))?;
    let mut total: u64 = 0;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(|e| zip_error(e.to_string()))?;
        let name = entry
            .name()
            .map_err(|e| zip_error(e.to_string()))?
            .into_owned();
        if entry.is_symlink() {
            return Err(BundleError::Symlink {
                path: archive.to_path_buf(),
                entry: name,
            });
        }
        // A directory entry's name ends in one '/'.
        let relative = name.strip_suffix('/').unwrap_or(&name);
        let target = dest.join(confine(relative).map_err(|reason| BundleError::UnsafePath {
            path: archive.to_path_buf(),
            entry: name.clone(),
            reason,
        })?);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| io_error(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        let mut out = std::fs::File::create(&target).map_err(|e| io_error(&target, e))?;
        // Count what is really written, not the header's claim: a zip bomb lies about sizes.
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = entry
                .read(&mut buffer)
                .map_err(|e| zip_error(e.to_string()))?;
            if read == 0 {
                break;
            }
            total += read as u64;
            if total > max_bytes {
                return Err(BundleError::TooLarge {
                    path: archive.to_path_buf(),
                    limit: max_bytes,
                });
            }
            out.write_all(&buffer[..read])
                .map_err(|e| io_error(&target, e))?;
        }
    }
    if dest.join("MLmodel").is_file() {
        return Ok(dest.to_path_buf());
    }
    let children: Vec<PathBuf> = std::fs::read_dir(dest)
        .map_err(|e| io_error(dest, e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    match children.as_slice() {
        [only] if only.join("MLmodel").is_file() => Ok(only.clone()),
        _ => Ok(dest.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;
    use zip::CompressionMethod;

    /// A zip of `entries`, deflated as `zip -r` and `shutil.make_archive` write them.
    fn make_zip(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        make_zip_with(entries, CompressionMethod::Deflated)
    }

    fn make_zip_with(
        entries: &[(&str, &[u8])],
        method: CompressionMethod,
    ) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = zip::ZipWriter::new(file.reopen().unwrap());
        let options = SimpleFileOptions::default().compression_method(method);
        for (name, data) in entries {
            if let Some(directory) = name.strip_suffix('/') {
                writer.add_directory(directory, options).unwrap();
            } else {
                writer.start_file(*name, options).unwrap();
                writer.write_all(data).unwrap();
            }
        }
        writer.finish().unwrap();
        file
    }

    fn check(entries: &[(&str, &[u8])], max: u64, expected: Result<&str, &str>) {
        let archive = make_zip(entries);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        match (extract(archive.path(), &dest, max), expected) {
            (Ok(root), Ok(sub)) => assert_eq!(root, dest.join(sub)),
            (Err(err), Err(fragment)) => {
                assert!(
                    err.to_string().contains(fragment),
                    "{err} should contain {fragment}"
                )
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
        assert!(
            !dir.path().join("evil").exists(),
            "nothing may land outside dest"
        );
    }

    #[test]
    fn extraction_cases() {
        check(&[("MLmodel", b"x"), ("model.onnx", b"y")], 100, Ok(""));
        check(&[("m/MLmodel", b"x"), ("m/model.onnx", b"y")], 100, Ok("m"));
        check(&[("m/", b""), ("m/MLmodel", b"x")], 100, Ok("m"));
        check(
            &[("../evil", b"x")],
            100,
            Err("entry '../evil' is not a plain relative path ('..' segments are not allowed)"),
        );
        check(
            &[("a/../../evil", b"x")],
            100,
            Err("'..' segments are not allowed"),
        );
        check(
            &[("/evil", b"x")],
            100,
            Err("(absolute paths are not allowed)"),
        );
        check(
            &[("a\\..\\evil", b"x")],
            100,
            Err("(backslashes are not allowed)"),
        );
        check(
            &[("./MLmodel", b"x")],
            100,
            Err("('.' segments are not allowed)"),
        );
        check(
            &[("a\0b", b"x")],
            100,
            Err("(NUL and control characters are not allowed)"),
        );
        check(
            &[("MLmodel", &[0u8; 200])],
            100,
            Err("extracts to more than 100 bytes"),
        );
    }

    #[test]
    fn deflated_and_stored_entries_extract_byte_for_byte() {
        let text = "a compressible line of text\n".repeat(1000);
        for method in [CompressionMethod::Deflated, CompressionMethod::Stored] {
            let archive = make_zip_with(&[("MLmodel", b"x"), ("m.onnx", text.as_bytes())], method);
            let mut zip =
                zip::ZipArchive::new(std::fs::File::open(archive.path()).unwrap()).unwrap();
            assert_eq!(zip.by_name("m.onnx").unwrap().compression(), method);
            let dir = tempfile::tempdir().unwrap();
            let root = extract(archive.path(), &dir.path().join("out"), 1 << 20).unwrap();
            assert_eq!(
                std::fs::read_to_string(root.join("m.onnx")).unwrap(),
                text,
                "{method:?}"
            );
        }
    }

    #[test]
    fn the_size_bound_counts_decompressed_bytes() {
        // 200 KB of zeros deflate to a few hundred bytes: the header's compressed size is far
        // below the bound, the bytes written are not.
        let archive = make_zip(&[("MLmodel", &[0u8; 200_000])]);
        assert!(std::fs::metadata(archive.path()).unwrap().len() < 10_000);
        let dir = tempfile::tempdir().unwrap();
        let err = extract(archive.path(), &dir.path().join("out"), 100_000).unwrap_err();
        assert!(
            matches!(err, BundleError::TooLarge { limit: 100_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn not_a_zip() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"not a zip").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = extract(file.path(), &dir.path().join("o"), 100).unwrap_err();
        assert!(err.to_string().contains("not a readable zip archive"));
    }
}
