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
//! (the linkerd2-proxy pattern). Unknown keys in the file or in `--set` are errors; unknown
//! `HOTSERVE_*` variables are not, because Kubernetes injects `HOTSERVE_PORT` and the like.

mod declare;
pub mod flags;
mod models;
mod parse;
mod settings;

use std::fmt;
use std::path::{Path, PathBuf};

pub use declare::{DefaultValue, Item, Setting};
pub use models::ModelSpec;
pub use parse::parse_duration;
pub use settings::{Config, LogFormat, ReloadPolicy, SETTINGS};

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
                    "unknown setting '{key}' in {flag}; known settings: {}",
                    known_keys()
                )),
            }
        }

        let config = Config::from_raw(&raw, inputs.env, &mut problems);
        problems.extend(models::check(&config));
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

fn known_keys() -> String {
    SETTINGS
        .iter()
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
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
    fn unknown_hotserve_variables_are_not_errors() {
        // Kubernetes injects <SERVICE>_PORT and friends for a Service named hotserve.
        let env = [
            ("HOTSERVE_PORT", "tcp://10.0.0.7:8080"),
            ("HOTSERVE_SERVICE_HOST", "10.0.0.7"),
        ];
        let config = load(None, &env, &[]).expect("unknown HOTSERVE_* variables are ignored");
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
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
    fn models_from_each_layer() {
        let file = "models:\n  - {name: a, uri: \"models:/a@champion\", poll_interval: 0}\n  - b=/srv/b\ndefault_model: b\n";
        let config = load(Some(file), &[], &[]).unwrap();
        assert_eq!(
            names(&config),
            [("a", "models:/a@champion"), ("b", "/srv/b")]
        );
        assert_eq!(config.models[0].poll_interval, Some(None));
        assert_eq!(config.default_model.as_deref(), Some("b"));
        let env = [("HOTSERVE_MODELS", "a=models:/a@champion, b=/srv/b")];
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
