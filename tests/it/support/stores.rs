//! Object stores for the tests, on loopback: one `moto` S3 server per test binary
//! ([`moto`], from the project's virtualenv), one azurite blob service ([`azurite`], from npm,
//! kept in the virtualenv), a second MLflow tracking server that does not
//! proxy artifacts and keeps them in moto's bucket ([`mlflow_no_proxy`]: `mlflow server
//! --no-serve-artifacts --default-artifact-root s3://...` with `MLFLOW_S3_ENDPOINT_URL`), and
//! [`register_no_proxy`] to register models in it with MLflow's own client, which writes the
//! artifacts straight into the bucket with boto3, as in production.
//!
//! Both servers run under the same kind of shell watchdog as the shared MLflow server
//! (`mlflow_server.rs`): in their own process group, stopped and cleaned up once the test
//! process is gone.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::mlflow_server::{free_port, register_with, MlflowServer};
use super::venv;

/// Credentials moto accepts (it checks none); also what the tests give hotserve.
pub const ACCESS_KEY: &str = "AKIAHOTSERVETEST";
pub const SECRET_KEY: &str = "hotserve-test-secret-key-value";
pub const REGION: &str = "us-east-1";
/// The bucket the no-proxy MLflow server keeps its artifacts in.
pub const MLFLOW_BUCKET: &str = "mlflow-artifacts";

/// How long a server may take to listen.
const STARTUP_DEADLINE: Duration = Duration::from_secs(90);

/// A running moto S3 server.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:<port>`, for `MLFLOW_S3_ENDPOINT_URL`.
    pub url: String,
    /// The listening address, for fault proxies.
    pub addr: SocketAddr,
}

/// The shared moto server, started on first call.
pub fn moto() -> &'static Moto {
    static SERVER: OnceLock<Moto> = OnceLock::new();
    SERVER.get_or_init(|| {
        let port = free_port();
        let python = venv().join("bin/python");
        let root = temp_root("hotserve-moto-");
        watchdog(
            &format!(
                "\"{}\" -m moto.server -H 127.0.0.1 -p {port}",
                python.display()
            ),
            &root,
            &[],
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(addr, &root);
        Moto {
            url: format!("http://{addr}"),
            addr,
        }
    })
}

/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running azurite blob service.
#[derive(Debug)]
pub struct Azurite {
    /// The account's blob endpoint, `http://127.0.0.1:<port>/devstoreaccount1`.
    pub endpoint: String,
    /// `AZURE_STORAGE_CONNECTION_STRING` for it.
    pub connection_string: String,
}

/// The shared azurite blob service (from `.venv/node`, installed by `scripts/setup.sh test`),
/// in memory, started on first call.
pub fn azurite() -> &'static Azurite {
    static SERVER: OnceLock<Azurite> = OnceLock::new();
    SERVER.get_or_init(|| {
        let binary = venv().join("node/node_modules/.bin/azurite-blob");
        assert!(
            binary.is_file(),
            "{} is missing; run scripts/setup.sh test first",
            binary.display()
        );
        let port = free_port();
        let root = temp_root("hotserve-azurite-");
        watchdog(
            &format!(
                "\"{}\" --blobHost 127.0.0.1 --blobPort {port} --inMemoryPersistence \
                 --skipApiVersionCheck",
                binary.display()
            ),
            &root,
            &[],
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(addr, &root);
        let endpoint = format!("http://{addr}/{AZURITE_ACCOUNT}");
        Azurite {
            connection_string: format!(
                "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};\
                 AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
            ),
            endpoint,
        }
    })
}

/// Creates `container` in azurite with Azure's own Python client; an existing one is fine.
pub fn create_container(container: &str) {
    let script = "import sys\n\
                  from azure.core.exceptions import ResourceExistsError\n\
                  from azure.storage.blob import BlobServiceClient\n\
                  client = BlobServiceClient.from_connection_string(sys.argv[1])\n\
                  try:\n    client.create_container(sys.argv[2])\n\
                  except ResourceExistsError:\n    pass\n";
    let output = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .arg(&azurite().connection_string)
        .arg(container)
        .stdin(Stdio::null())
        .output()
        .expect("run python to create an Azure container");
    assert!(
        output.status.success(),
        "creating container {container}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The environment hotserve (and MLflow's client) need to reach `endpoint` as S3.
pub fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MLFLOW_S3_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ("AWS_DEFAULT_REGION", REGION.to_string()),
        // Never ask an instance metadata service: nothing leaves loopback.
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ]
}

/// The MLflow server without an artifact proxy, its artifacts in `s3://mlflow-artifacts/`.
pub fn mlflow_no_proxy() -> &'static MlflowServer {
    static SERVER: OnceLock<MlflowServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let moto = moto();
        create_bucket(&moto.url, MLFLOW_BUCKET);
        let root = temp_root("hotserve-mlflow-s3-");
        let port = free_port();
        let mlflow = venv().join("bin/mlflow");
        let command = format!(
            "\"{}\" server --backend-store-uri \"sqlite:///{}/mlflow.db\" --no-serve-artifacts \
             --default-artifact-root s3://{MLFLOW_BUCKET}/mlruns --host 127.0.0.1 --port {port} \
             --workers 1",
            mlflow.display(),
            root.display()
        );
        let mut env: Vec<(&str, String)> = s3_env(&moto.url);
        env.extend([
            ("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false".to_string()),
            ("MLFLOW_DISABLE_TELEMETRY", "true".to_string()),
            ("DO_NOT_TRACK", "true".to_string()),
        ]);
        watchdog(&command, &root, &env);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_listening(addr, &root);
        MlflowServer {
            url: format!("http://{addr}"),
            addr,
        }
    })
}

/// Runs `register.py` against the no-proxy server; the client uploads the
/// artifacts into moto itself.
pub fn register_no_proxy(commands: serde_json::Value) -> serde_json::Value {
    register_with(mlflow_no_proxy(), commands, &s3_env(&moto().url))
}

/// Creates `bucket` on the S3 server at `endpoint` (moto checks no signature); an existing
/// bucket is fine.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let addr = endpoint.trim_start_matches("http://");
    let answer = http(
        addr,
        &format!("PUT /{bucket} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
    )
    .expect("create a bucket in moto");
    assert!(
        answer.starts_with("HTTP/1.1 200")
            || answer.starts_with("HTTP/1.0 200")
            || answer.contains(" 409 "),
        "creating bucket {bucket}: {}",
        answer.lines().next().unwrap_or("")
    );
}

/// One raw HTTP/1.0 exchange with `addr`; the whole answer.
fn http(addr: &str, request: &str) -> std::io::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

fn temp_root(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory for a test server")
        .keep()
}

/// Starts `command` under a watchdog that stops its process group and removes `root` once
/// the test process is gone; output goes to `root/server.log`.
// The watchdog is never waited for: it outlives this process on purpose, to clean up after it.
#[allow(clippy::zombie_processes)]
fn watchdog(command: &str, root: &std::path::Path, env: &[(&str, String)]) {
    let script = format!(
        r#"
        {command} >"$ROOT/server.log" 2>&1 </dev/null &
        child=$!
        trap '' TERM
        while kill -0 "$PARENT" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
        kill -TERM -$$ 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$child" 2>/dev/null
        rm -rf "$ROOT"
        kill -KILL -$$ 2>/dev/null
    "#
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("ROOT", root)
        .env("PARENT", std::process::id().to_string())
        .env_remove("MLFLOW_TRACKING_URI")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn a test server watchdog (sh)");
}

/// Waits until something accepts connections on `addr` (and answers `GET /` for HTTP).
fn wait_listening(addr: SocketAddr, root: &std::path::Path) {
    let started = Instant::now();
    loop {
        let request = format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        if http(&addr.to_string(), &request).is_ok_and(|answer| answer.starts_with("HTTP/")) {
            return;
        }
        if started.elapsed() > STARTUP_DEADLINE {
            let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
            panic!("no server on {addr} within {STARTUP_DEADLINE:?}; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
