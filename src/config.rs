//! Configuration: one table of settings, four layers (defaults < YAML file < environment <
//! flags), and one pass that parses every value and reports *all* problems together.
//!
//! The environment is read through a closure so tests never mutate the process environment
//! (the linkerd2-proxy pattern). Every setting has a YAML key (`snake_case`), an environment
//! variable (`HOTSERVE_<KEY>` unless MLflow or ONNX Runtime already own the name) and a line of
//! help that `config/hotserve.yaml` repeats.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a raw value came from; used in error messages so users know which layer to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(path) => write!(f, "config file {}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One setting: its YAML key, its environment variable and what it means.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub help: &'static str,
}

/// Every setting hotserve knows. The YAML file, the environment and `--set key=value` accept
/// exactly these keys; anything else in the file is an error.
pub const SETTINGS: &[Setting] = &[
    Setting { key: "model_uri", env: "MODEL_URI", help: "what to serve: models:/name@alias, models:/name/3, runs:/id/path, a directory, file:// path or .zip (default: the bundled sentiment model)" },
    Setting { key: "model_name", env: "HOTSERVE_MODEL_NAME", help: "name reported for local models (default: the directory name)" },
    Setting { key: "listen", env: "HOTSERVE_LISTEN", help: "address:port of the HTTP server" },
    Setting { key: "state_dir", env: "HOTSERVE_STATE_DIR", help: "state directory (default: $STATE_DIRECTORY, else $XDG_STATE_HOME/hotserve, else ~/.local/state/hotserve)" },
    Setting { key: "cache_dir", env: "HOTSERVE_CACHE_DIR", help: "validated-model cache (default: <state_dir>/models)" },
    Setting { key: "poll_interval", env: "HOTSERVE_POLL_INTERVAL", help: "registry check period, e.g. 30s, 500ms; 0 turns polling off" },
    Setting { key: "poll_jitter", env: "HOTSERVE_POLL_JITTER", help: "random fraction added to or taken from each poll interval (0 to 0.5)" },
    Setting { key: "watch", env: "HOTSERVE_WATCH", help: "watch a local model directory and reload when it changes (true/false)" },
    Setting { key: "watch_debounce", env: "HOTSERVE_WATCH_DEBOUNCE", help: "how long a watched directory must stay unchanged before it is loaded" },
    Setting { key: "reload_policy", env: "HOTSERVE_RELOAD_POLICY", help: "availability (load new, swap, drop old) or resource (drop old first; not ready during the gap)" },
    Setting { key: "admin_token", env: "HOTSERVE_ADMIN_TOKEN", help: "bearer token for /admin/*; admin routes are off when unset" },
    Setting { key: "webhook_secret", env: "HOTSERVE_WEBHOOK_SECRET", help: "HMAC secret for /hooks/mlflow; the route is off when unset" },
    Setting { key: "log_format", env: "HOTSERVE_LOG_FORMAT", help: "text or json" },
    Setting { key: "log_level", env: "HOTSERVE_LOG_LEVEL", help: "tracing filter, e.g. info or hotserve=debug,info" },
    Setting { key: "ort_dylib_path", env: "ORT_DYLIB_PATH", help: "ONNX Runtime shared library (default: the project's .venv)" },
    Setting { key: "intra_op_threads", env: "HOTSERVE_INTRA_OP_THREADS", help: "ONNX Runtime intra-op threads per inference worker (0 = ONNX Runtime decides)" },
    Setting { key: "inference_workers", env: "HOTSERVE_INFERENCE_WORKERS", help: "inference threads, each with its own ONNX Runtime session" },
    Setting { key: "max_batch_size", env: "HOTSERVE_MAX_BATCH_SIZE", help: "most texts one inference call takes" },
    Setting { key: "max_batch_delay", env: "HOTSERVE_MAX_BATCH_DELAY", help: "how long a worker waits for a batch to fill once it has work (0 = never wait)" },
    Setting { key: "max_batch_tokens", env: "HOTSERVE_MAX_BATCH_TOKENS", help: "token budget of one batch (padded length x texts)" },
    Setting { key: "queue_capacity", env: "HOTSERVE_QUEUE_CAPACITY", help: "most texts waiting for inference; beyond it requests get 429" },
    Setting { key: "request_timeout", env: "HOTSERVE_REQUEST_TIMEOUT", help: "deadline of a prediction request; a request still queued then gets 504" },
    Setting { key: "max_body_bytes", env: "HOTSERVE_MAX_BODY_BYTES", help: "largest request body accepted (413 beyond)" },
    Setting { key: "max_batch_texts", env: "HOTSERVE_MAX_BATCH_TEXTS", help: "most texts in one request" },
    Setting { key: "max_text_bytes", env: "HOTSERVE_MAX_TEXT_BYTES", help: "longest text accepted, in UTF-8 bytes" },
    Setting { key: "max_sequence_length", env: "HOTSERVE_MAX_SEQUENCE_LENGTH", help: "tokens kept per text (longer texts are truncated); 0 = the model's metadata.max_sequence_length or 512" },
    Setting { key: "max_connections", env: "HOTSERVE_MAX_CONNECTIONS", help: "most open client connections; further ones wait to be accepted" },
    Setting { key: "header_read_timeout", env: "HOTSERVE_HEADER_READ_TIMEOUT", help: "how long a client may take to send request headers" },
    Setting { key: "drain_delay", env: "HOTSERVE_DRAIN_DELAY", help: "on SIGTERM, how long to keep serving with readiness 503 before closing the listener" },
    Setting { key: "shutdown_timeout", env: "HOTSERVE_SHUTDOWN_TIMEOUT", help: "after the drain, how long in-flight requests may take before exit" },
    Setting { key: "max_bundle_bytes", env: "HOTSERVE_MAX_BUNDLE_BYTES", help: "largest total size a .zip bundle may extract to" },
];

/// Which reload order to use when a new model version arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadPolicy {
    /// Load the new model, swap, then drop the old one (two models resident for a moment).
    Availability,
    /// Drop the old model first, then load the new one (readiness is 503 during the gap).
    Resource,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The fully parsed configuration. Built only by [`Config::load`], so every value in it has
/// been checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// What to serve, as the user wrote it (`None`: the bundled model).
    pub model_uri: Option<String>,
    /// Name reported for local models.
    pub model_name: Option<String>,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// `None` when polling is off.
    pub poll_interval: Option<Duration>,
    pub poll_jitter: f64,
    pub watch: bool,
    pub watch_debounce: Duration,
    pub reload_policy: ReloadPolicy,
    pub admin_token: Option<String>,
    pub webhook_secret: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub ort_dylib_path: Option<PathBuf>,
    pub intra_op_threads: usize,
    pub inference_workers: usize,
    pub max_batch_size: usize,
    pub max_batch_delay: Duration,
    pub max_batch_tokens: usize,
    pub queue_capacity: usize,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_batch_texts: usize,
    pub max_text_bytes: usize,
    pub max_sequence_length: usize,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    pub max_bundle_bytes: u64,
}

/// All problems found while loading configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// The raw inputs to [`Config::load`]: the parsed flags and the process environment.
pub struct Inputs<'a> {
    /// `--config <file>`, else `HOTSERVE_CONFIG`.
    pub config_file: Option<PathBuf>,
    /// Flag values as (key, flag name, value).
    pub flags: Vec<(String, String, String)>,
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Config {
    /// Reads the file (if any), the environment and the flags, and parses every setting.
    pub fn load(inputs: &Inputs<'_>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut raw: BTreeMap<&'static str, (String, Source)> = BTreeMap::new();

        let config_file = inputs
            .config_file
            .clone()
            .or_else(|| (inputs.env)("HOTSERVE_CONFIG").map(PathBuf::from));
        if let Some(path) = &config_file {
            match std::fs::read_to_string(path) {
                Ok(text) => read_yaml_layer(&text, path, &mut raw, &mut problems),
                Err(err) => problems.push(format!(
                    "cannot read config file {}: {err}; check --config / HOTSERVE_CONFIG",
                    path.display()
                )),
            }
        }
        for setting in SETTINGS {
            if let Some(value) = (inputs.env)(setting.env) {
                raw.insert(setting.key, (value, Source::Env(setting.env)));
            }
        }
        for (key, flag, value) in &inputs.flags {
            match find_setting(key) {
                Some(setting) => {
                    raw.insert(setting.key, (value.clone(), Source::Flag(flag.clone())));
                }
                None => problems.push(format!(
                    "unknown setting '{key}' in {flag}; known settings: {}",
                    known_keys()
                )),
            }
        }

        let mut parser = Parser {
            raw: &raw,
            problems: &mut problems,
        };
        let state_dir = parser
            .opt("state_dir", parse_path)
            .unwrap_or_else(|| default_state_dir(inputs.env));
        let config = Config {
            model_uri: parser.opt("model_uri", parse_nonempty),
            model_name: parser.opt("model_name", parse_nonempty),
            listen: parser.get("listen", "0.0.0.0:8080", parse_socket_addr),
            cache_dir: parser
                .opt("cache_dir", parse_path)
                .unwrap_or_else(|| state_dir.join("models")),
            state_dir,
            poll_interval: Some(parser.get("poll_interval", "30s", parse_duration))
                .filter(|d| !d.is_zero()),
            poll_jitter: parser.get("poll_jitter", "0.1", |v| parse_fraction(v, 0.5)),
            watch: parser.get("watch", "true", parse_bool),
            watch_debounce: parser.get("watch_debounce", "1s", parse_duration),
            reload_policy: parser.get("reload_policy", "availability", |v| match v {
                "availability" => Ok(ReloadPolicy::Availability),
                "resource" => Ok(ReloadPolicy::Resource),
                _ => Err("expected availability or resource".into()),
            }),
            admin_token: parser.opt("admin_token", parse_nonempty),
            webhook_secret: parser.opt("webhook_secret", parse_nonempty),
            log_format: parser.get("log_format", "text", |v| match v {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected text or json".into()),
            }),
            log_level: parser.get("log_level", "info", |v| {
                tracing_subscriber::EnvFilter::try_new(v)
                    .map(|_| v.to_string())
                    .map_err(|e| {
                        format!(
                            "not a log filter ({e}); use e.g. info, debug or hotserve=debug,info"
                        )
                    })
            }),
            ort_dylib_path: parser.opt("ort_dylib_path", parse_path),
            intra_op_threads: parser.get("intra_op_threads", "1", |v| parse_count(v, 0, 256)),
            inference_workers: parser.get("inference_workers", "2", |v| parse_count(v, 1, 64)),
            max_batch_size: parser.get("max_batch_size", "32", |v| parse_count(v, 1, 4096)),
            max_batch_delay: parser.get("max_batch_delay", "0", parse_duration),
            max_batch_tokens: parser
                .get("max_batch_tokens", "16384", |v| parse_count(v, 1, 1 << 24)),
            queue_capacity: parser.get("queue_capacity", "1024", |v| parse_count(v, 1, 1 << 20)),
            request_timeout: parser.get("request_timeout", "10s", parse_positive_duration),
            max_body_bytes: parser.get("max_body_bytes", "1048576", |v| parse_count(v, 1, 1 << 30)),
            max_batch_texts: parser.get("max_batch_texts", "256", |v| parse_count(v, 1, 1 << 20)),
            max_text_bytes: parser.get("max_text_bytes", "16384", |v| parse_count(v, 1, 1 << 26)),
            max_sequence_length: parser
                .get("max_sequence_length", "0", |v| parse_count(v, 0, 1 << 16)),
            max_connections: parser.get("max_connections", "10000", |v| parse_count(v, 1, 1 << 20)),
            header_read_timeout: parser.get("header_read_timeout", "10s", parse_positive_duration),
            drain_delay: parser.get("drain_delay", "0", parse_duration),
            shutdown_timeout: parser.get("shutdown_timeout", "30s", parse_duration),
            max_bundle_bytes: parser.get("max_bundle_bytes", "4294967296", |v| {
                v.parse::<u64>()
                    .map_err(|_| "expected a whole number of bytes".to_string())
            }),
        };
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// The default state directory: systemd's `$STATE_DIRECTORY`, else XDG's, else `~/.local/state`.
fn default_state_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = env("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd passes a colon-separated list when several StateDirectory= entries exist.
        return PathBuf::from(dir.split(':').next().unwrap_or(&dir));
    }
    if let Some(dir) = env("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("hotserve");
    }
    match env("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Path::new(&home).join(".local/state/hotserve"),
        None => PathBuf::from("/var/lib/hotserve"),
    }
}

fn find_setting(key: &str) -> Option<&'static Setting> {
    let key = key.replace('-', "_");
    SETTINGS.iter().find(|s| s.key == key)
}

fn known_keys() -> String {
    SETTINGS
        .iter()
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_yaml_layer(
    text: &str,
    path: &Path,
    raw: &mut BTreeMap<&'static str, (String, Source)>,
    problems: &mut Vec<String>,
) {
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            problems.push(format!(
                "config file {} is not valid YAML: {err}",
                path.display()
            ));
            return;
        }
    };
    let mapping = match value {
        serde_yaml::Value::Null => return,
        serde_yaml::Value::Mapping(mapping) => mapping,
        _ => {
            problems.push(format!(
                "config file {} must be a mapping of setting: value",
                path.display()
            ));
            return;
        }
    };
    for (key, value) in mapping {
        let Some(key) = key.as_str() else {
            problems.push(format!(
                "config file {}: keys must be strings",
                path.display()
            ));
            continue;
        };
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            problems.push(format!(
                "config file {}: unknown key '{key}'; known keys: {}",
                path.display(),
                known_keys()
            ));
            continue;
        };
        let text = match value {
            serde_yaml::Value::Null => continue,
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Bool(b) => b.to_string(),
            serde_yaml::Value::Number(n) => n.to_string(),
            _ => {
                problems.push(format!(
                    "config file {}: '{key}' must be a single value, not a list or mapping",
                    path.display()
                ));
                continue;
            }
        };
        raw.insert(setting.key, (text, Source::File(path.to_path_buf())));
    }
}

/// Parses raw values, recording a problem (and returning the default) for each bad one.
struct Parser<'a> {
    raw: &'a BTreeMap<&'static str, (String, Source)>,
    problems: &'a mut Vec<String>,
}

impl Parser<'_> {
    fn get<T>(
        &mut self,
        key: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        if let Some(value) = self.opt(key, &parse) {
            return value;
        }
        parse(default).expect("built-in defaults parse")
    }

    fn opt<T>(
        &mut self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (value, source) = self.raw.get(key)?;
        match parse(value.trim()) {
            Ok(parsed) => Some(parsed),
            Err(why) => {
                let shown = if key.contains("token") || key.contains("secret") {
                    "<redacted>".to_string()
                } else {
                    format!("'{value}'")
                };
                self.problems
                    .push(format!("{key} = {shown} (from {source}): {why}"));
                None
            }
        }
    }
}

fn parse_nonempty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value.to_string())
    }
}

fn parse_path(value: &str) -> Result<PathBuf, String> {
    parse_nonempty(value).map(PathBuf::from)
}

fn parse_socket_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| "expected address:port, e.g. 0.0.0.0:8080 or 127.0.0.1:9000".into())
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_count(value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

fn parse_fraction(value: &str, max: f64) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(f) if (0.0..=max).contains(&f) => Ok(f),
        _ => Err(format!("expected a number from 0 to {max}")),
    }
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `1.5s` or a bare `0`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration like 30s, 500ms, 2m or 0";
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{HINT} (the unit is missing)"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().map_err(|_| HINT.to_string())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(HINT.to_string()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| HINT.to_string())
}

/// Renders the settings table as commented YAML (`hotserve config`); the source of
/// `config/hotserve.yaml`'s comments.
pub fn describe() -> String {
    let mut out = String::new();
    for setting in SETTINGS {
        out.push_str(&format!(
            "{:<22} {:<30} {}\n",
            setting.key, setting.env, setting.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let config_file = file.map(|text| {
            let path = dir.path().join("hotserve.yaml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Config::load(&Inputs {
            config_file,
            flags: flags
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        format!("--{}", k.replace('_', "-")),
                        v.to_string(),
                    )
                })
                .collect(),
            env: &lookup,
        })
    }

    fn check_error(file: Option<&str>, env: &[(&str, &str)], expected: &[&str]) {
        let err = load(file, env, &[]).expect_err("config should be rejected");
        assert_eq!(
            err.problems.len(),
            expected.len(),
            "problems: {:#?}",
            err.problems
        );
        for (problem, want) in err.problems.iter().zip(expected) {
            assert!(
                problem.contains(want),
                "{problem:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn defaults() {
        let config = load(None, &[("HOME", "/home/u")], &[]).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.poll_interval, Some(Duration::from_secs(30)));
        assert_eq!(
            config.cache_dir,
            PathBuf::from("/home/u/.local/state/hotserve/models")
        );
        assert_eq!(config.max_body_bytes, 1 << 20);
        assert_eq!(config.model_uri, None);
        assert_eq!(config.reload_policy, ReloadPolicy::Availability);
    }

    #[test]
    fn precedence_flags_over_env_over_file_over_defaults() {
        let file = "listen: 127.0.0.1:1\npoll_interval: 5s\nmax_batch_size: 8\n";
        let env = [
            ("HOTSERVE_LISTEN", "127.0.0.1:2"),
            ("HOTSERVE_POLL_INTERVAL", "7s"),
        ];
        let config = load(Some(file), &env, &[("listen", "127.0.0.1:3")]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:3".parse().unwrap());
        assert_eq!(config.poll_interval, Some(Duration::from_secs(7)));
        assert_eq!(config.max_batch_size, 8);
    }

    #[test]
    fn state_directory_from_systemd() {
        let config = load(
            None,
            &[("STATE_DIRECTORY", "/var/lib/hotserve:/var/lib/other")],
            &[],
        )
        .unwrap();
        assert_eq!(config.cache_dir, PathBuf::from("/var/lib/hotserve/models"));
        let config = load(None, &[("HOTSERVE_CACHE_DIR", "/c")], &[]).unwrap();
        assert_eq!(config.cache_dir, PathBuf::from("/c"));
    }

    #[test]
    fn model_uri_keeps_mlflow_name() {
        let config = load(None, &[("MODEL_URI", "models:/sentiment@champion")], &[]).unwrap();
        assert_eq!(
            config.model_uri.as_deref(),
            Some("models:/sentiment@champion")
        );
    }

    #[test]
    fn poll_interval_zero_turns_polling_off() {
        let config = load(None, &[("HOTSERVE_POLL_INTERVAL", "0")], &[]).unwrap();
        assert_eq!(config.poll_interval, None);
    }

    #[test]
    fn all_errors_are_reported_together() {
        check_error(
            Some("listen: nowhere\npoll_intervall: 5s\nmax_batch_size: 0\n"),
            &[("HOTSERVE_LOG_FORMAT", "xml"), ("HOTSERVE_ADMIN_TOKEN", ""), ("HOTSERVE_LOG_LEVEL", "hotserve=loudest")],
            &[
                "unknown key 'poll_intervall'",
                "listen = 'nowhere' (from config file",
                "admin_token = <redacted> (from environment variable HOTSERVE_ADMIN_TOKEN): must not be empty",
                "log_format = 'xml' (from environment variable HOTSERVE_LOG_FORMAT): expected text or json",
                "log_level = 'hotserve=loudest' (from environment variable HOTSERVE_LOG_LEVEL): not a log filter",
                "max_batch_size = '0' (from config file",
            ],
        );
    }

    #[test]
    fn bad_files() {
        check_error(Some("- a\n- b\n"), &[], &["must be a mapping"]);
        check_error(Some("listen: [1, 2]\n"), &[], &["must be a single value"]);
        check_error(Some("listen: \"unterminated\n"), &[], &["not valid YAML"]);
    }

    #[test]
    fn unknown_flag_key() {
        let err = load(None, &[], &[("no_such", "1")]).unwrap_err();
        assert!(err.problems[0].contains("unknown setting 'no_such'"));
    }

    #[test]
    fn the_example_file_parses_and_documents_every_setting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hotserve.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        load(Some(&text), &[], &[]).expect("config/hotserve.yaml is valid");
        for setting in SETTINGS {
            assert!(
                text.contains(&format!("{}:", setting.key)),
                "config/hotserve.yaml does not document {}",
                setting.key
            );
        }
    }

    #[test]
    fn durations() {
        let cases = [
            ("30s", Some(30_000)),
            ("500ms", Some(500)),
            ("2m", Some(120_000)),
            ("1h", Some(3_600_000)),
            ("1.5s", Some(1_500)),
            ("0", Some(0)),
            ("30", None),
            ("s", None),
            ("-1s", None),
            ("3d", None),
        ];
        for (input, millis) in cases {
            let parsed = parse_duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(parsed, millis, "parse_duration({input:?})");
        }
    }
}
