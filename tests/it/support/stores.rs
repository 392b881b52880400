//! Object stores for the tests, on loopback: one `moto` S3 server for the whole test binary
//! ([`moto`], from the project's virtualenv), one azurite blob service ([`azurite`], from npm,
//! kept in the virtualenv), a second MLflow tracking server that does not proxy artifacts and
//! keeps them in moto's bucket ([`mlflow_no_proxy`]: `mlflow server --no-serve-artifacts
//! --default-artifact-root s3://...` with `MLFLOW_S3_ENDPOINT_URL`), and [`register_no_proxy`]
//! to register models in it with MLflow's own client, which writes the artifacts straight into
//! the bucket with boto3, as in production. Every server runs under [`super::watchdog`].

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use tokio::sync::OnceCell;

use super::mlflow_server::{self, register_with, Artifacts, MlflowServer};
use super::venv;
use super::watchdog::{free_port, temp_root, watchdog, Watched};

/// Credentials moto accepts (it checks none); also what the tests give hotserve.
pub const ACCESS_KEY: &str = "AKIAHOTSERVETEST";
pub const SECRET_KEY: &str = "hotserve-test-secret-key-value";
pub const REGION: &str = "us-east-1";
/// The bucket the no-proxy MLflow server keeps its artifacts in.
pub const MLFLOW_BUCKET: &str = "mlflow-artifacts";

/// A running moto S3 server.
pub struct Moto {
    /// `http://127.0.0.1:<port>`, for `MLFLOW_S3_ENDPOINT_URL`.
    pub url: String,
    /// The listening address, for fault proxies.
    pub addr: SocketAddr,
    /// Keeps the server running (in a `static`, never dropped: the watchdog stops it).
    _server: Watched,
}

/// The shared moto server, started on first call.
pub async fn moto() -> &'static Moto {
    static SERVER: OnceCell<Moto> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let port = free_port();
            let mut server = Command::new(venv().join("bin/python"));
            server.args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ]);
            let mut server = watchdog(&server, temp_root("hotserve-moto-"));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            server.wait_answering(addr, "/", |_| true).await;
            Moto {
                url: format!("http://{addr}"),
                addr,
                _server: server,
            }
        })
        .await
}

/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running azurite blob service.
pub struct Azurite {
    /// The account's blob endpoint, `http://127.0.0.1:<port>/devstoreaccount1`.
    pub endpoint: String,
    /// `AZURE_STORAGE_CONNECTION_STRING` for it.
    pub connection_string: String,
    /// Keeps the server running (in a `static`, never dropped: the watchdog stops it).
    _server: Watched,
}

/// The shared azurite blob service (from `.venv/node`, installed by `scripts/setup.sh test`),
/// in memory, started on first call.
pub async fn azurite() -> &'static Azurite {
    static SERVER: OnceCell<Azurite> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let binary = venv().join("node/node_modules/.bin/azurite-blob");
            assert!(
                binary.is_file(),
                "{} is missing; run scripts/setup.sh test first",
                binary.display()
            );
            let port = free_port();
            let mut server = Command::new(binary);
            server
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .args(["--inMemoryPersistence", "--skipApiVersionCheck"]);
            let mut server = watchdog(&server, temp_root("hotserve-azurite-"));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            server.wait_answering(addr, "/", |_| true).await;
            let endpoint = format!("http://{addr}/{AZURITE_ACCOUNT}");
            Azurite {
                connection_string: format!(
                    "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};\
                     AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
                ),
                endpoint,
                _server: server,
            }
        })
        .await
}

/// Creates `container` in azurite with Azure's own Python client; an existing one is fine.
pub async fn create_container(container: &str) {
    let connection_string = &azurite().await.connection_string;
    let script = "import sys\n\
                  from azure.core.exceptions import ResourceExistsError\n\
                  from azure.storage.blob import BlobServiceClient\n\
                  client = BlobServiceClient.from_connection_string(sys.argv[1])\n\
                  try:\n    client.create_container(sys.argv[2])\n\
                  except ResourceExistsError:\n    pass\n";
    let output = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .arg(connection_string)
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
pub async fn mlflow_no_proxy() -> &'static MlflowServer {
    static SERVER: OnceCell<MlflowServer> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let moto = moto().await;
            create_bucket(&moto.url, MLFLOW_BUCKET).await;
            let artifacts = Artifacts::Direct(format!("s3://{MLFLOW_BUCKET}/mlruns"));
            mlflow_server::start(artifacts, &s3_env(&moto.url)).await
        })
        .await
}

/// Runs `register.py` against the no-proxy server; the client uploads the artifacts into moto
/// itself.
pub async fn register_no_proxy(commands: serde_json::Value) -> serde_json::Value {
    let env = s3_env(&moto().await.url);
    register_with(mlflow_no_proxy().await, commands, &env)
}

/// Creates `bucket` on the S3 server at `endpoint` (moto checks no signature); an existing
/// bucket is fine.
pub async fn create_bucket(endpoint: &str, bucket: &str) {
    let response = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create a bucket in moto");
    let status = response.status();
    assert!(
        status == 200 || status == 409,
        "creating bucket {bucket}: {status} {}",
        response.text().await.unwrap_or_default()
    );
}
