//! The `settings!` macro, which turns the one list in `settings.rs` into the `Config` struct,
//! the [`SETTINGS`](super::SETTINGS) table and the code that parses raw values into a
//! `Config`, and the [`Parser`] that code uses to collect every problem instead of stopping at
//! the first.
//!
//! A setting's key is its field name (`stringify!`), so there is no key literal to mistype:
//! renaming a field renames the key, and a key that no field reads cannot exist.

use std::collections::BTreeMap;

use super::Source;

/// One declared setting, as the YAML file, the environment, the flags and `hotserve settings`
/// see it.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// The YAML key, also the `Config` field name and the `--set` key.
    pub key: &'static str,
    /// The environment variable (`HOTSERVE_<KEY>` unless MLflow or ONNX Runtime own the name).
    pub env: &'static str,
    /// The dedicated command-line flag and its value name, as `--flag=VALUE`; settings
    /// without one are set with `--set key=value`.
    pub flag: Option<&'static str>,
    /// What the setting is when no layer sets it.
    pub default: DefaultValue,
    /// Whether a bad value is shown as `<redacted>` in errors.
    pub secret: bool,
    /// Whether the setting is a list: the YAML value may be a list, the text form is
    /// comma-separated, and the dedicated flag is repeatable (its values add up).
    pub list: bool,
    /// One line for users: `hotserve settings`, `--help` and the `Config` field's doc.
    pub help: &'static str,
    /// Runs the setting's parser on a value and keeps only whether it was accepted.
    pub validate: fn(&str) -> Result<(), String>,
}

/// What a setting is when no layer sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultValue {
    /// This text, parsed like any other value.
    Literal(&'static str),
    /// Computed at load time from the environment or from other settings (the help says how).
    Derived,
    /// No value: the `Config` field is an `Option` and stays `None`.
    Unset,
}

/// Raw values by key, with the layer that supplied each one; later layers overwrite earlier.
pub(super) type RawValues = BTreeMap<&'static str, (Raw, Source)>;

/// A raw value as a layer gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raw {
    /// Text: the environment, a flag, a YAML scalar. A list setting splits it at commas.
    Text(String),
    /// The items of a YAML list (list settings only).
    Items(Vec<Item>),
}

/// One item of a list setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Text (`NAME=URI`): from the environment, a flag or a YAML string.
    Text(String),
    /// The fields of a YAML mapping, scalars written as text, in the file's order.
    Fields(Vec<(String, String)>),
}

impl Raw {
    /// The items of a list setting's value: text splits at commas (empty parts dropped).
    pub(super) fn items(&self) -> Vec<Item> {
        match self {
            Raw::Text(text) => split_items(text).map(Item::Text).collect(),
            Raw::Items(items) => items.clone(),
        }
    }
}

/// The comma-separated items of a list setting's text form, trimmed, empty ones dropped.
pub(super) fn split_items(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
}

/// Declares the settings. Each entry reads like a struct field with its metadata:
///
/// ```text
/// listen: SocketAddr {
///     env: "HOTSERVE_LISTEN",
///     flag: "--listen=ADDR",           // optional: a dedicated flag
///     default: "0.0.0.0:8080",         // or `derived: <fn of the environment>`, or neither
///     parse: parse_socket_addr,        // fn(&str) -> Result<T, String>
///     secret: true,                    // optional: redact bad values in errors
///     help: "address:port of the HTTP server",
/// },
/// ```
///
/// A list setting says `list: true` after its flag: its field is a `Vec<T>` (empty when no
/// layer sets it), its parser takes one [`Item`] (`fn(&Item) -> Result<T, String>`), its YAML
/// value may be a list, and its dedicated flag is repeatable.
///
/// A setting with neither `default` nor `derived` must have an `Option<T>` field (the compiler
/// enforces it). A `derived` default is a function (or closure) of the environment lookup,
/// called only when no layer sets the value; a closure may name the settings declared above
/// it, which are parsed local variables by then (`cache_dir` uses `state_dir` this way).
macro_rules! settings {
    (
        $(#[$struct_meta:meta])*
        pub struct $config:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident: $ty:ty {
                    env: $env:literal,
                    $(flag: $flag:literal,)?
                    $(list: $list:literal,)?
                    $(default: $default:literal,)?
                    $(derived: $derived:expr,)?
                    parse: $parse:expr,
                    $(secret: $secret:literal,)?
                    help: $help:literal $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$struct_meta])*
        pub struct $config {
            $(
                #[doc = $help]
                #[doc = ""]
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
        }

        /// Every setting hotserve knows, in declaration order. The YAML file, the
        /// environment and the flags accept exactly these keys.
        pub const SETTINGS: &[$crate::config::Setting] = &[
            $(
                $crate::config::Setting {
                    key: stringify!($field),
                    env: $env,
                    flag: $crate::config::declare::settings!(@option $($flag)?),
                    default: $crate::config::declare::settings!(
                        @default [$($default)?] [$($derived)?]
                    ),
                    secret: $crate::config::declare::settings!(@secret $($secret)?),
                    list: $crate::config::declare::settings!(@list $($list)?),
                    help: $help,
                    validate: $crate::config::declare::settings!(@validate [$($list)?] $parse),
                },
            )*
        ];

        impl $config {
            /// Parses every setting from `raw`, falling back to its default; a bad value is
            /// recorded in `problems` and replaced by the default so parsing goes on.
            pub(super) fn from_raw(
                raw: &$crate::config::declare::RawValues,
                env: &dyn Fn(&str) -> Option<String>,
                problems: &mut Vec<String>,
            ) -> $config {
                let mut parser = $crate::config::declare::Parser { raw, problems };
                $(
                    let $field: $ty = $crate::config::declare::settings!(
                        @value parser, env, stringify!($field), $parse,
                        [$($list)?] [$($default)?] [$($derived)?]
                    );
                )*
                $config { $($field),* }
            }
        }
    };

    (@option) => { None };
    (@option $value:literal) => { Some($value) };
    (@secret) => { false };
    (@secret $secret:literal) => { $secret };
    (@list) => { false };
    (@list $list:literal) => { $list };

    (@default [$default:literal] []) => { $crate::config::DefaultValue::Literal($default) };
    (@default [] [$derived:expr]) => { $crate::config::DefaultValue::Derived };
    (@default [] []) => { $crate::config::DefaultValue::Unset };

    (@validate [] $parse:expr) => { |value| ($parse)(value).map(drop) };
    (@validate [$list:literal] $parse:expr) => {
        |value| {
            $crate::config::declare::split_items(value)
                .try_for_each(|item| ($parse)(&$crate::config::Item::Text(item)).map(drop))
        }
    };

    (@value $parser:ident, $env:ident, $key:expr, $parse:expr, [$list:literal] [] []) => {
        $parser.list($key, $parse)
    };
    (@value $parser:ident, $env:ident, $key:expr, $parse:expr, [] [$default:literal] []) => {
        $parser.get($key, $default, $parse)
    };
    (@value $parser:ident, $env:ident, $key:expr, $parse:expr, [] [] [$derived:expr]) => {
        $parser.opt($key, $parse).unwrap_or_else(|| ($derived)($env))
    };
    (@value $parser:ident, $env:ident, $key:expr, $parse:expr, [] [] []) => {
        $parser.opt($key, $parse)
    };
}
pub(crate) use settings;

/// Parses raw values, recording a problem (and returning the default) for each bad one.
pub(super) struct Parser<'a> {
    pub(super) raw: &'a RawValues,
    pub(super) problems: &'a mut Vec<String>,
}

impl Parser<'_> {
    /// The parsed value of `key`, else its parsed `default`.
    pub(super) fn get<T>(
        &mut self,
        key: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        if let Some(value) = self.opt(key, &parse) {
            return value;
        }
        parse(default).expect("built-in defaults parse (the settings tests check each one)")
    }

    /// The parsed value of `key`, or `None` when no layer set it or its value is bad.
    pub(super) fn opt<T>(
        &mut self,
        key: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (value, source) = self.raw.get(key)?;
        let Raw::Text(value) = value else {
            self.problems.push(format!(
                "{key} (from {source}): must be a single value, not a list or mapping"
            ));
            return None;
        };
        match parse(value.trim()) {
            Ok(parsed) => Some(parsed),
            Err(why) => {
                let shown = if super::is_secret(key) {
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

    /// The parsed items of the list setting `key` (empty when no layer set it); each bad item
    /// is recorded as a problem and left out.
    pub(super) fn list<T>(
        &mut self,
        key: &'static str,
        parse: impl Fn(&Item) -> Result<T, String>,
    ) -> Vec<T> {
        let Some((value, source)) = self.raw.get(key) else {
            return Vec::new();
        };
        let mut parsed = Vec::new();
        for (index, item) in value.items().iter().enumerate() {
            match parse(item) {
                Ok(value) => parsed.push(value),
                Err(why) => self
                    .problems
                    .push(format!("{key}[{index}] (from {source}): {why}")),
            }
        }
        parsed
    }
}
