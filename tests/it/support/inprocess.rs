//! Runs hotserve inside the test process: [`Start`] builds a [`Config`] the way the binary's
//! `--set key=value` flags would, binds `127.0.0.1:0` and calls `hotserve::app::run` with a
//! oneshot as its shutdown future. Use it whenever the process itself is not what a test is
//! about (signals, exit codes, log lines and debug failpoints need `support::hotserve`).
//!
//! The server's environment is a closure over the variables the test gave with
//! [`Start::env`]; the process environment is never read, except `ORT_DYLIB_PATH`, which
//! says where ONNX Runtime is. Each server gets a fresh cache directory and its own tokio
//! runtime on its own thread, as in the binary: a test that blocks its own runtime cannot
//! stall the server, and `run` (whose borrowed `env` closure makes its future `!Send`) is
//! driven by `block_on` rather than `tokio::spawn`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use hotserve::app::StartError;
use hotserve::config::{Config, ConfigError, Inputs};
use hotserve::reload::Triggers;
use tokio::sync::oneshot;

use super::probe::{self, Served};

/// How to start an in-process server; a builder like `support::hotserve::Start`.
#[derive(Default, Clone)]
pub struct Start {
    /// Settings as `(key, value)`, passed as `--set key=value` flags; later ones win.
    settings: Vec<(String, String)>,
    /// The variables the server's environment closure answers (`MLFLOW_*`, `NOTIFY_SOCKET`).
    env: HashMap<String, String>,
    /// A cache directory shared between servers (default: a fresh one per server).
    cache_dir: Option<PathBuf>,
    /// Also serve gRPC, on a listener of its own on `127.0.0.1:0`.
    grpc: bool,
}

/// A running in-process server. Dropping it shuts the server down without waiting;
/// [`Server::stop`] shuts it down and returns what `run` returned.
pub struct Server {
    /// The address the server listens on (`127.0.0.1`, an ephemeral port).
    pub addr: SocketAddr,
    /// The gRPC listener's address, when [`Start::grpc`] asked for one.
    pub grpc_addr: Option<SocketAddr>,
    /// The server's triggers: `triggers.request(..)` asks for a reload check.
    pub triggers: Triggers,
    /// Whether it serves HTTPS (`tls_cert_file` was set): [`Server::url`] says `https://`.
    pub tls: bool,
    /// Resolves `run`'s shutdown future when sent or dropped.
    shutdown: Option<oneshot::Sender<()>>,
    /// The thread driving `run`; it returns `run`'s result.
    thread: Option<JoinHandle<Result<(), StartError>>>,
}

impl Start {
    /// A server for `uri` (a model directory, a `.zip` or `models:/...`).
    pub fn model(uri: impl AsRef<Path>) -> Start {
        let uri = uri.as_ref().to_str().expect("a UTF-8 model URI");
        Start::default().set("model_uri", uri)
    }

    /// One setting, as `--set key=value` gives it.
    pub fn set(mut self, key: &str, value: &str) -> Start {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    /// One variable of the server's environment.
    pub fn env(mut self, key: &str, value: &str) -> Start {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    /// Also serves gRPC (`Server::grpc_addr`).
    pub fn grpc(mut self) -> Start {
        self.grpc = true;
        self
    }

    /// Uses `dir` as the model cache instead of a fresh directory.
    pub fn cache(mut self, dir: &Path) -> Start {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// The configuration the server would run with, its state and cache under `state_dir`
    /// (unless [`Start::cache`] named another cache).
    pub fn config(&self, state_dir: &Path) -> Result<Config, ConfigError> {
        let state_dir = state_dir.to_str().expect("a UTF-8 temporary directory");
        let cache_dir = match &self.cache_dir {
            Some(dir) => dir.to_str().expect("a UTF-8 cache directory").to_string(),
            None => state_dir.to_string(),
        };
        let defaults = [
            ("listen", "127.0.0.1:0"),
            ("state_dir", state_dir),
            ("cache_dir", cache_dir.as_str()),
        ];
        let flags = defaults
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .chain(self.settings.iter().cloned())
            .map(|(key, value)| (key.clone(), format!("--set {key}"), value))
            .collect();
        let env = environment(self.env.clone());
        Config::load(&Inputs {
            config_file: None,
            flags,
            env: &env,
            variables: Vec::new(),
        })
    }

    /// Starts the server and returns once it listens (the model may still be loading).
    pub fn start(self) -> Server {
        let state = tempfile::tempdir().expect("a temporary state directory");
        let config = match self.config(state.path()) {
            Ok(config) => config,
            Err(err) => panic!("the test's configuration is invalid: {err}"),
        };
        // Bound here, so the address is known before the server runs; registered with the
        // server's own runtime on its thread.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the listener's address");
        let grpc_listener = self.grpc.then(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener
                .set_nonblocking(true)
                .expect("a non-blocking listener");
            listener
        });
        let grpc_addr = grpc_listener
            .as_ref()
            .map(|l| l.local_addr().expect("the gRPC listener's address"));
        let triggers = Triggers::default();
        let tls = config.tls_cert_file.is_some();
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        let server_triggers = triggers.clone();
        let env = self.env;
        let thread = std::thread::Builder::new()
            .name(format!("hotserve-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .thread_name("hotserve-io")
                    .build()
                    .expect("a tokio runtime for the server");
                let result = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the listener with the server's runtime");
                    let grpc = grpc_listener.map(|listener| {
                        tokio::net::TcpListener::from_std(listener)
                            .expect("register the gRPC listener with the server's runtime")
                    });
                    let listeners = hotserve::app::Listeners {
                        http: listener,
                        grpc,
                    };
                    let env = environment(env);
                    // A dropped sender (the test ended) is a shutdown too.
                    let shutdown = async move {
                        let _ = shutdown_requested.await;
                    };
                    hotserve::app::run(config, listeners, &env, server_triggers, shutdown).await
                });
                // As in the binary: blocking threads may still hold a tokenization; don't wait.
                runtime.shutdown_timeout(Duration::from_secs(1));
                drop(state);
                result
            })
            .expect("start the server's thread");
        Server {
            addr,
            grpc_addr,
            triggers,
            tls,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Starts the server and waits until `/health/ready` answers 200.
    pub async fn ready(self) -> Server {
        let server = self.start();
        server.wait_ready().await;
        server
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// `http://<gRPC address>`, for a gRPC client; panics unless [`Start::grpc`] was used.
    pub fn grpc_url(&self) -> String {
        let addr = self
            .grpc_addr
            .expect("the server was started with Start::grpc()");
        format!("http://{addr}")
    }

    /// Waits until `/health/ready` answers 200; fails if `run` returns first.
    pub async fn wait_ready(&self) {
        probe::ready(self).await
    }

    /// Asks `run` to shut down and returns its result once it has.
    pub async fn stop(mut self) -> Result<(), StartError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let thread = self
            .thread
            .take()
            .expect("the server thread is joined once");
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .expect("join the server thread")
            .expect("the server thread panicked")
    }
}

impl Served for Server {
    fn url(&self, path: &str) -> String {
        Server::url(self, path)
    }

    fn logs(&self) -> String {
        "(in the test process: its log lines are not captured)".into()
    }

    fn stopped(&self) -> Option<String> {
        let finished = self
            .thread
            .as_ref()
            .is_none_or(|thread| thread.is_finished());
        finished.then(|| "`run` returned; `Server::stop` returns its result".into())
    }

    fn tls(&self) -> bool {
        self.tls
    }
}

/// The server's environment: the test's variables, and `ORT_DYLIB_PATH` from the process.
fn environment(vars: HashMap<String, String>) -> impl Fn(&str) -> Option<String> {
    move |name| match vars.get(name) {
        Some(value) => Some(value.clone()),
        None if name == "ORT_DYLIB_PATH" => std::env::var(name).ok(),
        None => None,
    }
}
