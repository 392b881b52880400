//! Every setting hotserve knows, declared once: field type, environment variable, optional
//! dedicated flag, default, parser, secrecy and help. The `Config` struct, the `SETTINGS`
//! table, the parsing in `Config::load`, the command-line flags, `hotserve settings` and the
//! checks on `config/hotserve.yaml` all come from this list (see `declare.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::declare::settings;
use super::fleet::{LoadMode, MemoryBudget};
use super::models::{parse_model, parse_model_name, ModelSpec};
use super::parse::ReloadPolicy;
use super::parse::{
    parse_bool, parse_bytes, parse_count, parse_duration, parse_execution_providers,
    parse_fraction, parse_interval, parse_log_filter, parse_nonempty, parse_path,
    parse_positive_duration, parse_positive_size, parse_socket_addr,
};
use super::payload::{parse_max_bytes, parse_sample, PayloadLogTo, PayloadPolicy};
use super::promotion::{Guard, Overrides, Promotion};
use crate::model::providers::ExecutionProviders;

settings! {
    /// The fully parsed configuration. Built only by [`Config::load`], so every value in it
    /// has been checked.
    #[derive(Clone, Debug)]
    pub struct Config {
        // --- What to serve -------------------------------------------------------------
        /// `None`: the bundled model.
        model_uri: Option<String> {
            env: "MODEL_URI",
            flag: "--model-uri=URI",
            parse: parse_nonempty,
            help: "what to serve: models:/name@alias, models:/name/3, runs:/id/path, s3://bucket/path (also gs://, wasbs://), a directory, file:// path or .zip (default: the bundled sentiment model)",
        },
        model_name: Option<String> {
            env: "HOTSERVE_MODEL_NAME",
            parse: parse_nonempty,
            help: "name of the model_uri model: reported for a local model, used in /models/<name>/ and the model label (default: the registered or directory name)",
        },
        /// Empty: one model, from `model_uri`.
        models: Vec<ModelSpec> {
            env: "HOTSERVE_MODELS",
            flag: "--model=NAME=URI",
            list: true,
            parse: parse_model,
            help: "several models, NAME=URI each (comma-separated; the flag repeats; in YAML a list of {name, uri, poll_interval, reload_policy, load, pin, promotion, shadow_*, payload_log*}); not with model_uri",
        },
        /// `None`: the first of `models`.
        default_model: Option<String> {
            env: "HOTSERVE_DEFAULT_MODEL",
            parse: parse_model_name,
            help: "the model /predict, /predict/batch, /invocations, /v1/model and /ping serve (default: the first of models)",
        },

        // --- HTTP --------------------------------------------------------------------------
        listen: SocketAddr {
            env: "HOTSERVE_LISTEN",
            flag: "--listen=ADDR",
            default: "0.0.0.0:8080",
            parse: parse_socket_addr,
            help: "address:port of the HTTP server",
        },
        /// `None`: no gRPC listener.
        grpc_listen: Option<SocketAddr> {
            env: "HOTSERVE_GRPC_LISTEN",
            flag: "--grpc-listen=ADDR",
            parse: parse_socket_addr,
            help: "address:port of the gRPC server (the Open Inference Protocol's inference.GRPCInferenceService; conventionally 0.0.0.0:8081); off when unset",
        },
        tls_cert_file: Option<PathBuf> {
            env: "HOTSERVE_TLS_CERT_FILE",
            parse: parse_path,
            help: "PEM certificate chain, leaf first: serve HTTPS (with tls_key_file); reloaded when it changes",
        },
        tls_key_file: Option<PathBuf> {
            env: "HOTSERVE_TLS_KEY_FILE",
            parse: parse_path,
            help: "PEM private key of tls_cert_file (PKCS#8, PKCS#1 or SEC1); reloaded when it changes",
        },
        api_keys_file: Option<PathBuf> {
            env: "HOTSERVE_API_KEYS_FILE",
            parse: parse_path,
            help: "API keys, one per line (# comments): the model routes then need Authorization: Bearer <key>; reloaded when it changes",
        },
        auth_health: bool {
            env: "HOTSERVE_AUTH_HEALTH",
            default: "false",
            parse: parse_bool,
            help: "with api_keys_file, also require a key on /health, /health/*, /ping, /models/<name>/ready and /version",
        },
        auth_metrics: bool {
            env: "HOTSERVE_AUTH_METRICS",
            default: "false",
            parse: parse_bool,
            help: "with api_keys_file, also require a key on /metrics",
        },
        credentials_check_interval: Duration {
            env: "HOTSERVE_CREDENTIALS_CHECK_INTERVAL",
            default: "10s",
            parse: parse_positive_duration,
            help: "how often the TLS files and api_keys_file are read again for changes (and on SIGHUP)",
        },

        // --- Files -------------------------------------------------------------------------
        state_dir: PathBuf {
            env: "HOTSERVE_STATE_DIR",
            derived: default_state_dir,
            parse: parse_path,
            help: "state directory (default: $STATE_DIRECTORY, else $XDG_STATE_HOME/hotserve, else ~/.local/state/hotserve)",
        },
        cache_dir: PathBuf {
            env: "HOTSERVE_CACHE_DIR",
            flag: "--cache-dir=DIR",
            // `state_dir` is the setting above, already parsed.
            derived: |_env| state_dir.join("models"),
            parse: parse_path,
            help: "validated-model cache (default: <state_dir>/models): one folder per model source, locked by the process that serves it",
        },
        /// `None`: unbounded (each source keeps its newest five versions).
        cache_max_bytes: Option<u64> {
            env: "HOTSERVE_CACHE_MAX_BYTES",
            flag: "--cache-max-bytes=SIZE",
            parse: parse_positive_size,
            help: "bound on the cached versions of every model together, e.g. 20GiB or 500MB: the least recently used are removed, never a live or last known good one (default: unbounded)",
        },

        // --- Registry and hot reload -------------------------------------------------------
        /// `None` when polling is off.
        poll_interval: Option<Duration> {
            env: "HOTSERVE_POLL_INTERVAL",
            flag: "--poll-interval=DURATION",
            default: "30s",
            parse: parse_interval,
            help: "registry check period, e.g. 30s, 500ms; 0 turns polling off",
        },
        poll_jitter: f64 {
            env: "HOTSERVE_POLL_JITTER",
            default: "0.1",
            parse: |value| parse_fraction(value, 0.5),
            help: "random fraction added to or taken from each poll interval (0 to 0.5)",
        },
        watch: bool {
            env: "HOTSERVE_WATCH",
            default: "true",
            parse: parse_bool,
            help: "watch a local model directory and reload when it changes (true/false)",
        },
        watch_debounce: Duration {
            env: "HOTSERVE_WATCH_DEBOUNCE",
            default: "1s",
            parse: parse_duration,
            help: "how long a watched directory must stay unchanged before it is loaded",
        },
        reload_policy: ReloadPolicy {
            env: "HOTSERVE_RELOAD_POLICY",
            default: "availability",
            parse: ReloadPolicy::parse,
            help: "availability (load new, swap, drop old) or resource (drop old first; not ready during the gap)",
        },
        /// `None`: no discovery.
        discover_filter: Option<String> {
            env: "HOTSERVE_DISCOVER_FILTER",
            flag: "--discover-filter=FILTER",
            parse: parse_nonempty,
            help: "serve every registered model matching this MLflow search_registered_models filter (e.g. tags.serve = 'true', name LIKE 'fraud-%'; * for all), each at the version discover_alias points to, followed at poll_interval and on webhooks; in YAML discover: {filter, alias}",
        },
        discover_alias: String {
            env: "HOTSERVE_DISCOVER_ALIAS",
            flag: "--discover-alias=ALIAS",
            default: "champion",
            parse: parse_nonempty,
            help: "the alias whose version a discovered model serves; a model without it is not served",
        },
        load: LoadMode {
            env: "HOTSERVE_LOAD",
            default: "eager",
            parse: LoadMode::parse,
            help: "when a model is loaded into memory: eager (at start and with every new version) or lazy (downloaded and validated ahead, loaded on its first request); a model's own load overrides it",
        },
        /// `None`: unbounded.
        memory_budget: Option<MemoryBudget> {
            env: "HOTSERVE_MEMORY_BUDGET",
            parse: MemoryBudget::parse,
            help: "memory the loaded models may take together, e.g. 4GiB, or auto (0.7 of the cgroup memory limit); the least recently used idle models are unloaded to load another, and load again on their next request",
        },
        admin_token: Option<String> {
            env: "HOTSERVE_ADMIN_TOKEN",
            parse: parse_nonempty,
            secret: true,
            help: "bearer token for /admin/*; admin routes are off when unset",
        },
        webhook_secret: Option<String> {
            env: "HOTSERVE_WEBHOOK_SECRET",
            parse: parse_nonempty,
            secret: true,
            help: "HMAC secret for /hooks/mlflow; the route is off when unset",
        },

        // --- Safe promotion (each may be overridden per model in `models`) -----------------
        promotion: super::promotion::Mode {
            env: "HOTSERVE_PROMOTION",
            default: "immediate",
            parse: super::promotion::Mode::parse,
            help: "immediate (a version that passes the gate goes live) or shadow (it is first compared with the live model on copies of live requests)",
        },
        shadow_fraction: f64 {
            env: "HOTSERVE_SHADOW_FRACTION",
            default: "1",
            parse: super::promotion::parse_share,
            help: "share of live requests copied to the candidate in shadow (0 to 1; copies run only on idle inference capacity)",
        },
        shadow_min_requests: u64 {
            env: "HOTSERVE_SHADOW_MIN_REQUESTS",
            default: "200",
            parse: super::promotion::parse_requests,
            help: "requests the candidate must have been compared on before it may be promoted",
        },
        shadow_min_duration: Duration {
            env: "HOTSERVE_SHADOW_MIN_DURATION",
            default: "1m",
            parse: parse_duration,
            help: "how long the candidate is compared at least",
        },
        shadow_max_duration: Duration {
            env: "HOTSERVE_SHADOW_MAX_DURATION",
            default: "30m",
            parse: parse_positive_duration,
            help: "when the comparison ends whatever the traffic (too few requests by then: refused)",
        },
        shadow_min_agreement: f64 {
            env: "HOTSERVE_SHADOW_MIN_AGREEMENT",
            default: "0.95",
            parse: super::promotion::parse_share,
            help: "share of predictions on which the candidate must agree with the live model (same label; tensor outputs within shadow_tolerance)",
        },
        shadow_max_latency_ratio: f64 {
            env: "HOTSERVE_SHADOW_MAX_LATENCY_RATIO",
            default: "1.5",
            parse: super::promotion::parse_ratio,
            help: "largest allowed candidate inference time over the live model's on the same inputs",
        },
        shadow_tolerance: f64 {
            env: "HOTSERVE_SHADOW_TOLERANCE",
            default: "0.001",
            parse: super::promotion::parse_tolerance,
            help: "tensor models: largest difference between two outputs that still agree (relative beyond 1)",
        },
        report_to_registry: bool {
            env: "HOTSERVE_REPORT_TO_REGISTRY",
            default: "false",
            parse: parse_bool,
            help: "tag registry versions with what hotserve did (hotserve.<instance_name>.status: live, shadow, refused, rolled_back; .reason; .at); needs EDIT permission on the registered model",
        },
        instance_name: String {
            env: "HOTSERVE_INSTANCE_NAME",
            derived: super::promotion::default_instance_name,
            parse: parse_nonempty,
            help: "this replica's name in registry tags (default: $HOSTNAME, else hotserve)",
        },
        guard_window: Duration {
            env: "HOTSERVE_GUARD_WINDOW",
            default: "0",
            parse: parse_duration,
            help: "after a swap, how long the previous version stays resident while the new one is watched (0: no guard; not with reload_policy resource)",
        },
        guard_max_error_rate: f64 {
            env: "HOTSERVE_GUARD_MAX_ERROR_RATE",
            default: "0.01",
            parse: super::promotion::parse_share,
            help: "within guard_window, the share of failed inference jobs beyond which the previous version is swapped back",
        },
        guard_max_latency_ratio: f64 {
            env: "HOTSERVE_GUARD_MAX_LATENCY_RATIO",
            default: "2",
            parse: super::promotion::parse_ratio,
            help: "within guard_window, the p99 inference time over the previous version's beyond which it is swapped back",
        },

        // --- Logs --------------------------------------------------------------------------
        log_format: LogFormat {
            env: "HOTSERVE_LOG_FORMAT",
            flag: "--log-format=FORMAT",
            default: "text",
            parse: LogFormat::parse,
            help: "text or json",
        },
        log_level: String {
            env: "HOTSERVE_LOG_LEVEL",
            default: "info",
            parse: parse_log_filter,
            help: "tracing filter, e.g. info or hotserve=debug,info",
        },
        access_log: AccessLogTo {
            env: "HOTSERVE_ACCESS_LOG",
            default: "off",
            parse: AccessLogTo::parse,
            help: "one line per request: off, log (with the daemon's log output, target hotserve::access) or a file path (JSON lines, appended)",
        },
        payload_log: PayloadLogTo {
            env: "HOTSERVE_PAYLOAD_LOG",
            flag: "--payload-log=URL",
            default: "off",
            parse: PayloadLogTo::parse,
            help: "a request and a response record per sampled prediction: off, a file path or file:///path (JSON lines, rotated by size) or an http(s):// URL (CloudEvents in binary mode, as KServe's logger posts them); per model too",
        },
        payload_log_sample: f64 {
            env: "HOTSERVE_PAYLOAD_LOG_SAMPLE",
            default: "1",
            parse: parse_sample,
            help: "the share of predictions payload_log records, from 0 to 1, decided once per request; per model too",
        },
        payload_log_inputs: bool {
            env: "HOTSERVE_PAYLOAD_LOG_INPUTS",
            default: "true",
            parse: parse_bool,
            help: "whether payload_log's request records carry the inputs (false for data that must not be stored); per model too",
        },
        payload_log_max_bytes: u64 {
            env: "HOTSERVE_PAYLOAD_LOG_MAX_BYTES",
            default: "104857600",
            parse: parse_max_bytes,
            help: "a payload_log file is rotated (x.jsonl to x.jsonl.1, ...) before it grows past this many bytes",
        },
        payload_log_max_files: usize {
            env: "HOTSERVE_PAYLOAD_LOG_MAX_FILES",
            default: "5",
            parse: |value| parse_count(value, 1, 1000),
            help: "files a payload_log file and its rotated copies make at most (the oldest is deleted)",
        },
        payload_log_queue: usize {
            env: "HOTSERVE_PAYLOAD_LOG_QUEUE",
            default: "16384",
            parse: |value| parse_count(value, 1, 1_000_000),
            help: "predictions waiting for a payload_log sink at most (and 64 MiB of their data); past it, while the sink is slow or down, records are dropped and counted in hotserve_payload_log_dropped_total",
        },

        // --- Inference pool and batching ---------------------------------------------------
        ort_dylib_path: Option<PathBuf> {
            env: "ORT_DYLIB_PATH",
            parse: parse_path,
            help: "ONNX Runtime shared library (default: the project's .venv)",
        },
        execution_providers: ExecutionProviders {
            env: "HOTSERVE_EXECUTION_PROVIDERS",
            default: "cpu",
            parse: parse_execution_providers,
            help: "where the sessions run, in order: cpu, cuda, tensorrt, a device as cuda:1 (default device 0); e.g. cuda,cpu runs on GPU 0 and falls back to the CPU with a warning when it cannot; without cpu a model that cannot start on them is refused",
        },
        intra_op_threads: usize {
            env: "HOTSERVE_INTRA_OP_THREADS",
            default: "1",
            parse: |value| parse_count(value, 0, 256),
            help: "ONNX Runtime intra-op threads per inference worker (0 = ONNX Runtime decides)",
        },
        inference_workers: usize {
            env: "HOTSERVE_INFERENCE_WORKERS",
            default: "2",
            parse: |value| parse_count(value, 1, 64),
            help: "inference threads, each with its own ONNX Runtime session",
        },
        share_weights: bool {
            env: "HOTSERVE_SHARE_WEIGHTS",
            default: "true",
            parse: parse_bool,
            help: "build a model's sessions on one optimized copy of its weights instead of one copy per inference worker (a graph that cannot be shared loads one copy per worker, with a warning)",
        },
        adaptive_pool: bool {
            env: "HOTSERVE_ADAPTIVE_POOL",
            default: "true",
            parse: parse_bool,
            help: "run a batch that is alone (the one prediction in progress, no other worker computing) on one extra session per model that uses every worker's cores: a lone request as fast as one session with all threads, the per-worker layout under load",
        },
        prepack_weights: bool {
            env: "HOTSERVE_PREPACK_WEIGHTS",
            default: "true",
            parse: parse_bool,
            help: "let ONNX Runtime prepack the weights for its kernels: a lone short request on one thread almost twice as fast (MiniLM), full batches a few percent, one more copy of the weights per model, shared by its sessions with share_weights (per session where ONNX Runtime cannot share it, and without share_weights)",
        },
        max_batch_size: usize {
            env: "HOTSERVE_MAX_BATCH_SIZE",
            default: "32",
            parse: |value| parse_count(value, 1, 4096),
            help: "most texts one inference call takes",
        },
        max_batch_delay: Duration {
            env: "HOTSERVE_MAX_BATCH_DELAY",
            default: "0",
            parse: parse_duration,
            help: "how long a worker waits for a batch to fill once it has work (0 = never wait)",
        },
        max_batch_tokens: usize {
            env: "HOTSERVE_MAX_BATCH_TOKENS",
            default: "16384",
            parse: |value| parse_count(value, 1, 1 << 24),
            help: "token budget of one batch (padded length x texts)",
        },
        queue_capacity: usize {
            env: "HOTSERVE_QUEUE_CAPACITY",
            default: "1024",
            parse: |value| parse_count(value, 1, 1 << 20),
            help: "most texts waiting for inference; beyond it requests get 429",
        },

        // --- Requests and connections ------------------------------------------------------
        request_timeout: Duration {
            env: "HOTSERVE_REQUEST_TIMEOUT",
            default: "10s",
            parse: parse_positive_duration,
            help: "deadline of a prediction request; a request still queued then gets 504",
        },
        max_body_bytes: usize {
            env: "HOTSERVE_MAX_BODY_BYTES",
            default: "1048576",
            parse: |value| parse_count(value, 1, 1 << 30),
            help: "largest request body accepted (413 beyond)",
        },
        max_batch_texts: usize {
            env: "HOTSERVE_MAX_BATCH_TEXTS",
            default: "256",
            parse: |value| parse_count(value, 1, 1 << 20),
            help: "most texts in one request",
        },
        max_text_bytes: usize {
            env: "HOTSERVE_MAX_TEXT_BYTES",
            default: "16384",
            parse: |value| parse_count(value, 1, 1 << 26),
            help: "longest text accepted, in UTF-8 bytes",
        },
        max_sequence_length: usize {
            env: "HOTSERVE_MAX_SEQUENCE_LENGTH",
            default: "0",
            parse: |value| parse_count(value, 0, 1 << 16),
            help: "tokens kept per text (longer texts are truncated); 0 = the model's metadata.max_sequence_length or 512",
        },
        max_connections: usize {
            env: "HOTSERVE_MAX_CONNECTIONS",
            default: "10000",
            parse: |value| parse_count(value, 1, 1 << 20),
            help: "most open client connections; further ones wait to be accepted",
        },
        header_read_timeout: Duration {
            env: "HOTSERVE_HEADER_READ_TIMEOUT",
            default: "10s",
            parse: parse_positive_duration,
            help: "how long a client may take to send request headers",
        },
        keep_alive_timeout: Duration {
            env: "HOTSERVE_KEEP_ALIVE_TIMEOUT",
            default: "5s",
            parse: parse_positive_duration,
            help: "how long a connection may stay idle while none of its requests is being handled before it is closed (HTTP/1: no bytes moved; HTTP/2: no request started or ended)",
        },
        max_header_bytes: usize {
            env: "HOTSERVE_MAX_HEADER_BYTES",
            default: "32768",
            parse: |value| parse_count(value, 1024, 1 << 20),
            help: "largest request line and headers accepted, in bytes (431; HTTP/1 also closes the connection)",
        },
        max_headers: usize {
            env: "HOTSERVE_MAX_HEADERS",
            default: "100",
            parse: |value| parse_count(value, 1, 1024),
            help: "most header fields in a request (431; HTTP/1 also closes the connection)",
        },

        // --- Lifecycle ---------------------------------------------------------------------
        drain_delay: Duration {
            env: "HOTSERVE_DRAIN_DELAY",
            default: "0",
            parse: parse_duration,
            help: "on SIGTERM, how long to keep serving with readiness 503 before closing the listener",
        },
        shutdown_timeout: Duration {
            env: "HOTSERVE_SHUTDOWN_TIMEOUT",
            default: "30s",
            parse: parse_duration,
            help: "after the drain, how long in-flight requests may take before exit",
        },
        max_bundle_bytes: u64 {
            env: "HOTSERVE_MAX_BUNDLE_BYTES",
            default: "4294967296",
            parse: parse_bytes,
            help: "largest total size a .zip bundle may extract to",
        },
    }
}

/// The problems across the TLS and authentication settings: a certificate without its key
/// (or the reverse), `auth_health` or `auth_metrics` without `api_keys_file`.
pub(super) fn check_security(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(_), None) => problems.push(
            "tls_cert_file is set but tls_key_file is not; set both to serve HTTPS, or neither"
                .to_string(),
        ),
        (None, Some(_)) => problems.push(
            "tls_key_file is set but tls_cert_file is not; set both to serve HTTPS, or neither"
                .to_string(),
        ),
        _ => {}
    }
    for (key, on) in [
        ("auth_health", config.auth_health),
        ("auth_metrics", config.auth_metrics),
    ] {
        if on && config.api_keys_file.is_none() {
            problems.push(format!(
                "{key} is true but api_keys_file is not set; set api_keys_file, or leave {key} false"
            ));
        }
    }
    problems
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

/// Where the access log goes (`access_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTo {
    Off,
    /// With the daemon's log output.
    Log,
    /// JSON lines appended to this file.
    File(PathBuf),
}

impl AccessLogTo {
    fn parse(value: &str) -> Result<AccessLogTo, String> {
        match value {
            "off" => Ok(AccessLogTo::Off),
            "log" => Ok(AccessLogTo::Log),
            "" => Err("expected off, log or a file path".into()),
            path => Ok(AccessLogTo::File(PathBuf::from(path))),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn parse(value: &str) -> Result<LogFormat, String> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

impl Config {
    /// The payload logging of the model configured as `name` (its `models` entry over the
    /// daemon-wide settings); `None` when it logs nothing (off, or a sample of 0).
    pub fn payload_for(&self, name: &str) -> Option<PayloadPolicy> {
        let own = self
            .models
            .iter()
            .find(|model| model.name == name)
            .map(|model| &model.payload);
        let to = own
            .and_then(|o| o.to.clone())
            .unwrap_or_else(|| self.payload_log.clone());
        let sample = own
            .and_then(|o| o.sample)
            .unwrap_or(self.payload_log_sample);
        let inputs = own
            .and_then(|o| o.inputs)
            .unwrap_or(self.payload_log_inputs);
        (to != PayloadLogTo::Off && sample > 0.0).then_some(PayloadPolicy { to, sample, inputs })
    }

    /// One model's promotion settings: the daemon-wide ones with its `overrides` on top.
    pub fn promotion_for(&self, overrides: &Overrides) -> Promotion {
        Promotion {
            mode: overrides.mode.unwrap_or(self.promotion),
            fraction: overrides.fraction.unwrap_or(self.shadow_fraction),
            min_requests: overrides.min_requests.unwrap_or(self.shadow_min_requests),
            min_duration: overrides.min_duration.unwrap_or(self.shadow_min_duration),
            max_duration: overrides.max_duration.unwrap_or(self.shadow_max_duration),
            min_agreement: overrides.min_agreement.unwrap_or(self.shadow_min_agreement),
            max_latency_ratio: overrides
                .max_latency_ratio
                .unwrap_or(self.shadow_max_latency_ratio),
            tolerance: overrides.tolerance.unwrap_or(self.shadow_tolerance),
            guard: Guard {
                window: overrides.guard_window.unwrap_or(self.guard_window),
                max_error_rate: overrides
                    .guard_max_error_rate
                    .unwrap_or(self.guard_max_error_rate),
                max_latency_ratio: overrides
                    .guard_max_latency_ratio
                    .unwrap_or(self.guard_max_latency_ratio),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{describe, DefaultValue, Inputs, Setting, SETTINGS};
    use super::Config;

    fn each_setting(check: impl Fn(&Setting)) {
        assert!(SETTINGS.len() >= 30, "the table lost settings");
        for setting in SETTINGS {
            check(setting);
        }
    }

    #[test]
    fn environment_variables_are_hotserve_key_unless_owned_by_mlflow_or_ort() {
        each_setting(|setting| {
            let expected = match setting.key {
                "model_uri" => "MODEL_URI".to_string(),
                "ort_dylib_path" => "ORT_DYLIB_PATH".to_string(),
                key => format!("HOTSERVE_{}", key.to_ascii_uppercase()),
            };
            assert_eq!(
                setting.env, expected,
                "environment variable of {}",
                setting.key
            );
        });
    }

    #[test]
    fn every_literal_default_parses() {
        each_setting(|setting| {
            if let DefaultValue::Literal(text) = setting.default {
                assert_eq!(
                    (setting.validate)(text),
                    Ok(()),
                    "default of {}",
                    setting.key
                );
            }
        });
    }

    #[test]
    fn keys_are_unique_snake_case() {
        each_setting(|setting| {
            let snake = setting
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_');
            assert!(snake, "{} is not snake_case", setting.key);
            let count = SETTINGS.iter().filter(|s| s.key == setting.key).count();
            assert_eq!(count, 1, "{} is declared once", setting.key);
        });
    }

    #[test]
    fn secrets_are_the_token_and_the_webhook_secret() {
        let secrets: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.key)
            .collect();
        assert_eq!(secrets, ["admin_token", "webhook_secret"]);
        for key in secrets {
            let env = |name: &str| {
                (name == format!("HOTSERVE_{}", key.to_ascii_uppercase())).then(String::new)
            };
            let err = Config::load(&Inputs {
                config_file: None,
                flags: Vec::new(),
                env: &env,
                variables: Vec::new(),
            })
            .expect_err("an empty secret is rejected");
            assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
            assert!(
                err.problems[0].starts_with(&format!("{key} = <redacted> ")),
                "{:?}",
                err.problems
            );
        }
    }

    #[test]
    fn settings_output_lists_every_key_once() {
        let output = describe();
        each_setting(|setting| {
            let lines: Vec<&str> = output
                .lines()
                .filter(|line| line.split_whitespace().next() == Some(setting.key))
                .collect();
            assert_eq!(
                lines.len(),
                1,
                "hotserve settings lists {} once",
                setting.key
            );
            assert!(lines[0].contains(setting.env) && lines[0].contains(setting.help));
        });
    }

    /// The settings `config/hotserve.yaml` documents: `key: value` lines are active (and must
    /// show the default), `# key: example` lines are commented out.
    fn documented(text: &str) -> Vec<(String, bool, String)> {
        let mut found = Vec::new();
        for line in text.lines() {
            let (active, rest) = match line.strip_prefix("# ") {
                Some(rest) => (false, rest),
                None if line.starts_with('#') => continue,
                None => (true, line),
            };
            let Some((key, value)) = rest.split_once(": ") else {
                continue;
            };
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                found.push((key.to_string(), active, value.trim().to_string()));
            }
        }
        found
    }

    #[test]
    fn the_example_file_documents_exactly_the_declared_settings() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hotserve.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let env = |_: &str| None;
        Config::load(&Inputs {
            config_file: Some(path),
            flags: Vec::new(),
            env: &env,
            variables: Vec::new(),
        })
        .expect("config/hotserve.yaml is valid");

        let documented = documented(&text);
        let mut keys: Vec<&str> = documented.iter().map(|(key, _, _)| key.as_str()).collect();
        keys.sort();
        let mut declared: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        declared.sort();
        assert_eq!(
            keys, declared,
            "config/hotserve.yaml documents each declared key once"
        );

        for (key, active, value) in &documented {
            let setting = SETTINGS.iter().find(|s| s.key == key).unwrap();
            match setting.default {
                DefaultValue::Literal(default) => {
                    assert!(active, "{key} has a default; show it as an active line");
                    assert_eq!(
                        value, default,
                        "config/hotserve.yaml shows the default of {key}"
                    );
                }
                DefaultValue::Derived | DefaultValue::Unset => {
                    assert!(
                        !active,
                        "{key} has no literal default; show an example commented out"
                    );
                }
            }
        }
    }

    #[test]
    fn tls_and_auth_settings_are_checked_together() {
        let check = |flags: &[(&str, &str)], expected: &[&str]| {
            let env = |_: &str| None;
            let problems = match Config::load(&Inputs {
                config_file: None,
                flags: flags
                    .iter()
                    .map(|(k, v)| (k.to_string(), format!("--set {k}"), v.to_string()))
                    .collect(),
                env: &env,
                variables: Vec::new(),
            }) {
                Ok(_) => Vec::new(),
                Err(err) => err.problems,
            };
            assert_eq!(problems, expected);
        };
        check(&[], &[]);
        check(&[("tls_cert_file", "/c"), ("tls_key_file", "/k")], &[]);
        check(
            &[("tls_cert_file", "/c")],
            &["tls_cert_file is set but tls_key_file is not; set both to serve HTTPS, or neither"],
        );
        check(
            &[("tls_key_file", "/k")],
            &["tls_key_file is set but tls_cert_file is not; set both to serve HTTPS, or neither"],
        );
        check(
            &[
                ("api_keys_file", "/a"),
                ("auth_health", "true"),
                ("auth_metrics", "true"),
            ],
            &[],
        );
        check(
            &[("tls_key_file", "/k"), ("auth_metrics", "true"), ("max_connections", "0")],
            &[
                "max_connections = '0' (from flag --set max_connections): expected a whole number from 1 to 1048576",
                "tls_key_file is set but tls_cert_file is not; set both to serve HTTPS, or neither",
                "auth_metrics is true but api_keys_file is not set; set api_keys_file, or leave auth_metrics false",
            ],
        );
    }

    #[test]
    fn documented_lines() {
        let text = "listen: 0.0.0.0:8080\n# model_uri: models:/m@a\n# models:/<name>@<alias>\n# Unset: no\n#key: x\n";
        assert_eq!(
            documented(text),
            [
                ("listen".to_string(), true, "0.0.0.0:8080".to_string()),
                ("model_uri".to_string(), false, "models:/m@a".to_string()),
            ]
        );
    }
}
