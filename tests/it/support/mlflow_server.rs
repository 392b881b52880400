//! One real `mlflow server` per test binary (SQLite backend store, proxied artifacts in a
//! temporary directory, loopback on a free port), started on first use and stopped when the
//! test process exits, plus [`register`] to put models into it with MLflow's Python client.
//!
//! A `static` is never dropped, so the server cannot be stopped from a `Drop`. Instead it runs
//! under a small shell watchdog in its own process group: the watchdog polls the test process
//! and, once it is gone, terminates the whole group (the `mlflow` CLI and its uvicorn worker)
//! and removes the temporary directory. No server outlives the tests.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{helper, repo_root, venv};

/// How long the server may take to answer `/health` (it usually takes 5-15 s).
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// A running MLflow tracking server.
#[derive(Debug)]
pub struct MlflowServer {
    /// `http://127.0.0.1:<port>`, for `MLFLOW_TRACKING_URI`.
    pub url: String,
    /// The listening address, for proxies.
    pub addr: SocketAddr,
}

/// The shared server, started on first call (blocking until it is healthy).
pub fn mlflow() -> &'static MlflowServer {
    static SERVER: OnceLock<MlflowServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

// The watchdog is never waited for: it outlives this process on purpose, to clean up after it.
#[allow(clippy::zombie_processes)]
fn start() -> MlflowServer {
    let mlflow = venv().join("bin/mlflow");
    let root = tempfile::Builder::new()
        .prefix("hotserve-mlflow-")
        .tempdir()
        .expect("create a temporary directory for the MLflow server")
        .keep();
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // The watchdog ignores TERM itself (set after the server is forked, so the server does
    // not inherit it) so that it survives signalling its own group and can clean up.
    let watchdog = r#"
        "$MLFLOW" server \
            --backend-store-uri "sqlite:///$ROOT/mlflow.db" \
            --artifacts-destination "$ROOT/artifacts" \
            --host 127.0.0.1 --port "$PORT" --workers 1 \
            >"$ROOT/server.log" 2>&1 </dev/null &
        child=$!
        trap '' TERM
        while kill -0 "$PARENT" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
        kill -TERM -$$ 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$child" 2>/dev/null
        rm -rf "$ROOT"
        kill -KILL -$$ 2>/dev/null
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(watchdog)
        .env("MLFLOW", &mlflow)
        .env("ROOT", &root)
        .env("PORT", port.to_string())
        .env("PARENT", std::process::id().to_string())
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .env("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
        .env("MLFLOW_WEBHOOK_ALLOWED_SCHEMES", "http,https")
        // MLflow caches the webhook list per event for 60 s; a test creates webhooks at run time.
        .env("MLFLOW_WEBHOOK_CACHE_TTL", "1")
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn the MLflow server watchdog (sh)");

    let started = Instant::now();
    while !healthy(addr) {
        if started.elapsed() > STARTUP_DEADLINE {
            let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the MLflow server did not become healthy on {addr} within {STARTUP_DEADLINE:?}; \
                 its log ends with:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    MlflowServer {
        url: format!("http://{addr}"),
        addr,
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

/// True once `GET /health` answers 200.
fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// Runs `register.py` (beside this file) against `server` with `commands` (one JSON command or a
/// list; see the script for the operations) and returns its JSON answer. Paths in commands may
/// be relative to the repository root.
pub fn register(server: &MlflowServer, commands: serde_json::Value) -> serde_json::Value {
    register_with(server, commands, &[])
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
        "register.py {commands} failed ({}):\n{}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| {
        panic!("register.py printed something that is not JSON ({err}):\n{stdout}")
    })
}
