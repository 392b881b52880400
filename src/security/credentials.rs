//! Credentials kept in files and picked up again when the files change: the TLS certificate
//! and key ([`super::tls`]) and the API keys ([`super::keys`]). A [`Watched`] value is read
//! once at startup (a file that cannot be used then stops the daemon with a configuration
//! error) and checked again every `credentials_check_interval` and on SIGHUP by [`watch`]:
//! the files are read whole (they are small) and their SHA-256 compared with the last read,
//! which catches in-place rewrites, renames over the file and the symbolic-link swaps of
//! Kubernetes secrets and certbot alike, whatever the timestamps say. Changed content that
//! parses replaces the value at once (readers take an `Arc` of the current one); content that
//! does not keeps the previous value, logs why once, shows it in `/health` and counts it in
//! `hotserve_credential_reloads_total{result="failed"}`. A writer caught halfway (a
//! certificate written before its key) fails once and loads on the next check, since the
//! content changes again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// Why credential files could not be used. At startup the daemon stops with it; at a reload
/// the previous credentials stay in use and `/health` shows it.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A file could not be read (missing, permissions, a dangling link).
    #[error("cannot read {setting} {}: {source}; check the path and the file's permissions", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The certificate file has no `CERTIFICATE` block.
    #[error("{} holds no PEM certificate; tls_cert_file must hold the certificate chain, leaf first, as -----BEGIN CERTIFICATE----- blocks", path.display())]
    NoCertificate { path: PathBuf },
    /// The key file has no private key block.
    #[error("{} holds no PEM private key; tls_key_file must hold one PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key", path.display())]
    NoKey { path: PathBuf },
    /// A PEM block that does not decode.
    #[error("{} is not valid PEM: {why}", path.display())]
    BadPem { path: PathBuf, why: String },
    /// rustls refused the key, or the certificate does not parse, or they do not match.
    #[error("cannot use {} with {}: {why}; give tls_key_file the private key of the first certificate in tls_cert_file", key.display(), cert.display())]
    BadPair {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    /// The API keys file has no key.
    #[error("{} holds no API key; put one key per line (an empty file would refuse every request)", path.display())]
    NoApiKeys { path: PathBuf },
    /// A line of the API keys file is not one key.
    #[error("line {line} of {} {why}; put one key per line, comments after # at the start of a line", path.display())]
    BadApiKey {
        path: PathBuf,
        line: usize,
        why: &'static str,
    },
}

/// A value made from one or more files.
pub trait Credential: Send + Sync + Sized + 'static {
    /// Its name in `/health`, logs and the `file` label of the reload metric.
    const NAME: &'static str;
    /// The settings naming its files, in the order of [`Watched::paths`], for messages.
    const SETTINGS: &'static [&'static str];
    /// What it is, in words, for logs (plural: "the previous ... stay in use").
    const WHAT: &'static str;
    /// Builds the value from the files' contents, given in the order of [`Watched::paths`].
    /// Pure.
    fn parse(files: &[(PathBuf, Vec<u8>)]) -> Result<Self, CredentialError>;
    /// What `/health` shows of it (never a secret).
    type Details: serde::Serialize;
    /// Its details for `/health`.
    fn describe(&self) -> Self::Details;
}

/// What `/health` shows of a watched credential: its own details, its files, when it was
/// loaded and the last reload that failed, if the current files do not load.
#[derive(Debug, serde::Serialize)]
pub struct CredentialStatus<D> {
    #[serde(flatten)]
    pub details: D,
    pub files: Vec<String>,
    pub loaded_at: String,
    pub last_error: Option<String>,
}

/// A credential read from files and replaced when they change.
pub struct Watched<T> {
    /// The files, in the order [`Credential::parse`] takes them.
    paths: Vec<PathBuf>,
    /// The value in use.
    current: ArcSwap<T>,
    /// What the last checks found.
    state: Mutex<State>,
    /// The failure last logged, so that it is logged once.
    reported: Mutex<Option<String>>,
    /// Counts the reloads.
    metrics: Arc<Metrics>,
}

/// What the checks found, for `/health` and to skip content already seen.
struct State {
    /// The digest of the content last parsed, whether it loaded or not.
    seen: [u8; 32],
    /// Why that content is not in use; `None` when it is.
    seen_error: Option<String>,
    /// Why the last check could not read the files; `None` when it could.
    read_error: Option<String>,
    /// When the value in use was loaded.
    loaded_at: SystemTime,
}

impl State {
    /// Why the files on disk are not what is in use, if they are not.
    fn last_error(&self) -> Option<&str> {
        self.read_error.as_deref().or(self.seen_error.as_deref())
    }
}

/// What a check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The files have not changed since the last check.
    Unchanged,
    /// They changed and the new value is in use.
    Loaded,
    /// They changed (or could not be read) and the previous value stays in use.
    Failed,
}

impl<T: Credential> Watched<T> {
    /// Reads and parses the files; at startup, before anything is served. Blocking.
    pub fn load(paths: Vec<PathBuf>, metrics: Arc<Metrics>) -> Result<Watched<T>, CredentialError> {
        let files = read_all(&paths, T::SETTINGS)?;
        let value = T::parse(&files)?;
        metrics.set_credential_failing(T::NAME, false);
        Ok(Watched {
            paths,
            current: ArcSwap::from_pointee(value),
            state: Mutex::new(State {
                seen: digest(&files),
                seen_error: None,
                read_error: None,
                loaded_at: SystemTime::now(),
            }),
            reported: Mutex::new(None),
            metrics,
        })
    }

    /// The value in use.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Reads the files again and, when their content changed, replaces the value (or keeps it
    /// and records why not). The reading runs on the blocking pool.
    pub async fn check(self: &Arc<Self>) -> Checked {
        let this = self.clone();
        let read = tokio::task::spawn_blocking(move || read_all(&this.paths, T::SETTINGS))
            .await
            .unwrap_or_else(|err| {
                Err(CredentialError::Read {
                    setting: T::SETTINGS[0],
                    path: self.paths[0].clone(),
                    source: io::Error::other(err.to_string()),
                })
            });
        let checked = match read {
            // A file missing for a moment (a rename in progress) is reported, and read again
            // at the next check.
            Err(err) => {
                self.lock().read_error = Some(err.to_string());
                Checked::Failed
            }
            Ok(files) => {
                let seen = digest(&files);
                let mut state = self.lock();
                state.read_error = None;
                if state.seen == seen {
                    Checked::Unchanged
                } else {
                    state.seen = seen;
                    drop(state);
                    let parsed = T::parse(&files);
                    let mut state = self.lock();
                    match parsed {
                        Ok(value) => {
                            self.current.store(Arc::new(value));
                            state.seen_error = None;
                            state.loaded_at = SystemTime::now();
                            Checked::Loaded
                        }
                        Err(err) => {
                            state.seen_error = Some(err.to_string());
                            Checked::Failed
                        }
                    }
                }
            }
        };
        self.report(checked);
        checked
    }

    /// Metrics and one log line for a check that changed something; a reason already logged
    /// is not logged again, so a bad file is one line, not one per check.
    fn report(&self, checked: Checked) {
        let last_error = self.lock().last_error().map(str::to_string);
        self.metrics
            .set_credential_failing(T::NAME, last_error.is_some());
        let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        match (checked, last_error) {
            (Checked::Loaded, _) => {
                *reported = None;
                self.metrics
                    .credential_reloads
                    .inc(&[("file", T::NAME), ("result", "loaded")]);
                let what = serde_json::to_string(&self.current().describe()).unwrap_or_default();
                tracing::info!(credential = T::NAME, %what, "reloaded the {}", T::WHAT);
            }
            (Checked::Failed, Some(why)) if reported.as_deref() != Some(why.as_str()) => {
                self.metrics
                    .credential_reloads
                    .inc(&[("file", T::NAME), ("result", "failed")]);
                tracing::error!(
                    credential = T::NAME,
                    "{why}; the previous {} stay in use",
                    T::WHAT
                );
                *reported = Some(why);
            }
            (Checked::Unchanged, None) => *reported = None,
            _ => {}
        }
    }

    /// What `/health` shows: the value's description, when it was loaded and, while the files
    /// hold something unusable, why.
    pub fn status(&self) -> CredentialStatus<T::Details> {
        let state = self.lock();
        CredentialStatus {
            details: self.current().describe(),
            files: self.paths.iter().map(|p| p.display().to_string()).collect(),
            loaded_at: crate::model::rfc3339::format(state.loaded_at),
            last_error: state.last_error().map(str::to_string),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Something [`watch`] checks; implemented by every [`Watched`].
pub trait Check: Send + Sync {
    /// Checks the files once.
    fn check_once(self: Arc<Self>) -> futures_util::future::BoxFuture<'static, Checked>;
}

impl<T: Credential> Check for Watched<T> {
    fn check_once(self: Arc<Self>) -> futures_util::future::BoxFuture<'static, Checked> {
        Box::pin(async move { self.check().await })
    }
}

/// Checks every credential each `interval` and whenever `now` is notified (SIGHUP), until
/// `stopped` resolves.
pub async fn watch(
    credentials: Vec<Arc<dyn Check>>,
    interval: Duration,
    now: Arc<Notify>,
    stopped: impl std::future::Future<Output = ()>,
) {
    if credentials.is_empty() {
        return;
    }
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = now.notified() => {}
            _ = &mut stopped => return,
        }
        for credential in &credentials {
            credential.clone().check_once().await;
        }
    }
}

/// Reads every file whole. Blocking.
fn read_all(
    paths: &[PathBuf],
    settings: &[&'static str],
) -> Result<Vec<(PathBuf, Vec<u8>)>, CredentialError> {
    paths
        .iter()
        .zip(settings)
        .map(|(path, &setting)| {
            read_small(path)
                .map(|bytes| (path.clone(), bytes))
                .map_err(|source| CredentialError::Read {
                    setting,
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

/// Largest credential file read: far beyond any certificate chain or key list, small enough
/// that a wrong path (a log file, a device) cannot fill memory.
const MAX_FILE_BYTES: u64 = 1 << 20;

fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes; is this the right file?"
        )));
    }
    Ok(bytes)
}

/// One digest of every file's content, in order.
fn digest(files: &[(PathBuf, Vec<u8>)]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for (_, bytes) in files {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A credential made of one file of non-empty UTF-8 text.
    struct Text(String);

    impl Credential for Text {
        const NAME: &'static str = "text";
        const SETTINGS: &'static [&'static str] = &["text_file"];
        const WHAT: &'static str = "texts";

        fn parse(files: &[(PathBuf, Vec<u8>)]) -> Result<Text, CredentialError> {
            let (path, bytes) = &files[0];
            match String::from_utf8(bytes.clone()) {
                Ok(text) if !text.is_empty() => Ok(Text(text)),
                _ => Err(CredentialError::NoApiKeys { path: path.clone() }),
            }
        }

        type Details = String;

        fn describe(&self) -> String {
            self.0.clone()
        }
    }

    #[tokio::test]
    async fn changes_load_bad_content_keeps_the_value_and_each_reason_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text");
        std::fs::write(&path, "one").unwrap();
        let metrics = Arc::new(Metrics::default());
        let watched = Arc::new(Watched::<Text>::load(vec![path.clone()], metrics.clone()).unwrap());
        let failed_count = || {
            metrics
                .render()
                .lines()
                .find_map(|line| {
                    line.strip_prefix(
                        "hotserve_credential_reloads_total{file=\"text\",result=\"failed\"} ",
                    )
                })
                .map(|v| v.to_string())
        };

        // (what the file holds, what the check does, the value in use, whether an error shows)
        let steps: &[(Option<&str>, Checked, &str, bool)] = &[
            (Some("one"), Checked::Unchanged, "one", false),
            (Some("two"), Checked::Loaded, "two", false),
            (Some(""), Checked::Failed, "two", true),
            (Some(""), Checked::Unchanged, "two", true),
            (None, Checked::Failed, "two", true),
            (None, Checked::Failed, "two", true),
            (Some(""), Checked::Unchanged, "two", true),
            (Some("two"), Checked::Loaded, "two", false),
            (Some("three"), Checked::Loaded, "three", false),
        ];
        for (step, (content, checked, value, error)) in steps.iter().enumerate() {
            match content {
                Some(content) => std::fs::write(&path, content).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
            assert_eq!(watched.check().await, *checked, "step {step}");
            assert_eq!(watched.current().0, *value, "step {step}");
            let status = watched.status();
            assert_eq!(
                status.last_error.is_some(),
                *error,
                "step {step}: {status:?}"
            );
        }
        // Two failures (the empty file, the missing file), each counted and logged once
        // however many checks see it.
        assert_eq!(failed_count().as_deref(), Some("2"));
    }
}
