//! `.zip` model bundles: the input is written as a file and extracted into a fresh temporary
//! directory with a 1 MiB bound. Extraction never panics; nothing lands outside the
//! destination; no symbolic link is created; no more than the bound is written.
#![no_main]

use std::path::Path;

use hotserve::model::bundle::extract;
use libfuzzer_sys::fuzz_target;

const MAX_BYTES: u64 = 1 << 20;

/// Total size of the regular files under `dir`; panics on a symbolic link.
fn walk(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        assert!(!kind.is_symlink(), "{:?} is a symbolic link", entry.path());
        if kind.is_dir() {
            total += walk(&entry.path());
        } else {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

fuzz_target!(|data: &[u8]| {
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("model.zip");
    std::fs::write(&archive, data).unwrap();
    let dest = scratch.path().join("out");
    let result = extract(&archive, &dest, MAX_BYTES);
    // Only the archive and the destination may exist in the scratch directory.
    for entry in std::fs::read_dir(scratch.path()).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            name == "model.zip" || name == "out",
            "{name:?} was written outside dest"
        );
    }
    if dest.exists() {
        assert!(walk(&dest) <= MAX_BYTES);
    }
    if let Ok(root) = result {
        assert!(root.starts_with(&dest), "{root:?}");
    }
});
