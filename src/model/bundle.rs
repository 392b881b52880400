//! Safe extraction of `.zip` model bundles. Before a byte is written, every entry is listed:
//! its name must pass [`confine`] (no `..`, no absolute paths, no backslashes, one spelling per
//! file) and symbolic links are refused. Then only what the model uses is extracted: `MLmodel`
//! first, and from it the graph, the graph's external data files (read from the graph,
//! [`external_files`]), the tokenizer, `config.json`, the serving input example and a
//! `SHA256SUMS` with the files it lists. Other entries (`conda.yaml`, `requirements.txt`, an
//! attacker's padding) are counted and logged, never written.
//!
//! Each extracted entry is held to an inflate ratio: real model files barely compress
//! (weights about 1.1x, a `tokenizer.json` about 4x), so an entry whose header declares more
//! than [`MAX_INFLATE_RATIO`] times its compressed size (past a ratio-free first
//! [`RATIO_FREE_BYTES`]) is refused before anything of it is written, and an entry that inflates
//! past what its header declared is cut off at that point. The bytes really written count
//! against `max_bundle_bytes` overall. Blocking: the reload pipeline calls it from a blocking
//! thread.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::files::{confine, PathError, SUMS_FILE};
use crate::model::external::external_files;
use crate::model::load::{read_bounded, MAX_MLMODEL_BYTES};
use crate::model::mlmodel::MlModel;

/// The most an extracted entry may inflate: its size over its compressed size.
pub const MAX_INFLATE_RATIO: u64 = 100;

/// Bytes of an entry that are not held to the ratio (a small file of repeated text may
/// compress far better than a model's files do).
pub const RATIO_FREE_BYTES: u64 = 1 << 20;

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
    /// Neither `MLmodel` nor `<folder>/MLmodel` is in the archive.
    #[error(
        "{path}: no MLmodel at the top of the archive or in one folder; a bundle is a model \
         directory zipped (e.g. python -m zipfile -c model.zip model/)"
    )]
    NoMlModel { path: PathBuf },
    /// More bytes came out than `max_bundle_bytes` allows (counted as written, and refused
    /// before writing when the headers already say so).
    #[error(
        "{path}: extracts to more than {limit} bytes (max_bundle_bytes); the bundle was rejected"
    )]
    TooLarge { path: PathBuf, limit: u64 },
    /// An entry declares a size out of proportion to its compressed size: a compression bomb.
    #[error(
        "{path}: entry '{entry}' would inflate {compressed} compressed bytes to {size} (more \
         than {MAX_INFLATE_RATIO} times, past the first {RATIO_FREE_BYTES} bytes); model files \
         barely compress, the bundle was rejected before extracting it"
    )]
    InflateRatio {
        path: PathBuf,
        entry: String,
        compressed: u64,
        size: u64,
    },
    /// An entry inflated past the size its header declares (a bomb that lies in its header).
    #[error(
        "{path}: entry '{entry}' inflates past the {declared} bytes its header declares; the \
         bundle was rejected"
    )]
    Overflow {
        path: PathBuf,
        entry: String,
        declared: u64,
    },
    /// Reading the archive or writing the extracted files failed.
    #[error("{path}: {why}")]
    Io { path: PathBuf, why: String },
}

/// One entry as the central directory lists it.
struct Listed {
    index: usize,
    name: String,
    dir: bool,
    size: u64,
    compressed: u64,
    stored: bool,
}

/// Extracts the model in `archive` into `dest` (created; must not exist) and returns the model
/// directory: `dest` itself, or `dest/<folder>` when the zip wraps the model in one folder.
pub fn extract(archive: &Path, dest: &Path, max_bytes: u64) -> Result<PathBuf, BundleError> {
    let file = std::fs::File::open(archive).map_err(|e| io_error(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| zip_error(archive, e))?;
    let listed = list(archive, &zip)?;
    let prefix = model_prefix(&listed).ok_or_else(|| BundleError::NoMlModel {
        path: archive.to_path_buf(),
    })?;
    std::fs::create_dir_all(dest).map_err(|e| io_error(dest, e))?;
    let root = dest.join(prefix.trim_end_matches('/'));
    let mut extraction = Extraction {
        archive,
        dest,
        zip: &mut zip,
        files: listed
            .iter()
            .filter(|entry| !entry.dir)
            .map(|entry| (entry.name.as_str(), entry))
            .collect(),
        max_bytes,
        total: 0,
        extracted: HashSet::new(),
    };
    let mlmodel_file = extraction.take(&format!("{prefix}MLmodel"))?;
    if let Some(model) = mlmodel_file.as_deref().and_then(mlmodel) {
        let graph = plain(&model.onnx_file);
        // Only a graph that came out of the archive is read: `data` may name anything.
        if let Some(graph_file) = extraction.take(&format!("{prefix}{graph}"))? {
            // The graph names its external data files, relative to its own folder.
            for data in graph_data_files(&graph_file, &graph) {
                extraction.take(&format!("{prefix}{data}"))?;
            }
        }
        for relative in used_files(&model) {
            extraction.take(&format!("{prefix}{relative}"))?;
        }
        let sums_file = extraction.take(&format!("{prefix}{SUMS_FILE}"))?;
        if let Some(sums) = sums_file.as_deref().and_then(read_small) {
            for listed_path in sums_paths(&sums) {
                extraction.take(&format!("{prefix}{listed_path}"))?;
            }
        }
    }
    let skipped: Vec<&str> = listed
        .iter()
        .filter(|entry| !entry.dir && !extraction.extracted.contains(&entry.index))
        .map(|entry| entry.name.as_str())
        .collect();
    if !skipped.is_empty() {
        tracing::info!(
            bundle = %archive.display(),
            skipped = skipped.len(),
            entries = %skipped.iter().take(8).copied().collect::<Vec<_>>().join(", "),
            "entries the model does not use were not extracted"
        );
    }
    Ok(root)
}

fn zip_error(archive: &Path, err: impl std::fmt::Display) -> BundleError {
    BundleError::Zip {
        path: archive.to_path_buf(),
        why: err.to_string(),
    }
}

fn io_error(path: &Path, err: std::io::Error) -> BundleError {
    BundleError::Io {
        path: path.to_path_buf(),
        why: err.to_string(),
    }
}

/// Every entry, its name confined and links refused, before anything is written.
fn list<R: Read + std::io::Seek>(
    archive: &Path,
    zip: &zip::ZipArchive<R>,
) -> Result<Vec<Listed>, BundleError> {
    let mut listed = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let entry = zip
            .by_index_data(index)
            .map_err(|e| zip_error(archive, e))?;
        let name = entry
            .name()
            .map_err(|e| zip_error(archive, e))?
            .into_owned();
        if entry.is_symlink() {
            return Err(BundleError::Symlink {
                path: archive.to_path_buf(),
                entry: name,
            });
        }
        // A directory entry's name ends in one '/'.
        let relative = name.strip_suffix('/').unwrap_or(&name);
        confine(relative).map_err(|reason| BundleError::UnsafePath {
            path: archive.to_path_buf(),
            entry: name.clone(),
            reason,
        })?;
        listed.push(Listed {
            index,
            dir: entry.is_dir(),
            size: entry.size(),
            compressed: entry.compressed_size(),
            stored: entry.compression() == zip::CompressionMethod::Stored,
            name,
        });
    }
    Ok(listed)
}

/// `""` when `MLmodel` is at the top, `"<folder>/"` when exactly one folder holds one.
fn model_prefix(listed: &[Listed]) -> Option<String> {
    if listed.iter().any(|e| !e.dir && e.name == "MLmodel") {
        return Some(String::new());
    }
    let mut folders = listed.iter().filter_map(|e| {
        let (folder, rest) = e.name.split_once('/')?;
        (!e.dir && rest == "MLmodel").then(|| format!("{folder}/"))
    });
    match (folders.next(), folders.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// The text of a file no larger than an `MLmodel` may be (the loader's bound); `None` for a
/// larger one or one that is not UTF-8: the loader then refuses it with its own message.
fn read_small(path: &Path) -> Option<String> {
    String::from_utf8(read_bounded(path, MAX_MLMODEL_BYTES).ok()?).ok()
}

/// The parsed `MLmodel` at `path`, when it is small enough and parses; otherwise the loader
/// refuses it with its own message, and only `MLmodel` was extracted.
fn mlmodel(path: &Path) -> Option<MlModel> {
    MlModel::parse(&read_small(path)?).ok()
}

/// A path `MLmodel` names, as the loader reads it (`./x` means `x`).
fn plain(named: &str) -> String {
    named.strip_prefix("./").unwrap_or(named).to_string()
}

/// The files the model uses besides `MLmodel` and its graph, relative to the model directory
/// (the loader's rules: `model/load.rs`); those absent from the archive are simply not there.
fn used_files(model: &MlModel) -> Vec<String> {
    let mut files = Vec::new();
    match &model.tokenizer {
        Some(named) => files.push(plain(named)),
        None => files.extend(["tokenizer.json".into(), "tokenizer/tokenizer.json".into()]),
    }
    files.push("config.json".into());
    files.extend(model.serving_input_path.as_deref().map(plain));
    files.push(SUMS_FILE.into());
    files
}

/// The external data files of the graph at `graph` (named `relative` in the model), relative
/// to the model directory. A location that leaves the directory is not extracted: ONNX Runtime
/// refuses such a graph with its own message when it loads.
fn graph_data_files(graph: &Path, relative: &str) -> Vec<String> {
    // Protocol buffers stop at 2 GiB: a larger file is no ONNX graph, and is not read whole.
    let small_enough = std::fs::metadata(graph).is_ok_and(|m| m.len() < 2 << 30);
    let Some(bytes) = small_enough.then(|| std::fs::read(graph).ok()).flatten() else {
        return Vec::new();
    };
    let folder = relative.rsplit_once('/').map_or("", |(folder, _)| folder);
    external_files(&bytes)
        .unwrap_or_default()
        .into_iter()
        .map(|location| {
            let location = plain(&location);
            if folder.is_empty() {
                location
            } else {
                format!("{folder}/{location}")
            }
        })
        .filter(|path| confine(path).is_ok())
        .collect()
}

/// The paths a `SHA256SUMS` text lists (`<hex>  <path>`, `*` before a binary-mode path).
fn sums_paths(sums: &str) -> impl Iterator<Item = String> + '_ {
    sums.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.trim_end().split_once(' '))
        .map(|(_, path)| plain(path.trim_start_matches(' ').trim_start_matches('*')))
}

/// The state of one extraction: what was written so far, against the bounds.
struct Extraction<'a, R: Read + std::io::Seek> {
    archive: &'a Path,
    dest: &'a Path,
    zip: &'a mut zip::ZipArchive<R>,
    /// The file entries by name (an archive may hold tens of thousands, and `SHA256SUMS` may
    /// name as many: no scan per name).
    files: HashMap<&'a str, &'a Listed>,
    max_bytes: u64,
    total: u64,
    extracted: HashSet<usize>,
}

impl<R: Read + std::io::Seek> Extraction<'_, R> {
    /// Extracts the file entry named `name`, once, and returns where it was written; a name not
    /// in the archive is skipped (`None`).
    fn take(&mut self, name: &str) -> Result<Option<PathBuf>, BundleError> {
        let Some(&entry) = self.files.get(name) else {
            return Ok(None);
        };
        let target = self
            .dest
            .join(confine(&entry.name).expect("listed names are confined"));
        if !self.extracted.insert(entry.index) {
            return Ok(Some(target));
        }
        let allowed = if entry.stored {
            entry.compressed
        } else {
            entry
                .compressed
                .saturating_mul(MAX_INFLATE_RATIO)
                .saturating_add(RATIO_FREE_BYTES)
        };
        if entry.size > allowed {
            return Err(BundleError::InflateRatio {
                path: self.archive.to_path_buf(),
                entry: entry.name.clone(),
                compressed: entry.compressed,
                size: entry.size,
            });
        }
        if self.total.saturating_add(entry.size) > self.max_bytes {
            return Err(too_large(self.archive, self.max_bytes));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        let mut out = std::fs::File::create(&target).map_err(|e| io_error(&target, e))?;
        let mut reader = self
            .zip
            .by_index(entry.index)
            .map_err(|e| zip_error(self.archive, e))?;
        // Count what is really written, not the header's claim: a zip bomb may lie about sizes.
        let mut buffer = vec![0u8; 64 * 1024];
        let mut written: u64 = 0;
        loop {
            let read = reader
                .read(&mut buffer)
                .map_err(|e| zip_error(self.archive, e))?;
            if read == 0 {
                return Ok(Some(target));
            }
            written += read as u64;
            if written > entry.size {
                return Err(BundleError::Overflow {
                    path: self.archive.to_path_buf(),
                    entry: entry.name.clone(),
                    declared: entry.size,
                });
            }
            self.total += read as u64;
            if self.total > self.max_bytes {
                return Err(too_large(self.archive, self.max_bytes));
            }
            out.write_all(&buffer[..read])
                .map_err(|e| io_error(&target, e))?;
        }
    }
}

fn too_large(archive: &Path, limit: u64) -> BundleError {
    BundleError::TooLarge {
        path: archive.to_path_buf(),
        limit,
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

    /// An `MLmodel` naming `m.onnx` and `tok.json`.
    const MLMODEL: &[u8] =
        b"flavors:\n  onnx:\n    data: m.onnx\nmetadata:\n  tokenizer: ./tok.json\n";

    #[test]
    fn deflated_and_stored_entries_extract_byte_for_byte() {
        let text = "a compressible line of text\n".repeat(1000);
        for method in [CompressionMethod::Deflated, CompressionMethod::Stored] {
            let archive =
                make_zip_with(&[("MLmodel", MLMODEL), ("m.onnx", text.as_bytes())], method);
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

    /// The files under `dir`, relative to it, sorted.
    fn files_under(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(next) = stack.pop() {
            for entry in std::fs::read_dir(next).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(dir).unwrap();
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn only_the_files_the_model_uses_are_extracted() {
        let graph = crate::model::external::graph_with_external_data(&["weights.data", "w/b.data"]);
        let sums = format!("{}  extra.txt\n", "0".repeat(64));
        let archive = make_zip(&[
            ("pkg/MLmodel", MLMODEL),
            ("pkg/m.onnx", &graph),
            ("pkg/weights.data", b"w"),
            ("pkg/w/b.data", b"b"),
            ("pkg/tok.json", b"{}"),
            ("pkg/tokenizer.json", b"{} not named, so not the tokenizer"),
            ("pkg/config.json", b"{}"),
            ("pkg/SHA256SUMS", sums.as_bytes()),
            ("pkg/extra.txt", b"listed in SHA256SUMS"),
            ("pkg/conda.yaml", b"not used"),
            ("pkg/padding/zeros.bin", &[0u8; 4096]),
            ("__MACOSX/pkg/._MLmodel", b"resource fork"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let root = extract(archive.path(), &dest, 1 << 20).unwrap();
        assert_eq!(root, dest.join("pkg"));
        assert_eq!(
            files_under(&dest),
            [
                "pkg/MLmodel",
                "pkg/SHA256SUMS",
                "pkg/config.json",
                "pkg/extra.txt",
                "pkg/m.onnx",
                "pkg/tok.json",
                "pkg/w/b.data",
                "pkg/weights.data"
            ]
        );
        // A graph named outside the archive is never read (/dev/zero would never end).
        for outside in ["/dev/zero", "../../../../../../../../dev/zero"] {
            let text = format!("flavors:\n  onnx:\n    data: {outside}\n");
            let archive = make_zip(&[("MLmodel", text.as_bytes()), ("m.onnx", b"g")]);
            let dest = dir.path().join("outside");
            extract(archive.path(), &dest, 1 << 20).unwrap();
            assert_eq!(files_under(&dest), ["MLmodel"]);
            std::fs::remove_dir_all(&dest).unwrap();
        }
        // An MLmodel that does not parse: only it is extracted, the loader says why.
        let archive = make_zip(&[("MLmodel", b"[not yaml"), ("m.onnx", b"y")]);
        let dest = dir.path().join("unparsed");
        extract(archive.path(), &dest, 1 << 20).unwrap();
        assert_eq!(files_under(&dest), ["MLmodel"]);
    }

    #[test]
    fn an_archive_without_one_model_is_refused() {
        for entries in [
            &[("model.onnx", b"y" as &[u8])][..],
            &[("a/MLmodel", b"x"), ("b/MLmodel", b"x")],
            &[("a/b/MLmodel", b"x")],
        ] {
            check(
                entries,
                100,
                Err("no MLmodel at the top of the archive or in one folder"),
            );
        }
    }

    #[test]
    fn a_compression_bomb_is_refused_before_a_byte_of_it_is_written() {
        // 64 MiB of zeros deflate to about 64 KB: a ratio of about a thousand.
        let zeros = vec![0u8; 64 << 20];
        let archive = make_zip(&[("MLmodel", MLMODEL), ("m.onnx", &zeros)]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let err = extract(archive.path(), &dest, u64::MAX).unwrap_err();
        assert!(
            matches!(&err, BundleError::InflateRatio { entry, size, .. } if entry == "m.onnx" && *size == 64 << 20),
            "{err}"
        );
        assert!(err.to_string().contains("more than 100 times"), "{err}");
        assert_eq!(files_under(&dest), ["MLmodel"]);
        // The same bomb as an entry the model does not use is never read at all.
        let archive = make_zip(&[("MLmodel", MLMODEL), ("m.onnx", b"g"), ("pad", &zeros)]);
        let dest = dir.path().join("unused");
        extract(archive.path(), &dest, u64::MAX).unwrap();
        assert_eq!(files_under(&dest), ["MLmodel", "m.onnx"]);
        // A small file that compresses well is under the ratio-free allowance.
        let archive = make_zip(&[("MLmodel", MLMODEL), ("tok.json", &[b' '; 512 << 10])]);
        extract(archive.path(), &dir.path().join("small"), u64::MAX).unwrap();
    }

    #[test]
    fn an_entry_that_inflates_past_its_declared_size_is_cut_off() {
        // A header that lies: m.onnx declares 1000 bytes (in the local header and the central
        // directory) and inflates to 200 000.
        let archive = make_zip(&[("MLmodel", MLMODEL), ("m.onnx", &[7u8; 200_000])]);
        let mut bytes = std::fs::read(archive.path()).unwrap();
        let name = b"m.onnx";
        for (signature, size_at, name_at) in [(0x04034b50u32, 22, 30), (0x02014b50, 24, 46)] {
            let at = (0..bytes.len() - name_at - name.len())
                .find(|&i| {
                    bytes[i..i + 4] == signature.to_le_bytes()
                        && &bytes[i + name_at..i + name_at + name.len()] == name
                })
                .unwrap();
            bytes[at + size_at..at + size_at + 4].copy_from_slice(&1000u32.to_le_bytes());
        }
        std::fs::write(archive.path(), bytes).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let err = extract(archive.path(), &dest, u64::MAX).unwrap_err();
        // The zip crate stops such an entry itself; our own count is the second line.
        assert!(
            matches!(&err, BundleError::Overflow { declared: 1000, .. })
                || err
                    .to_string()
                    .contains("larger than its declared uncompressed size"),
            "{err}"
        );
        assert!(std::fs::metadata(dest.join("m.onnx")).unwrap().len() <= 1000);
    }

    #[test]
    fn the_size_bound_counts_the_extracted_bytes() {
        // 200 KB of zeros deflate to a few hundred bytes: the compressed size is far below the
        // bound, what comes out is not.
        let archive = make_zip(&[("MLmodel", MLMODEL), ("m.onnx", &[0u8; 200_000])]);
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
