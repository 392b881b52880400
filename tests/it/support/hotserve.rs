//! Starts the real `hotserve` binary on an ephemeral loopback port and talks to it. For tests
//! where the process is the point: signals, exit codes, `resolve` and `validate`, its log
//! lines, and the debug failpoints, which read the process environment. Everything else runs
//! in the test process (`support::inprocess`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use super::probe::{self, Served};
use super::wait::{eventually, Wait, LOADING};

/// A running hotserve process; killed on drop.
pub struct Hotserve {
    /// The process; behind a lock so that a wait can look whether it exited.
    child: Mutex<Child>,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// Keeps the per-test cache directory alive.
    _cache: tempfile::TempDir,
}

/// How to start hotserve.
#[derive(Default, Clone)]
pub struct Start {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A cache directory to share between runs (default: a fresh one per process).
    pub cache_dir: Option<PathBuf>,
}

impl Start {
    pub fn model(uri: impl AsRef<Path>) -> Start {
        Start::default()
            .arg("--model-uri")
            .arg(uri.as_ref().to_str().expect("utf-8 path"))
    }

    pub fn arg(mut self, arg: &str) -> Start {
        self.args.push(arg.to_string());
        self
    }

    pub fn set(self, key: &str, value: &str) -> Start {
        self.arg("--set").arg(&format!("{key}={value}"))
    }

    pub fn cache(mut self, dir: &Path) -> Start {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Start {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the binary and waits until it has bound its listener.
    pub fn spawn(self) -> Hotserve {
        let cache = tempfile::tempdir().expect("temp dir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_hotserve"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--cache-dir")
            .arg(self.cache_dir.as_deref().unwrap_or(cache.path()))
            .args(&self.args)
            .env_remove("MODEL_URI")
            .env("HOTSERVE_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start hotserve");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let reader = {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = listen_addr(&line) {
                        let _ = addr_tx.send(addr);
                    }
                    logs.lock().unwrap().push(line);
                }
            })
        };
        let addr = match addr_rx.recv_timeout(LOADING) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // The process is gone, so its stderr ends: every line has been read then.
                let _ = reader.join();
                panic!(
                    "hotserve did not start listening within {LOADING:?}; logs:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Hotserve {
            child: Mutex::new(child),
            addr,
            logs,
            _cache: cache,
        }
    }
}

/// Finds `"listen":"127.0.0.1:PORT"` in a JSON log line.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.pointer("/fields/listen")?.as_str()?.parse().ok()
}

impl Hotserve {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// The process's resident memory (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        probe::ready(self).await
    }

    /// Sends a signal with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit and returns how it did.
    pub async fn exited(&self) -> ExitStatus {
        let wait = Wait::new("hotserve to exit").logs(|| self.logs());
        eventually(wait, async || {
            self.child.lock().unwrap().try_wait().ok().flatten()
        })
        .await
    }
}

impl Served for Hotserve {
    fn url(&self, path: &str) -> String {
        Hotserve::url(self, path)
    }

    fn logs(&self) -> String {
        Hotserve::logs(self)
    }

    fn stopped(&self) -> Option<String> {
        let status = self.child.lock().unwrap().try_wait().ok()??;
        Some(format!("the process exited: {status}"))
    }

    fn tls(&self) -> bool {
        false
    }
}

impl Drop for Hotserve {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs the binary to completion (for `resolve`, `validate`); returns (exit code, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hotserve"));
    command
        .args(args)
        .env_remove("MODEL_URI")
        .env_remove("MLFLOW_TRACKING_URI")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run hotserve");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
