//! The harness every integration test shares: hotserve in the test process ([`inprocess`], the
//! default) or as the real binary ([`hotserve`], where the process is the point: signals, exit
//! codes, logs, debug failpoints), both looked at the same way ([`probe`]: `/health`,
//! readiness, metrics); waiting for conditions instead of sleeping ([`wait`]); one real MLflow
//! tracking server for the whole test binary ([`mlflow_server`]), registering models in it
//! with MLflow's own Python client (`register.py`) and a fault-injecting HTTP proxy to put in
//! front of it ([`fault_proxy`]); object stores: an S3 server and an MLflow server that keeps
//! its artifacts there without proxying them ([`stores`]); every server that is a process of
//! its own tied to the test process ([`watchdog`]); and curl as a client ([`curl`]).
//!
//! The Python helpers live beside this file ([`helper`]): `register.py`, one HTTPS request
//! with Python's `ssl` module (`tls_client.py`), and the official Open Inference Protocol
//! clients (`triton_http.py`, `tritonclient_grpc.py`).

pub mod curl;
pub mod fault_proxy;
pub mod hotserve;
pub mod inprocess;
pub mod mlflow_server;
pub mod probe;
pub mod stores;
pub mod wait;
pub mod watchdog;

use std::path::{Path, PathBuf};

pub use fault_proxy::{Fault, FaultProxy};
pub use mlflow_server::{mlflow, register, register_champion};
pub use probe::{closed_for, get_json, health, health_until, metric, metric_reaches, Served};
pub use wait::{eventually, Wait, LOADING, PATIENCE};

/// The repository root (`CARGO_MANIFEST_DIR`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture model directory under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// A Python helper beside this file (`register.py`, `tls_client.py`, ...), to run with the
/// virtualenv's `python` ([`venv`]).
pub fn helper(name: &str) -> PathBuf {
    repo_root().join("tests/it/support").join(name)
}

/// The project's virtualenv, which holds `mlflow`, `python` and the test tools; panics with the
/// fix when it is missing.
pub fn venv() -> PathBuf {
    let venv = repo_root().join(".venv");
    assert!(
        venv.join("bin/mlflow").is_file(),
        "{} has no MLflow; run scripts/setup.sh test first",
        venv.display()
    );
    venv
}

/// Copies the files of the flat directory `from` (a model) into `to`, created if needed.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("read a directory entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy a file");
    }
}

/// Every file under `dir` as (relative path, size), sorted: what a model directory holds.
pub fn list_dir(dir: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).expect("read a directory") {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((relative, path.metadata().unwrap().len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
