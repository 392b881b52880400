//! One real `mlflow server` for the whole test binary (SQLite backend store, proxied
//! artifacts in a temporary directory, loopback on a free port), started on first use under a
//! watchdog that stops it when the test process exits ([`super::watchdog`]), plus [`register`]
//! to put models into it with MLflow's Python client.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use tokio::sync::OnceCell;

use super::watchdog::{free_port, temp_root, watchdog, Watched};
use super::{helper, repo_root, venv};

/// A running MLflow tracking server.
pub struct MlflowServer {
    /// `http://127.0.0.1:<port>`, for `MLFLOW_TRACKING_URI`.
    pub url: String,
    /// The listening address, for proxies.
    pub addr: SocketAddr,
    /// The server under its watchdog (in a `static`, never dropped: the watchdog stops it),
    /// for its log.
    server: Watched,
}

/// Where a server keeps the artifacts of the models registered in it.
pub(super) enum Artifacts {
    /// Proxied: clients up- and download them through the server, which keeps them in its
    /// temporary directory (`--artifacts-destination`).
    Proxied,
    /// Not proxied: clients write them straight to this root themselves, e.g. `s3://...`
    /// (`--no-serve-artifacts --default-artifact-root`).
    Direct(String),
}

/// The shared server, started on first call (waiting until it is healthy).
pub async fn mlflow() -> &'static MlflowServer {
    static SERVER: OnceCell<MlflowServer> = OnceCell::const_new();
    SERVER.get_or_init(|| start(Artifacts::Proxied, &[])).await
}

/// Starts an `mlflow server` with a SQLite store in a fresh temporary directory, keeping
/// artifacts as `artifacts` says, with `env` added to its environment; waits until it is
/// healthy.
pub(super) async fn start(artifacts: Artifacts, env: &[(&str, String)]) -> MlflowServer {
    let root = temp_root("hotserve-mlflow-");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut server = Command::new(venv().join("bin/mlflow"));
    server
        .arg("server")
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}/mlflow.db", root.display()));
    match artifacts {
        Artifacts::Proxied => server
            .arg("--artifacts-destination")
            .arg(root.join("artifacts")),
        Artifacts::Direct(artifact_root) => server
            .arg("--no-serve-artifacts")
            .arg("--default-artifact-root")
            .arg(artifact_root),
    };
    server
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--workers", "1"])
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
        .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
        // MLflow caches the webhook list per event for 60 s; a test creates webhooks at run time.
        .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true");
    let mut server = watchdog(&server, root);
    server
        .wait_answering(addr, "/health", |status| status == 200)
        .await;
    MlflowServer {
        url: format!("http://{addr}"),
        addr,
        server,
    }
}

/// Runs `register.py` (beside this file) against `server` with `commands` (one JSON command or a
/// list; see the script for the operations) and returns its JSON answer. Paths in commands may
/// be relative to the repository root.
pub fn register(server: &MlflowServer, commands: serde_json::Value) -> serde_json::Value {
    register_with(server, commands, &[])
}

/// Registers the v1 fixture (`sentiment`) as version 1 of `name`, with the `champion` alias.
pub async fn register_champion(name: &str) {
    let command = serde_json::json!({"op": "register", "dir": "tests/fixtures/sentiment",
                                     "name": name, "aliases": ["champion"]});
    register(mlflow().await, command);
}

/// [`register`] with extra variables for MLflow's client (e.g. the S3 endpoint and keys it
/// uploads artifacts with when the server does not proxy them).
pub fn register_with(
    server: &MlflowServer,
    commands: serde_json::Value,
    env: &[(&str, String)],
) -> serde_json::Value {
    let python = venv().join("bin/python");
    let script = helper("register.py");
    let output = Command::new(python)
        .arg(script)
        .arg(commands.to_string())
        .current_dir(repo_root())
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .env("MLFLOW_TRACKING_URI", &server.url)
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env_remove("MLFLOW_REGISTRY_URI")
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run register.py with the virtualenv's python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "register.py {commands} failed ({}):\n{}\n{stdout}\nthe MLflow server's log ends with:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        server.server.log_tail()
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!("register.py printed something that is not JSON ({err}):\n{stdout}")
    })
}
