//! Servers the tests run as processes of their own (MLflow's tracking server, `mlflow models
//! serve`, moto, azurite), each tied to the test process by a small shell watchdog
//! ([`watchdog`]).
//!
//! A server kept in a `static` is never dropped, so it cannot be stopped from a `Drop`. Instead
//! it runs under the watchdog in a process group of its own: the watchdog polls the test
//! process and, once it is gone (ended or killed), terminates the whole group (the server and
//! its workers) and removes the server's temporary directory. No server outlives the tests.
//! A [`Watched`] that is dropped stops its server at once.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::wait::{eventually, Wait, LOADING};

/// The watchdog: runs its arguments as the server, with output to `$ROOT/server.log`, and
/// waits for the test process (`$PARENT`) or the server to end; then stops the group, removes
/// `$ROOT` and ends itself. It ignores TERM (set after the server is forked, so the server does
/// not inherit it) so that it survives signalling its own group and can clean up.
const SCRIPT: &str = r#"
    "$@" >"$ROOT/server.log" 2>&1 </dev/null &
    child=$!
    trap '' TERM
    while kill -0 "$PARENT" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
    kill -TERM -$$ 2>/dev/null
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$child" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$child" 2>/dev/null
    rm -rf "$ROOT"
    kill -KILL -$$ 2>/dev/null
"#;

/// A server running under [`watchdog`]; dropping it stops the server.
pub struct Watched {
    /// The watchdog shell; its process group holds the server and its workers.
    shell: Child,
    /// The server's temporary directory, with its `server.log`; the watchdog removes it.
    root: PathBuf,
}

/// Starts `server` under a watchdog that keeps it tied to the test process. `root` is the
/// server's temporary directory (its `server.log` goes there), removed when the server stops.
/// The server never inherits the test's `MLFLOW_TRACKING_URI`.
pub fn watchdog(server: &Command, root: PathBuf) -> Watched {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(SCRIPT)
        .arg("sh")
        .arg(server.get_program())
        .args(server.get_args());
    for (key, value) in server.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    let shell = shell
        .env("ROOT", &root)
        .env("PARENT", std::process::id().to_string())
        .env_remove("MLFLOW_TRACKING_URI")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn a test server's watchdog (sh)");
    Watched { shell, root }
}

impl Watched {
    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        tail(&self.root)
    }

    /// Waits until the server answers `GET path` on `addr` with a status that `accepted`
    /// allows; fails with the end of its log after [`LOADING`], or at once if it stops.
    pub async fn wait_answering(
        &mut self,
        addr: SocketAddr,
        path: &str,
        accepted: impl Fn(u16) -> bool,
    ) {
        let root = self.root.clone();
        let wait = Wait::new(format!("{addr}{path} to answer"))
            .within(LOADING)
            .logs(|| tail(&root));
        eventually(wait, async || {
            if let Ok(Some(status)) = self.shell.try_wait() {
                panic!(
                    "the server for {addr} stopped ({status}); its log ends with:\n{}",
                    tail(&root)
                );
            }
            match status_of(addr, path).await {
                Ok(status) if accepted(status) => Ok(()),
                Ok(status) => Err(format!("HTTP {status}")),
                Err(err) => Err(err),
            }
        })
        .await
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // The watchdog ignores TERM; it sees its server gone, cleans up and ends itself.
        let group = format!("-{}", self.shell.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.shell.wait();
    }
}

/// A temporary directory for a server, kept (the watchdog removes it).
pub fn temp_root(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory for a test server")
        .keep()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

/// The last 30 lines of the server's log under `root`.
fn tail(root: &Path) -> String {
    let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The status of one `GET path` (HTTP/1.0) to `addr`, or why there was none.
async fn status_of(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| "no answer within 2 s".to_string())?
        .map_err(|err| err.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("not HTTP: {:?}", answer.lines().next().unwrap_or("")))
}
