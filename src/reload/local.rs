//! Local sources: a model directory (or `file://` path), a model repository, and a `.zip`
//! bundle. Each check copies or extracts the source into staging first, so the gate never
//! reads files that are being rewritten, then identifies the copy by the digest of its files.
//! All file work runs on the blocking pool.
//!
//! What a local `MODEL_URI` may be ([`Layout`], read anew at every check):
//! - **a model directory** (it has an `MLmodel`), or a symbolic link to one. A link is resolved
//!   once per check, so replacing it atomically (`ln -s v8 tmp && mv -T tmp current`) switches
//!   versions with no moment where a mixture can be read;
//! - **a model repository** (no `MLmodel`, numbered version directories `1/`, `2/`, ... as in
//!   TF Serving and Triton): the highest version that passes the gate is served, and a broken
//!   newest version leaves the next one serving. Only names made of digits count, so a writer
//!   publishes a version by writing it under another name (`.tmp-3/`) and renaming it into
//!   place; a half-copied version is never considered. Pin a version by pointing `MODEL_URI`
//!   at its directory.
//!
//! A directory rewritten in place is safe only if the writer finishes within `watch_debounce`:
//! the copy is discarded if a file changed while it was copied, but no quiet period can tell a
//! finished writer from a slow one. A `SHA256SUMS` file (`sha256sum` format) written last
//! closes that gap: when present, a copy whose files do not match it is a mixture of two
//! versions and is refused (and retried) instead of loaded.

use std::path::{Path, PathBuf};

use super::cache::Manifest;
use super::decide::{Action, Identity};
use super::report::Outcome;
use super::{on_disk, publish, ReloadError, Reloader};
use crate::files::{combined_digest, digest_dir, SUMS_FILE};
use crate::model::{self, FileDigest};

/// What kind of local source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Directory,
    Zip,
}

/// What a local directory holds right now.
#[derive(Debug, PartialEq)]
enum Layout {
    /// A model directory (symbolic links resolved).
    Model(PathBuf),
    /// A model repository: its complete versions, highest first.
    Repository(Vec<(u64, PathBuf)>),
}

/// A local source copied into staging.
struct Staged {
    /// The model root inside staging (a bundle may hold it one folder down).
    root: PathBuf,
    /// The staging directory to remove once done.
    staging: PathBuf,
    digests: Vec<FileDigest>,
    /// Digest of every file's path and content: the version of a local model.
    digest: String,
}

/// One check of a local source.
pub async fn check(reloader: &Reloader, path: &Path, form: Form) -> Outcome {
    if let Form::Zip = form {
        return check_one(reloader, path, Form::Zip, None).await;
    }
    let dir = path.to_path_buf();
    match on_disk(move || layout_of(&dir)).await {
        Ok(Ok(Layout::Model(dir))) => check_one(reloader, &dir, Form::Directory, None).await,
        Ok(Ok(Layout::Repository(versions))) => check_repository(reloader, versions).await,
        Ok(Err(error)) | Err(error) => Outcome::Failed {
            version: None,
            error,
        },
    }
}

/// A repository: the highest version that passes the gate. Versions are tried from the
/// highest down until one is live or goes live; when that is not the newest, the check reports
/// the newest version's failure (the older one serves meanwhile, as with a registry).
async fn check_repository(reloader: &Reloader, versions: Vec<(u64, PathBuf)>) -> Outcome {
    let mut newest_failure: Option<Outcome> = None;
    for (number, dir) in versions {
        let outcome = check_one(reloader, &dir, Form::Directory, Some(number.to_string())).await;
        match &outcome {
            Outcome::Unchanged { .. } | Outcome::ServingCached { .. } => {
                return newest_failure.unwrap_or(outcome)
            }
            Outcome::Loaded { version } | Outcome::Parked { version } => {
                // Report the newer version's failure, as for a registry: /health then says
                // why the version served is not the newest.
                tracing::info!(%version, "serving version {version}, the newest that passes the gate");
                return newest_failure.unwrap_or(outcome);
            }
            Outcome::SkippedBad { .. } | Outcome::Failed { .. } => {
                newest_failure.get_or_insert(outcome);
            }
        }
    }
    newest_failure.unwrap_or_else(|| Outcome::Failed {
        version: None,
        error: ReloadError::NoModel {
            dir: reloader
                .watched_dir()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        },
    })
}

/// One model directory or bundle; `version` names a repository version (else the version is
/// `local-` and the start of the content digest).
async fn check_one(
    reloader: &Reloader,
    path: &Path,
    form: Form,
    version: Option<String>,
) -> Outcome {
    let staging = reloader.cache.staging_path();
    let max_bundle_bytes = reloader.config.max_bundle_bytes;
    let source = path.to_path_buf();
    let staged = match on_disk(move || stage(&source, staging, form, max_bundle_bytes)).await {
        Ok(Ok(staged)) => staged,
        Ok(Err(error)) | Err(error) => {
            return Outcome::Failed {
                version: None,
                error,
            }
        }
    };
    let found = Identity {
        name: reloader.plan.name.clone(),
        version: version.unwrap_or_else(|| format!("local-{}", &staged.digest[..12])),
        key: staged.digest.clone(),
    };
    match reloader.decide(&found, None) {
        Action::KeepLive => {
            discard(staged.staging).await;
            Outcome::Unchanged {
                version: found.version,
            }
        }
        Action::SkipKnownBad { why } => {
            discard(staged.staging).await;
            Outcome::SkippedBad {
                version: found.version,
                why,
            }
        }
        Action::LoadCached(_) | Action::Fetch => {
            // Keyed by content: the live or last known good copy already there has these very
            // files, and stays; anything else there is replaced by the fresh copy.
            let dest = reloader
                .cache
                .version_dir(&format!("local-{}", &staged.digest[..12]));
            let cache = reloader.cache.clone();
            let moved_dest = dest.clone();
            let root = staged.root;
            let staging = staged.staging;
            let live = reloader.live.current().map(|model| model.info.dir.clone());
            let moved = on_disk(move || {
                let moved = if cache.remove(&moved_dest, live.as_deref()) {
                    move_into(&root, &moved_dest)
                } else {
                    Ok(())
                };
                let _ = std::fs::remove_dir_all(&staging);
                moved
            })
            .await;
            if let Err(error) = moved.and_then(|moved| moved) {
                return Outcome::Failed {
                    version: Some(found.version),
                    error,
                };
            }
            let manifest = Manifest {
                uri: reloader.plan.uri.clone(),
                name: found.name.clone(),
                version: found.version.clone(),
                aliases: Vec::new(),
                model_id: None,
                run_id: None,
                listing_key: found.key.clone(),
                digests: staged.digests,
                dir: dest.clone(),
                pointer_target: None,
            };
            match publish::load_and_publish(reloader, manifest, found).await {
                // The gate read the copy in the cache; the user knows the directory.
                Outcome::Failed {
                    version,
                    error: ReloadError::Model(mut error),
                } if form == Form::Directory => {
                    error.rebase(&dest, path);
                    Outcome::Failed {
                        version,
                        error: ReloadError::Model(error),
                    }
                }
                outcome => outcome,
            }
        }
    }
}

/// Copies or extracts `source` into `staging` and digests it. Blocking. On failure nothing
/// is left in staging.
fn stage(
    source: &Path,
    staging: PathBuf,
    form: Form,
    max_bundle_bytes: u64,
) -> Result<Staged, ReloadError> {
    let staged = (|| {
        let root = match form {
            Form::Zip => model::bundle::extract(source, &staging, max_bundle_bytes)?,
            Form::Directory => {
                copy_stable(source, &staging)?;
                staging.clone()
            }
        };
        let digests = digest_dir(&root)?;
        if let Some(sums) = read_sums(&root, source)? {
            check_sums(&sums, &digests).map_err(|why| ReloadError::Mixture {
                dir: source.to_path_buf(),
                why,
            })?;
        }
        Ok::<_, ReloadError>((root, digests))
    })();
    match staged {
        Ok((root, digests)) => Ok(Staged {
            root,
            staging,
            digest: combined_digest(&digests),
            digests,
        }),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(error)
        }
    }
}

/// What `dir` holds: a model (it has an `MLmodel`; links resolved) or a repository of
/// numbered versions. Blocking.
fn layout_of(dir: &Path) -> Result<Layout, ReloadError> {
    let read_error = |source| ReloadError::Copy {
        dir: dir.to_path_buf(),
        source,
    };
    let real = std::fs::canonicalize(dir).map_err(read_error)?;
    if real.join("MLmodel").is_file() {
        return Ok(Layout::Model(real));
    }
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(&real).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let Some(number) = entry.file_name().to_str().and_then(version_number) else {
            continue;
        };
        // A version may itself be a link; resolve it once, here.
        match std::fs::canonicalize(entry.path()) {
            Ok(version_dir) if version_dir.is_dir() => versions.push((number, version_dir)),
            _ => continue,
        }
    }
    if versions.is_empty() {
        return Err(ReloadError::NoModel {
            dir: dir.to_path_buf(),
        });
    }
    versions.sort_by_key(|version| std::cmp::Reverse(version.0));
    Ok(Layout::Repository(versions))
}

/// The version a repository entry stands for: a name made of ASCII digits only (`3`, `0042`).
/// Anything else (`.tmp-3`, `3.partial`, `latest`) is not a version.
fn version_number(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The staged copy's `SHA256SUMS`, if the model has one. Blocking.
fn read_sums(root: &Path, source: &Path) -> Result<Option<String>, ReloadError> {
    match std::fs::read_to_string(root.join(SUMS_FILE)) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source_error) => Err(ReloadError::Copy {
            dir: source.to_path_buf(),
            source: source_error,
        }),
    }
}

/// Checks the files against a `SHA256SUMS` text (`<hex>  <path>` per line, as `sha256sum`
/// writes it; `*` before the path for binary mode is accepted). Every listed file must exist
/// with that digest.
fn check_sums(sums: &str, digests: &[FileDigest]) -> Result<(), String> {
    for (number, line) in sums.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = || {
            format!(
                "{SUMS_FILE} line {}: expected '<sha256>  <path>'",
                number + 1
            )
        };
        let (hash, path) = line.split_once(' ').ok_or_else(malformed)?;
        let path = path.trim_start_matches(' ').trim_start_matches('*');
        let path = path.strip_prefix("./").unwrap_or(path);
        if hash.len() != 64 || path.is_empty() {
            return Err(malformed());
        }
        match digests.iter().find(|d| d.path == path) {
            None => return Err(format!("{path} is listed in {SUMS_FILE} but missing")),
            Some(digest) if !digest.sha256.eq_ignore_ascii_case(hash) => {
                return Err(format!("{path} does not match its digest in {SUMS_FILE}"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Copies `dir` (a canonical directory) to `to`, and fails with
/// [`ReloadError::StillChanging`] if any file's name, size or modification time changed during
/// the copy, or with [`ReloadError::LinkOutside`] / [`ReloadError::LinkLoop`] before a byte is
/// copied when a symbolic link in it leads out of it or back up into it.
fn copy_stable(dir: &Path, to: &Path) -> Result<(), ReloadError> {
    let copy_error = |source| ReloadError::Copy {
        dir: dir.to_path_buf(),
        source,
    };
    let before = super::watch::snapshot(dir).map_err(copy_error)?;
    walk(dir, None)?;
    walk(dir, Some(to))?;
    if super::watch::snapshot(dir).map_err(copy_error)? != before {
        return Err(ReloadError::StillChanging {
            dir: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// Checks that every symbolic link in the model directory `dir` stays inside it, as a reload
/// of a local source does before copying (`hotserve validate` runs the same check). Blocking.
pub fn check_links(dir: &Path) -> Result<(), ReloadError> {
    let real = std::fs::canonicalize(dir).map_err(|source| ReloadError::Copy {
        dir: dir.to_path_buf(),
        source,
    })?;
    walk(&real, None)
}

/// Walks the model directory `root` (canonical), following symbolic links that stay inside it
/// (a Kubernetes ConfigMap or Secret volume is made of links into its own `..data` directory)
/// and refusing any other: one that resolves outside `root`, or one to a directory it is
/// already inside (a loop). With `copy_to`, copies the tree there (links replaced by what they
/// point at; other special files skipped); without, only checks it, so a copy starts only once
/// every link is known to be safe.
fn walk(root: &Path, copy_to: Option<&Path>) -> Result<(), ReloadError> {
    let io = |source| ReloadError::Copy {
        dir: root.to_path_buf(),
        source,
    };
    // (the directory as the model names it, where it really is, where it is copied to, the
    // real directories it is inside)
    let mut pending = vec![(
        root.to_path_buf(),
        root.to_path_buf(),
        copy_to.map(Path::to_path_buf),
        vec![root.to_path_buf()],
    )];
    while let Some((named, real, target, ancestors)) = pending.pop() {
        if let Some(target) = &target {
            std::fs::create_dir_all(target).map_err(io)?;
        }
        for entry in std::fs::read_dir(&real).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file_type = entry.file_type().map_err(io)?;
            let name = named.join(entry.file_name());
            let copy = target.as_ref().map(|t| t.join(entry.file_name()));
            let path = if file_type.is_symlink() {
                let resolved = std::fs::canonicalize(entry.path()).map_err(io)?;
                if !resolved.starts_with(root) {
                    return Err(ReloadError::LinkOutside {
                        link: name,
                        target: resolved,
                        dir: root.to_path_buf(),
                    });
                }
                if ancestors.contains(&resolved) {
                    return Err(ReloadError::LinkLoop {
                        link: name,
                        target: resolved,
                    });
                }
                resolved
            } else {
                entry.path()
            };
            let meta = std::fs::metadata(&path).map_err(io)?;
            if meta.is_dir() {
                let mut inside = ancestors.clone();
                inside.push(path.clone());
                pending.push((name, path, copy, inside));
            } else if meta.is_file() {
                if let Some(copy) = copy {
                    std::fs::copy(&path, copy).map_err(io)?;
                }
            }
        }
    }
    Ok(())
}

/// Moves a staged model root into its cache directory. Blocking.
fn move_into(root: &Path, dest: &Path) -> Result<(), ReloadError> {
    let cache_error = |source| ReloadError::Cache {
        dir: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest.parent().expect("cache directories have parents"))
        .map_err(cache_error)?;
    std::fs::rename(root, dest).map_err(cache_error)?;
    super::cache::sync_parent(dest).map_err(cache_error)
}

/// Removes a staging directory that is not needed.
async fn discard(staging: PathBuf) {
    let _ = on_disk(move || std::fs::remove_dir_all(staging)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    /// Stages `model` (made canonical, as `layout_of` hands it over): the staged files by
    /// path, or the error.
    fn staged_files(model: &Path) -> Result<Vec<String>, String> {
        let model = model.canonicalize().unwrap();
        let area = tempfile::tempdir().unwrap();
        let staging = area.path().join("staging");
        match stage(&model, staging.clone(), Form::Directory, 1 << 20) {
            Ok(staged) => Ok(staged.digests.into_iter().map(|d| d.path).collect()),
            Err(err) => {
                assert!(
                    !staging.exists(),
                    "nothing is left in staging after a refusal"
                );
                Err(err.to_string())
            }
        }
    }

    #[test]
    fn links_are_followed_only_inside_the_model_directory() {
        use std::os::unix::fs::symlink;
        let area = tempfile::tempdir().unwrap();
        let outside = area.path().join("elsewhere");
        write(&outside, &[("tokenizer.json", "{}"), ("lib/x", "x")]);

        // A Kubernetes ConfigMap volume: every file a link into `..data`, itself a link to the
        // directory of the current revision.
        let configmap = area.path().join("configmap");
        write(
            &configmap,
            &[
                ("..2026_12_07_10_00_00.1/MLmodel", "m"),
                ("..2026_12_07_10_00_00.1/tokenizer.json", "t"),
            ],
        );
        symlink("..2026_12_07_10_00_00.1", configmap.join("..data")).unwrap();
        symlink("..data/MLmodel", configmap.join("MLmodel")).unwrap();
        symlink("..data/tokenizer.json", configmap.join("tokenizer.json")).unwrap();
        let files = staged_files(&configmap).expect("a ConfigMap volume stages");
        assert!(
            files.contains(&"MLmodel".to_string()) && files.contains(&"tokenizer.json".to_string()),
            "{files:?}"
        );

        let file_out = area.path().join("file-out");
        write(&file_out, &[("MLmodel", "m")]);
        symlink(
            outside.join("tokenizer.json"),
            file_out.join("tokenizer.json"),
        )
        .unwrap();
        let err = staged_files(&file_out).unwrap_err();
        assert!(
            err.contains("tokenizer.json is a symbolic link to")
                && err.contains("elsewhere/tokenizer.json, outside the model directory"),
            "{err}"
        );

        let dir_out = area.path().join("dir-out");
        write(&dir_out, &[("MLmodel", "m")]);
        symlink(outside.join("lib"), dir_out.join("lib")).unwrap();
        assert!(staged_files(&dir_out)
            .unwrap_err()
            .contains("lib is a symbolic link to"));

        let looping = area.path().join("loop");
        write(&looping, &[("MLmodel", "m"), ("sub/x", "x")]);
        symlink("..", looping.join("sub/up")).unwrap();
        let err = staged_files(&looping).unwrap_err();
        assert!(
            err.contains("sub/up is a symbolic link to")
                && err.contains("a directory it is inside"),
            "{err}"
        );
    }

    #[test]
    fn staging_a_directory_copies_and_digests_it() {
        let source = tempfile::tempdir().unwrap();
        write(source.path(), &[("MLmodel", "m"), ("sub/model.onnx", "g")]);
        let area = tempfile::tempdir().unwrap();
        let staging = area.path().join("s1");
        let staged = stage(source.path(), staging.clone(), Form::Directory, 1 << 20).unwrap();
        assert_eq!(staged.root, staging);
        assert_eq!(
            std::fs::read_to_string(staging.join("sub/model.onnx")).unwrap(),
            "g"
        );
        let paths: Vec<&str> = staged.digests.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["MLmodel", "sub/model.onnx"]);

        // The same content staged again has the same digest; other content another one.
        let again = stage(
            source.path(),
            area.path().join("s2"),
            Form::Directory,
            1 << 20,
        )
        .unwrap();
        assert_eq!(again.digest, staged.digest);
        write(source.path(), &[("MLmodel", "m2")]);
        let changed = stage(
            source.path(),
            area.path().join("s3"),
            Form::Directory,
            1 << 20,
        )
        .unwrap();
        assert_ne!(changed.digest, staged.digest);
    }

    #[test]
    fn a_failed_stage_leaves_nothing_behind() {
        let area = tempfile::tempdir().unwrap();
        let staging = area.path().join("s");
        let missing = area.path().join("no-such-model");
        let error = stage(&missing, staging.clone(), Form::Directory, 1 << 20)
            .err()
            .expect("a missing directory cannot be staged");
        assert!(matches!(error, ReloadError::Copy { .. }), "{error}");
        assert!(
            error.is_transient(),
            "a directory unreadable now may be readable later"
        );
        assert!(!staging.exists());
        let error = stage(
            &missing.with_extension("zip"),
            staging.clone(),
            Form::Zip,
            1 << 20,
        )
        .err()
        .expect("a missing bundle cannot be staged");
        assert!(matches!(error, ReloadError::Bundle(_)), "{error}");
        assert!(!staging.exists());
    }

    #[test]
    fn version_names() {
        let cases = [
            ("1", Some(1)),
            ("0042", Some(42)),
            ("", None),
            (".tmp-3", None),
            ("3.partial", None),
            ("latest", None),
            ("-1", None),
            ("+2", None),
            ("99999999999999999999999", None),
        ];
        for (name, expected) in cases {
            assert_eq!(version_number(name), expected, "{name:?}");
        }
    }

    #[test]
    fn layouts() {
        let area = tempfile::tempdir().unwrap();
        let root = area.path().canonicalize().unwrap();
        let model = root.join("model");
        write(&model, &[("MLmodel", "m")]);
        assert_eq!(layout_of(&model).unwrap(), Layout::Model(model.clone()));

        let link = root.join("current");
        std::os::unix::fs::symlink(&model, &link).unwrap();
        assert_eq!(
            layout_of(&link).unwrap(),
            Layout::Model(model.clone()),
            "links are resolved"
        );

        let repo = root.join("repo");
        write(
            &repo,
            &[("1/MLmodel", "m"), ("10/MLmodel", "m"), ("2/MLmodel", "m")],
        );
        write(
            &repo,
            &[
                (".tmp-11/MLmodel", "m"),
                ("12.partial/MLmodel", "m"),
                ("13", "a file"),
            ],
        );
        std::os::unix::fs::symlink(&model, repo.join("7")).unwrap();
        assert_eq!(
            layout_of(&repo).unwrap(),
            Layout::Repository(vec![
                (10, repo.join("10")),
                (7, model.clone()),
                (2, repo.join("2")),
                (1, repo.join("1")),
            ]),
            "numbered directories only, highest first, links resolved"
        );

        let empty = root.join("empty");
        write(&empty, &[(".tmp-1/MLmodel", "m")]);
        let error = layout_of(&empty).unwrap_err();
        assert!(matches!(error, ReloadError::NoModel { .. }), "{error}");
        assert!(!error.is_transient());
    }

    fn digest(path: &str, sha256: &str) -> FileDigest {
        FileDigest {
            path: path.into(),
            size: 1,
            sha256: sha256.into(),
        }
    }

    #[test]
    fn sums() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let files = [digest("MLmodel", &a), digest("sub/model.onnx", &b)];
        let check = |sums: String, expected: Result<(), &str>| {
            assert_eq!(
                check_sums(&sums, &files),
                expected.map_err(str::to_string),
                "{sums:?}"
            );
        };
        check(format!("{a}  MLmodel\n{b}  sub/model.onnx\n"), Ok(()));
        check(format!("{a} *MLmodel\n{b}  ./sub/model.onnx"), Ok(()));
        check(format!("{}  MLmodel\n", a.to_uppercase()), Ok(()));
        check(format!("# comment\n\n{a}  MLmodel\n"), Ok(()));
        check(String::new(), Ok(()));
        check(
            format!("{b}  MLmodel\n"),
            Err("MLmodel does not match its digest in SHA256SUMS"),
        );
        check(
            format!("{a}  tokenizer.json\n"),
            Err("tokenizer.json is listed in SHA256SUMS but missing"),
        );
        check(
            "abc  MLmodel\n".into(),
            Err("SHA256SUMS line 1: expected '<sha256>  <path>'"),
        );
        check(
            format!("{a}\n"),
            Err("SHA256SUMS line 1: expected '<sha256>  <path>'"),
        );
    }

    #[test]
    fn a_copy_that_does_not_match_its_sums_is_a_mixture() {
        let source = tempfile::tempdir().unwrap();
        write(source.path(), &[("MLmodel", "new"), ("model.onnx", "old")]);
        // The sums of the version being written: MLmodel is new already, the graph not yet.
        let sums = |graph: &str| {
            use sha2::{Digest, Sha256};
            let hex = |text: &str| crate::files::hex(&Sha256::digest(text.as_bytes()));
            format!("{}  MLmodel\n{}  model.onnx\n", hex("new"), hex(graph))
        };
        write(source.path(), &[(SUMS_FILE, &sums("new graph"))]);
        let area = tempfile::tempdir().unwrap();
        let error = stage(
            source.path(),
            area.path().join("s1"),
            Form::Directory,
            1 << 20,
        )
        .err()
        .expect("a mixture is refused");
        assert!(matches!(error, ReloadError::Mixture { .. }), "{error}");
        assert!(error.is_transient(), "retried until the writer is done");
        assert!(!area.path().join("s1").exists());
        write(source.path(), &[("model.onnx", "new graph")]);
        stage(
            source.path(),
            area.path().join("s2"),
            Form::Directory,
            1 << 20,
        )
        .expect("the finished version matches its sums");
    }

    #[test]
    fn moving_into_the_cache_creates_the_model_folder() {
        let area = tempfile::tempdir().unwrap();
        let root = area.path().join("staged");
        write(&root, &[("MLmodel", "m")]);
        let dest = area.path().join("cache/local-m/abc");
        move_into(&root, &dest).unwrap();
        assert!(dest.join("MLmodel").is_file());
        assert!(!root.exists());
    }
}
