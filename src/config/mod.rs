//! Configuration: every setting declared once, four layers (defaults < YAML file <
//! environment < flags), and one pass that parses every value and reports *all* problems
//! together.
//!
//! The declaration is the `settings!` list in `settings.rs`. Each entry names the `Config`
//! field and its type, the environment variable, an optional dedicated flag, the default, the
//! parser, whether the value is secret, and one line of help. A declarative macro
//! (`declare.rs`) generates from it the `Config` struct, the [`SETTINGS`] table and the code
//! that parses raw values into a `Config`; the command-line flags (`flags.rs`), `hotserve
//! settings` ([`describe`]) and the checks on `config/hotserve.yaml` read the table. We chose
//! the macro over a table plus a cross-checking test because the key *is* the field name:
//! there is no second spelling of it to keep in sync, so a mistyped key cannot compile rather
//! than merely failing a test. The tests that remain check what the compiler cannot: the
//! environment variable names, that every default parses, the flags, and that the example
//! file documents exactly the declared keys.
//!
//! The environment is read through a closure so tests never mutate the process environment
//! (the linkerd2-proxy pattern). Unknown keys in the file or in `--set`, unknown fields of a
//! model and unknown `HOTSERVE_*` variables are errors, each with the nearest known name
//! (`suggest.rs`); the variables Kubernetes injects for a Service named `hotserve`
//! (`HOTSERVE_PORT`, `HOTSERVE_SERVICE_HOST`, ...) and those of the project's own scripts are
//! not settings and are let through. Every model's URI is parsed in the same pass
//! (`checks::sources`), so a bad `MODEL_URI` is reported with everything else.

mod checks;
mod declare;
pub mod flags;
pub mod fleet;
mod models;
mod parse;
pub mod payload;
pub mod promotion;
mod settings;
mod suggest;

use std::fmt;
use std::path::{Path, PathBuf};

pub use declare::{DefaultValue, Item, Setting};
pub use fleet::{LoadMode, MemoryBudget};
pub use models::ModelSpec;
pub use parse::parse_duration;
pub use parse::ReloadPolicy;
pub use payload::{PayloadLogTo, PayloadPolicy};
pub use settings::{AccessLogTo, Config, LogFormat, SETTINGS};

use declare::{Raw, RawValues};

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
    /// The names of the environment variables that are set: a `HOTSERVE_*` one that is no
    /// setting is an error (see [`unknown_variables`]).
    pub variables: Vec<String>,
}

impl Config {
    /// Reads the file (if any), the environment and the flags, and parses every setting.
    pub fn load(inputs: &Inputs<'_>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut raw = RawValues::new();

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
        problems.extend(unknown_variables(&inputs.variables, inputs.env));
        for setting in SETTINGS {
            if let Some(value) = (inputs.env)(setting.env) {
                raw.insert(setting.key, (Raw::Text(value), Source::Env(setting.env)));
            }
        }
        for (key, flag, value) in &inputs.flags {
            match find_setting(key) {
                Some(setting) => {
                    let value = match raw.get(setting.key) {
                        // A list's flags add up: `--model a=x --model b=y`.
                        Some((Raw::Text(earlier), Source::Flag(_))) if setting.list => {
                            format!("{earlier},{value}")
                        }
                        _ => value.clone(),
                    };
                    raw.insert(setting.key, (Raw::Text(value), Source::Flag(flag.clone())));
                }
                None => problems.push(format!(
                    "unknown setting '{key}' in {flag}{}",
                    suggest::hint(&key.replace('-', "_"), keys(), EVERY_KEY)
                )),
            }
        }

        let config = Config::from_raw(&raw, inputs.env, &mut problems);
        problems.extend(checks::models(&config));
        problems.extend(checks::sources(&config, inputs.env));
        problems.extend(settings::check_security(&config));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Intra-op threads of each model's all-cores session (`adaptive_pool`): every worker's
    /// threads, at most the machine's cores; 0 when there is no such session (adaptive pool
    /// off, one worker, or `intra_op_threads: 0`, where each session already uses every core).
    pub fn all_cores_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (self.inference_workers * self.intra_op_threads).min(cores);
        if self.adaptive_pool && self.intra_op_threads > 0 && threads > self.intra_op_threads {
            threads
        } else {
            0
        }
    }
}

/// Renders the settings table for `hotserve settings`: key, environment variable, default
/// and help, one setting a line, in declaration order.
pub fn describe() -> String {
    let mut out = format!(
        "{:<20} {:<29} {:<13} {}\n",
        "KEY", "ENVIRONMENT", "DEFAULT", "MEANING"
    );
    for setting in SETTINGS {
        let default = match setting.default {
            DefaultValue::Literal(text) => text,
            DefaultValue::Derived => "(derived)",
            DefaultValue::Unset => "(unset)",
        };
        let flag = match setting.flag {
            Some(flag) => format!("; flag {flag}"),
            None => String::new(),
        };
        out.push_str(&format!(
            "{:<20} {:<29} {:<13} {}{flag}\n",
            setting.key, setting.env, default, setting.help
        ));
    }
    out.push_str(
        "\nPrecedence: flags > environment > config file (--config or HOTSERVE_CONFIG) > \
         defaults. Any key can be set with --set key=value.\n",
    );
    out
}

/// The declared setting for a `--set` key, which may be written with dashes.
fn find_setting(key: &str) -> Option<&'static Setting> {
    let key = key.replace('-', "_");
    SETTINGS.iter().find(|s| s.key == key)
}

fn is_secret(key: &str) -> bool {
    SETTINGS.iter().any(|s| s.key == key && s.secret)
}

fn keys() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|s| s.key)
}

/// What an unknown name's message ends with when no known name is near it.
const EVERY_KEY: &str = "`hotserve settings` lists every setting";

/// Variables named `HOTSERVE_*` that are not settings, nor set by Kubernetes or the project's
/// own scripts, with the nearest setting's variable.
fn unknown_variables(variables: &[String], env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut unknown: Vec<&String> = variables
        .iter()
        .filter(|name| {
            name.starts_with("HOTSERVE_")
                && !is_known_variable(name, &env(name).unwrap_or_default())
        })
        .collect();
    unknown.sort();
    unknown
        .into_iter()
        .map(|name| {
            // Compared without the prefix they all share, which would make any two look alike.
            let settings = SETTINGS
                .iter()
                .filter_map(|s| s.env.strip_prefix("HOTSERVE_"));
            let hint = match suggest::nearest(&name["HOTSERVE_".len()..], settings) {
                Some(near) => format!("; did you mean 'HOTSERVE_{near}'?"),
                None => format!("; {EVERY_KEY}"),
            };
            format!("unknown environment variable {name}{hint}")
        })
        .collect()
}

/// A `HOTSERVE_*` variable (with its `value`) that is no setting but is expected: the
/// configuration file's (`HOTSERVE_CONFIG`), the project scripts' (`HOTSERVE_VENV`,
/// `HOTSERVE_BIN`, ...), the debug builds' failpoints (`HOTSERVE_TEST_*`), and the service
/// links Kubernetes sets in every pod for a Service named `hotserve` or `hotserve-*`
/// (`HOTSERVE_SERVICE_HOST=10.0.0.7`, `HOTSERVE_SERVICE_PORT=8080`,
/// `HOTSERVE_PORT=tcp://10.0.0.7:8080`, `HOTSERVE_PORT_8080_TCP_ADDR=10.0.0.7`, ...).
fn is_known_variable(name: &str, value: &str) -> bool {
    const OURS: [&str; 6] = [
        "HOTSERVE_CONFIG",
        "HOTSERVE_VENV",
        "HOTSERVE_BIN",
        "HOTSERVE_URL",
        "HOTSERVE_ARGS",
        "HOTSERVE_CI_DIR",
    ];
    if SETTINGS.iter().any(|s| s.env == name)
        || OURS.contains(&name)
        || name.starts_with("HOTSERVE_TEST_")
    {
        return true;
    }
    let is_port = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let is_link = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|scheme| value.starts_with(scheme));
    if name.ends_with("_SERVICE_HOST")
        || (name.ends_with("_SERVICE_PORT") || name.contains("_SERVICE_PORT_")) && is_port
        || name.ends_with("_PORT") && is_link
    {
        return true;
    }
    let parts: Vec<&str> = name.split('_').collect();
    parts.windows(3).any(|w| {
        w[0] == "PORT"
            && !w[1].is_empty()
            && w[1].bytes().all(|b| b.is_ascii_digit())
            && matches!(w[2], "TCP" | "UDP" | "SCTP")
    })
}

fn read_yaml_layer(text: &str, path: &Path, raw: &mut RawValues, problems: &mut Vec<String>) {
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
    // A mapping under `group` sets `group_<key>` for each of its keys (`discover: {filter,
    // alias}` is `discover_filter` and `discover_alias`).
    let mut entries: Vec<(serde_yaml::Value, serde_yaml::Value)> = Vec::new();
    for (key, value) in mapping {
        match (key.as_str(), value) {
            (Some(group), serde_yaml::Value::Mapping(inner))
                if SETTINGS
                    .iter()
                    .any(|s| s.key.starts_with(&format!("{group}_"))) =>
            {
                for (sub, value) in inner {
                    let sub = sub.as_str().unwrap_or_default();
                    entries.push((format!("{group}_{sub}").into(), value));
                }
            }
            (_, value) => entries.push((key, value)),
        }
    }
    for (key, value) in entries {
        let Some(key) = key.as_str() else {
            problems.push(format!(
                "config file {}: keys must be strings",
                path.display()
            ));
            continue;
        };
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            problems.push(format!(
                "config file {}: unknown key '{key}'{}",
                path.display(),
                suggest::hint(key, keys(), EVERY_KEY)
            ));
            continue;
        };
        let value = match value {
            serde_yaml::Value::Null => continue,
            serde_yaml::Value::Sequence(items) if setting.list => match yaml_items(items, key) {
                Ok(items) => Raw::Items(items),
                Err(why) => {
                    problems.push(format!("config file {}: {why}", path.display()));
                    continue;
                }
            },
            value => match yaml_scalar(&value) {
                Some(text) => Raw::Text(text),
                None => {
                    problems.push(format!(
                        "config file {}: '{key}' must be a single value, not a list or mapping",
                        path.display()
                    ));
                    continue;
                }
            },
        };
        raw.insert(setting.key, (value, Source::File(path.to_path_buf())));
    }
}

/// A YAML scalar as text; `None` for lists and mappings.
fn yaml_scalar(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The items of a list setting's YAML list: strings, or mappings of scalar fields.
fn yaml_items(items: Vec<serde_yaml::Value>, key: &str) -> Result<Vec<Item>, String> {
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            serde_yaml::Value::Mapping(mapping) => mapping
                .into_iter()
                .map(|(field, value)| {
                    let field = field.as_str().unwrap_or_default().to_string();
                    match yaml_scalar(&value) {
                        Some(text) => Ok((field, text)),
                        None => Err(format!(
                            "{key}[{index}].{field} must be a single value, not a list or mapping"
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Item::Fields),
            scalar => yaml_scalar(&scalar).map(Item::Text).ok_or_else(|| {
                format!("{key}[{index}] must be NAME=URI or a mapping with name and uri")
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let variables = env.iter().map(|(k, _)| k.clone()).collect();
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
            variables,
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
        let env = [
            ("MODEL_URI", "models:/sentiment@champion"),
            ("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
        ];
        let config = load(None, &env, &[]).unwrap();
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
    fn unknown_hotserve_variables_are_errors_but_kubernetes_service_links_are_not() {
        // Kubernetes injects <SERVICE>_SERVICE_HOST, _PORT and friends for a Service named
        // hotserve (or hotserve-grpc); the project's scripts read a few names of their own.
        let env = [
            ("HOTSERVE_PORT", "tcp://10.0.0.7:8080"),
            ("HOTSERVE_SERVICE_HOST", "10.0.0.7"),
            ("HOTSERVE_SERVICE_PORT", "8080"),
            ("HOTSERVE_SERVICE_PORT_HTTP", "8080"),
            ("HOTSERVE_PORT_8080_TCP", "tcp://10.0.0.7:8080"),
            ("HOTSERVE_PORT_8080_TCP_ADDR", "10.0.0.7"),
            ("HOTSERVE_GRPC_PORT", "tcp://10.0.0.8:8081"),
            ("HOTSERVE_VENV", "/opt/venv"),
            ("HOTSERVE_TEST_LOAD_DELAY_MS", "10"),
        ];
        let config = load(None, &env, &[]).expect("service links and script variables pass");
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        check_error(
            None,
            &[
                ("HOTSERVE_POLL_INTERVALL", "5s"),
                ("HOTSERVE_GRPC_PORT", "8081"),
                ("HOTSERVE_WORKERS", "4"),
            ],
            &[
                "unknown environment variable HOTSERVE_GRPC_PORT; `hotserve settings` lists every setting",
                "unknown environment variable HOTSERVE_POLL_INTERVALL; did you mean 'HOTSERVE_POLL_INTERVAL'?",
                "unknown environment variable HOTSERVE_WORKERS; `hotserve settings` lists every setting",
            ],
        );
    }

    #[test]
    fn unknown_names_are_answered_with_the_nearest_one() {
        check_error(
            Some("poll_intervall: 5s\nworkers: 2\n"),
            &[],
            &[
                "unknown key 'poll_intervall'; did you mean 'poll_interval'?",
                "unknown key 'workers'; `hotserve settings` lists every setting",
            ],
        );
        let err = load(None, &[], &[("lisen", "x")]).unwrap_err();
        assert_eq!(
            err.problems,
            ["unknown setting 'lisen' in --lisen; did you mean 'listen'?"]
        );
        check_error(
            Some("models: [{name: a, uri: /a, poll_intervall: 5s}]\n"),
            &[],
            &["unknown field 'poll_intervall'; did you mean 'poll_interval'?"],
        );
    }

    #[test]
    fn every_model_uri_is_checked_in_the_same_pass() {
        check_error(
            None,
            &[("MODEL_URI", "nope:/x"), ("HOTSERVE_MAX_BATCH_SIZE", "0")],
            &[
                "max_batch_size = '0'",
                "model_uri: invalid model URI 'nope:/x': unknown scheme 'nope:'",
            ],
        );
        check_error(
            Some("models: [{name: a, uri: \"models:/a@champion\"}, {name: b, uri: \"s3://bucket/b\"}, c=/c, {name: d, uri: \"dbfs:/d\"}]\n"),
            &[],
            &[
                "models[3] (d): invalid model URI 'dbfs:/d': hotserve does not read dbfs:// directly",
                "models[0] (a): models:/a@champion needs an MLflow server but MLFLOW_TRACKING_URI is not set",
            ],
        );
        load(
            Some("models: [{name: a, uri: \"models:/a@champion\"}]\n"),
            &[("MLFLOW_TRACKING_URI", "http://mlflow:5000")],
            &[],
        )
        .expect("a registry URI with a server");
    }

    #[test]
    fn set_keys_may_use_dashes() {
        let config = load(None, &[], &[("poll-interval", "0")]).unwrap();
        assert_eq!(config.poll_interval, None);
    }

    fn names(config: &Config) -> Vec<(&str, &str)> {
        config
            .models
            .iter()
            .map(|m| (m.name.as_str(), m.uri.as_str()))
            .collect()
    }

    #[test]
    fn payload_logging_per_model_over_the_daemon_wide_settings() {
        let file = "models:\n  - {name: a, uri: /a}\n  - {name: b, uri: /b, payload_log: off}\n  - {name: c, uri: /c, payload_log_sample: 0.5, payload_log_inputs: false}\n  - {name: d, uri: /d, payload_log: \"http://127.0.0.1:9/e\", payload_log_sample: 0}\n";
        let config = load(
            Some(file),
            &[("HOTSERVE_PAYLOAD_LOG", "file:///var/log/p.jsonl")],
            &[],
        )
        .unwrap();
        let file_sink = PayloadLogTo::File("/var/log/p.jsonl".into());
        assert_eq!(
            config.payload_for("a"),
            Some(PayloadPolicy {
                to: file_sink.clone(),
                sample: 1.0,
                inputs: true
            })
        );
        assert_eq!(config.payload_for("b"), None);
        assert_eq!(
            config.payload_for("c"),
            Some(PayloadPolicy {
                to: file_sink,
                sample: 0.5,
                inputs: false
            })
        );
        assert_eq!(config.payload_for("d"), None);
        let off = load(Some(file), &[], &[]).unwrap();
        assert_eq!(off.payload_for("a"), None);
        let err = load(None, &[("HOTSERVE_PAYLOAD_LOG", "kafka://broker/t")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HOTSERVE_PAYLOAD_LOG")
                && err.contains("'kafka://' is not a payload log scheme"),
            "{err}"
        );
    }

    #[test]
    fn models_from_each_layer() {
        let file = "models:\n  - {name: a, uri: \"models:/a@champion\", poll_interval: 0}\n  - b=/srv/b\ndefault_model: b\n";
        let mlflow = ("MLFLOW_TRACKING_URI", "http://mlflow:5000");
        let config = load(Some(file), &[mlflow], &[]).unwrap();
        assert_eq!(
            names(&config),
            [("a", "models:/a@champion"), ("b", "/srv/b")]
        );
        assert_eq!(config.models[0].poll_interval, Some(None));
        assert_eq!(config.default_model.as_deref(), Some("b"));
        let env = [
            ("HOTSERVE_MODELS", "a=models:/a@champion, b=/srv/b"),
            mlflow,
        ];
        let config = load(Some(file), &env, &[]).unwrap();
        assert_eq!(
            names(&config),
            [("a", "models:/a@champion"), ("b", "/srv/b")]
        );
        assert_eq!(
            config.models[0].poll_interval, None,
            "the environment replaced the file"
        );
        let flags = [("models", "c=/c"), ("models", "d=/d")];
        let config = load(None, &env, &flags).unwrap();
        assert_eq!(
            names(&config),
            [("c", "/c"), ("d", "/d")],
            "flags add up and win"
        );
        let config = load(Some("models: x=/x\n"), &[], &[]).unwrap();
        assert_eq!(
            names(&config),
            [("x", "/x")],
            "a YAML string is the text form"
        );
    }

    #[test]
    fn model_errors_are_reported_together() {
        check_error(
            Some("models:\n  - a=/a\n  - a=/b\n  - {name: \"b c\", uri: /c}\n  - [x]\n"),
            &[],
            &["models[3] must be NAME=URI or a mapping"],
        );
        check_error(
            Some("model_uri: /m\nmodels: [a=/a, a=/b, \"b c=/c\"]\ndefault_model: z\n"),
            &[("HOTSERVE_MAX_BATCH_SIZE", "0")],
            &[
                "models[2] (from config file",
                "max_batch_size = '0'",
                "model_uri and models are both set",
                "models: the name 'a' is used twice",
                "default_model = 'z' names no configured model; configured: a",
            ],
        );
        check_error(
            None,
            &[("HOTSERVE_DEFAULT_MODEL", "a")],
            &["default_model = 'a' names no configured model; configured: (none"],
        );
        check_error(
            Some("models: {name: a, uri: /a}\n"),
            &[],
            &["'models' must be a single value, not a list or mapping"],
        );
        check_error(
            Some("listen: [a]\nmodels: [{name: a, uri: [x]}]\n"),
            &[],
            &[
                "'listen' must be a single value",
                "models[0].uri must be a single value",
            ],
        );
    }

    #[test]
    fn unknown_flag_key() {
        let err = load(None, &[], &[("no_such", "1")]).unwrap_err();
        assert!(err.problems[0].contains("unknown setting 'no_such'"));
    }
}
