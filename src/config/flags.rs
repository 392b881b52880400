//! The command-line flags that feed configuration, built from the declared settings:
//! `--config FILE`, one dedicated flag for each setting that declares one (`--listen`,
//! `--model-uri`, ...), and `--set key=value` (repeatable) for any setting. Each command takes
//! the flags that mean something to it ([`Scope`]): `serve` (and `hotserve` alone) all of them,
//! `resolve` and `validate` no server flags. Each help line names the variable and the default.
//! The binary flattens [`ScopedFlags`] into its clap parser, once per command.

use std::marker::PhantomData;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches};

use super::{DefaultValue, Inputs, SETTINGS};

/// What the configuration flags of one command line said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// Setting values as (key, flag as the user wrote it, value): dedicated flags first, then
    /// each `--set` in order, so a later `--set` wins over a dedicated flag.
    pub values: Vec<(String, String, String)>,
}

impl Flags {
    /// The inputs of [`Config::load`](super::Config::load) for these flags, `env` and the
    /// names of the variables that are set.
    pub fn inputs<'a>(
        &self,
        env: &'a dyn Fn(&str) -> Option<String>,
        variables: Vec<String>,
    ) -> Inputs<'a> {
        Inputs {
            config_file: self.config_file.clone(),
            flags: self.values.clone(),
            env,
            variables,
        }
    }

    /// These flags followed by `later`'s (given after a subcommand): `later` wins.
    pub fn then(mut self, later: Flags) -> Flags {
        if later.config_file.is_some() {
            self.config_file = later.config_file;
        }
        self.values.extend(later.values);
        self
    }
}

/// Which dedicated flags a command takes (`--config` and `--set` are everyone's).
pub trait Scope {
    /// The keys of the settings whose flags it takes; `None`: every one.
    const KEYS: Option<&'static [&'static str]>;
}

/// `serve`, and `hotserve` alone: every flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serve;

/// `resolve` and `validate`: what reaches a model without serving it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tool;

impl Scope for Serve {
    const KEYS: Option<&'static [&'static str]> = None;
}

impl Scope for Tool {
    const KEYS: Option<&'static [&'static str]> = Some(&["model_uri", "log_format"]);
}

/// The flags of one command, as clap parses them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopedFlags<S: Scope> {
    pub flags: Flags,
    scope: PhantomData<S>,
}

const CONFIG: &str = "config";
const SET: &str = "set";

/// The flag arguments of a command taking `keys` (`None`: every dedicated flag): `--config`,
/// those dedicated flags, `--set`.
pub fn args(keys: Option<&[&str]>) -> Vec<Arg> {
    let mut args = vec![Arg::new(CONFIG)
        .long("config")
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help("YAML configuration file (also HOTSERVE_CONFIG); see config/hotserve.yaml")];
    for setting in SETTINGS {
        let Some((long, value_name)) = setting.flag.and_then(split_flag) else {
            continue;
        };
        if keys.is_some_and(|keys| !keys.contains(&setting.key)) {
            continue;
        }
        let default = match setting.default {
            DefaultValue::Literal(value) => format!("; default {value}"),
            DefaultValue::Derived | DefaultValue::Unset => String::new(),
        };
        let arg = Arg::new(setting.key)
            .long(long)
            .value_name(value_name)
            .help(format!(
                "{} ({}{default})",
                capitalized(setting.help),
                setting.env
            ));
        args.push(if setting.list {
            arg.action(ArgAction::Append)
        } else {
            arg
        });
    }
    args.push(
        Arg::new(SET)
            .long("set")
            .action(ArgAction::Append)
            .value_name("KEY=VALUE")
            .value_parser(parse_key_value)
            .help("Any other setting, as key=value (repeatable); `hotserve settings` lists them"),
    );
    args
}

/// Splits a declared flag `--listen=ADDR` into its long name and value name.
fn split_flag(flag: &'static str) -> Option<(&'static str, &'static str)> {
    flag.strip_prefix("--")?.split_once('=')
}

/// `help` with its first letter in capitals, as clap writes its own flags' help.
fn capitalized(help: &str) -> String {
    let mut chars = help.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn parse_key_value(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err("expected key=value, e.g. --set watch=false".to_string()),
    }
}

impl Flags {
    /// Reads the flags of a command taking `keys` from its matches.
    fn read(&mut self, matches: &ArgMatches, keys: Option<&[&str]>) {
        if let Some(path) = matches.get_one::<PathBuf>(CONFIG) {
            self.config_file = Some(path.clone());
        }
        for setting in SETTINGS {
            let Some((long, _)) = setting.flag.and_then(split_flag) else {
                continue;
            };
            if keys.is_some_and(|keys| !keys.contains(&setting.key)) {
                continue;
            }
            for value in matches
                .get_many::<String>(setting.key)
                .into_iter()
                .flatten()
            {
                self.values
                    .push((setting.key.into(), format!("--{long}"), value.clone()));
            }
        }
        for (key, value) in matches
            .get_many::<(String, String)>(SET)
            .into_iter()
            .flatten()
        {
            self.values
                .push((key.trim().into(), format!("--set {key}"), value.clone()));
        }
    }
}

impl<S: Scope> FromArgMatches for ScopedFlags<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = ScopedFlags {
            flags: Flags::default(),
            scope: PhantomData,
        };
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.flags.read(matches, S::KEYS);
        Ok(())
    }
}

impl<S: Scope> clap::Args for ScopedFlags<S> {
    fn augment_args(cmd: Command) -> Command {
        cmd.args(args(S::KEYS))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        cmd.args(args(S::KEYS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(command_line: &[&str]) -> Result<Flags, String> {
        let cmd = Command::new("hotserve")
            .args(args(None))
            .subcommand(Command::new("validate").args(args(Tool::KEYS)));
        let matches = cmd
            .try_get_matches_from(command_line)
            .map_err(|err| err.to_string())?;
        let top =
            ScopedFlags::<Serve>::from_arg_matches(&matches).map_err(|err| err.to_string())?;
        Ok(match matches.subcommand_matches("validate") {
            Some(sub) => {
                let sub = ScopedFlags::<Tool>::from_arg_matches(sub).map_err(|e| e.to_string())?;
                top.flags.then(sub.flags)
            }
            None => top.flags,
        })
    }

    /// Parses `hotserve <command_line>` and renders the setting values as
    /// `key=value (flag)`, comma-separated.
    fn check(command_line: &str, expected: &str) {
        let words: Vec<&str> = std::iter::once("hotserve")
            .chain(command_line.split_whitespace())
            .collect();
        let flags = parse(&words).expect("the command line parses");
        let rendered: Vec<String> = flags
            .values
            .iter()
            .map(|(key, flag, value)| format!("{key}={value} ({flag})"))
            .collect();
        assert_eq!(rendered.join(", "), expected, "hotserve {command_line}");
    }

    #[test]
    fn dedicated_flags_and_set() {
        check("", "");
        check("--listen 127.0.0.1:1", "listen=127.0.0.1:1 (--listen)");
        check(
            "--model-uri=models:/m@a",
            "model_uri=models:/m@a (--model-uri)",
        );
        check("--cache-dir /c", "cache_dir=/c (--cache-dir)");
        check(
            "--cache-max-bytes 20GiB",
            "cache_max_bytes=20GiB (--cache-max-bytes)",
        );
        check("--poll-interval 0", "poll_interval=0 (--poll-interval)");
        check("--log-format json", "log_format=json (--log-format)");
        check(
            "--model a=/m --model=b=models:/b@c",
            "models=a=/m (--model), models=b=models:/b@c (--model)",
        );
        check("--set watch=false", "watch=false (--set watch)");
        check(
            "--set admin_token=a=b",
            "admin_token=a=b (--set admin_token)",
        );
        check(
            "--set poll-interval=1s",
            "poll-interval=1s (--set poll-interval)",
        );
        check("--set no_such=1", "no_such=1 (--set no_such)");
        check(
            "--set listen=b --listen a --set watch=0",
            "listen=a (--listen), listen=b (--set listen), watch=0 (--set watch)",
        );
    }

    #[test]
    fn set_trims_the_key_but_reports_it_as_written() {
        let flags = parse(&["hotserve", "--set", " watch =no"]).unwrap();
        assert_eq!(
            flags.values,
            [("watch".into(), "--set  watch ".into(), "no".into())]
        );
    }

    #[test]
    fn flags_work_before_and_after_the_subcommand() {
        check("validate --set watch=1", "watch=1 (--set watch)");
        check(
            "--listen x validate --log-format json",
            "listen=x (--listen), log_format=json (--log-format)",
        );
        let flags = parse(&["hotserve", "validate", "--config", "/etc/h.yaml"]).unwrap();
        assert_eq!(flags.config_file, Some(PathBuf::from("/etc/h.yaml")));
        let flags = parse(&[
            "hotserve", "--config", "/a.yaml", "validate", "--config", "/b.yaml",
        ])
        .unwrap();
        assert_eq!(
            flags.config_file,
            Some(PathBuf::from("/b.yaml")),
            "the later wins"
        );
    }

    #[test]
    fn tools_take_no_server_flags() {
        let err = parse(&["hotserve", "validate", "--listen", "x"]).unwrap_err();
        assert!(err.contains("unexpected argument '--listen'"), "{err}");
        let names = |keys| -> Vec<String> {
            args(keys)
                .iter()
                .filter_map(|arg| arg.get_long().map(str::to_string))
                .collect()
        };
        assert_eq!(
            names(Tool::KEYS),
            ["config", "model-uri", "log-format", "set"]
        );
        assert!(names(None).contains(&"grpc-listen".to_string()));
    }

    #[test]
    fn help_names_the_variable_and_the_default() {
        let help = |long: &str| {
            args(None)
                .iter()
                .find(|arg| arg.get_long() == Some(long))
                .and_then(|arg| arg.get_help().map(ToString::to_string))
                .unwrap()
        };
        assert!(
            help("listen").ends_with("(HOTSERVE_LISTEN; default 0.0.0.0:8080)"),
            "{}",
            help("listen")
        );
        assert!(help("grpc-listen").ends_with("(HOTSERVE_GRPC_LISTEN)"));
    }

    #[test]
    fn bad_command_lines() {
        let err = parse(&["hotserve", "--set", "watch"]).unwrap_err();
        assert!(
            err.contains("invalid value 'watch' for '--set <KEY=VALUE>': expected key=value"),
            "{err}"
        );
        let err = parse(&["hotserve", "--poll-intervall", "5s"]).unwrap_err();
        assert!(
            err.contains("unexpected argument '--poll-intervall'")
                && err.contains("a similar argument exists: '--poll-interval'"),
            "{err}"
        );
    }

    #[test]
    fn exactly_these_settings_have_a_dedicated_flag() {
        let flagged: Vec<(&str, &str)> = SETTINGS
            .iter()
            .filter_map(|setting| Some((setting.key, setting.flag.and_then(split_flag)?.0)))
            .collect();
        assert_eq!(
            flagged,
            [
                ("model_uri", "model-uri"),
                ("models", "model"),
                ("listen", "listen"),
                ("grpc_listen", "grpc-listen"),
                ("cache_dir", "cache-dir"),
                ("cache_max_bytes", "cache-max-bytes"),
                ("poll_interval", "poll-interval"),
                ("discover_filter", "discover-filter"),
                ("discover_alias", "discover-alias"),
                ("log_format", "log-format"),
                ("payload_log", "payload-log"),
            ]
        );
        for setting in SETTINGS {
            if let Some(flag) = setting.flag {
                let (long, value_name) = split_flag(flag).expect("a flag is written --name=VALUE");
                // A list's flag names one item: `--model` for `models`.
                let key = match setting.list {
                    true => setting.key.strip_suffix('s').unwrap_or(setting.key),
                    false => setting.key,
                };
                assert_eq!(long, key.replace('_', "-"), "the flag of {}", setting.key);
                assert!(!value_name.is_empty(), "{flag} names its value");
            }
        }
    }
}
