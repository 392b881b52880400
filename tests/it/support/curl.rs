//! curl, run as a real client of the server under test (installed by `scripts/setup.sh test`):
//! its exit code, status, HTTP version, headers and body, for `tests/it/tls.rs` and
//! `tests/it/http2.rs`.

use std::process::Command;

use super::wait::PATIENCE;

/// What curl answered: its exit code, status, HTTP version (`2`, `1.1`), headers (lowercase)
/// and body.
#[derive(Debug)]
pub struct Curled {
    pub exit: i32,
    pub status: u16,
    pub version: String,
    pub headers: String,
    pub body: String,
}

/// Runs curl with `args` and the URL, for at most [`PATIENCE`]; `-w` prints the status and
/// version after the body.
pub async fn curl(args: &[&str], url: String) -> Curled {
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time"])
        .arg(PATIENCE.as_secs().to_string())
        .args([
            "--dump-header",
            "-",
            "--write-out",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .arg(&url);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("curl runs (scripts/setup.sh test installs it)");
    let text = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
    let (answer, written) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (status, version) = written.split_once(' ').unwrap_or(("0", ""));
    let (headers, body) = answer.split_once("\n\n").unwrap_or((answer, ""));
    Curled {
        exit: output.status.code().unwrap_or(-1),
        status: status.parse().unwrap_or(0),
        version: version.to_string(),
        headers: headers.to_ascii_lowercase(),
        body: body.to_string(),
    }
}
