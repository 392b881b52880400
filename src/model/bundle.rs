//! Safe extraction of `.zip` model bundles: every entry must stay inside the destination (no
//! `..`, no absolute paths, no symlinks), and the total extracted size is bounded, so a
//! hostile or corrupt bundle cannot write outside the cache or fill the disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::load::confined;

/// Why a bundle was rejected.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: not a readable zip archive: {why}")]
    Zip { path: PathBuf, why: String },
    #[error("{path}: entry '{entry}' {why}; the bundle was rejected")]
    Unsafe {
        path: PathBuf,
        entry: String,
        why: &'static str,
    },
    #[error(
        "{path}: extracts to more than {limit} bytes (max_bundle_bytes); the bundle was rejected"
    )]
    TooLarge { path: PathBuf, limit: u64 },
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
        let name = entry.name().to_string();
        let unsafe_entry = |why| BundleError::Unsafe {
            path: archive.to_path_buf(),
            entry: name.clone(),
            why,
        };
        if entry.is_symlink() {
            return Err(unsafe_entry("is a symbolic link"));
        }
        if name.contains('\\') || name.contains('\0') {
            return Err(unsafe_entry("has a backslash or NUL in its name"));
        }
        let target = confined(dest, name.trim_end_matches('/'))
            .ok_or_else(|| unsafe_entry("points outside the bundle"))?;
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

    fn make_zip(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut writer = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, data) in entries {
            writer
                .start_file(*name, SimpleFileOptions::default())
                .unwrap();
            writer.write_all(data).unwrap();
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
        check(&[("../evil", b"x")], 100, Err("points outside the bundle"));
        check(
            &[("a/../../evil", b"x")],
            100,
            Err("points outside the bundle"),
        );
        check(&[("/evil", b"x")], 100, Err("points outside the bundle"));
        check(&[("a\\..\\evil", b"x")], 100, Err("backslash"));
        check(
            &[("MLmodel", &[0u8; 200])],
            100,
            Err("extracts to more than 100 bytes"),
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
