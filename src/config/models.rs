//! Several models in one daemon, as configuration sees them: one `models` entry
//! ([`ModelSpec`]: a name, a URI and per-model overrides) parsed from an [`Item`] — `NAME=URI`
//! from `--model`, `HOTSERVE_MODELS` or a YAML string, or a YAML mapping with the fields. The
//! checks across entries and settings are `checks.rs`'s.

use std::time::Duration;

use super::declare::Item;
use super::fleet::LoadMode;
use super::parse::ReloadPolicy;
use super::parse::{parse_bool, parse_interval};
use super::payload::{self, PayloadOverrides};
use super::promotion::{self, Overrides};
use crate::registry::{is_model_name, MAX_MODEL_NAME};

/// One configured model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name in routes (`/models/{name}/...`), `/health`, metrics and the cache folder.
    pub name: String,
    /// What to serve, in any form `MODEL_URI` takes.
    pub uri: String,
    /// This model's `poll_interval` (`Some(None)`: polling off); `None`: the global one.
    pub poll_interval: Option<Option<Duration>>,
    /// This model's `reload_policy`; `None`: the global one.
    pub reload_policy: Option<ReloadPolicy>,
    /// This model's promotion settings (`promotion`, `shadow_*`); unset ones are the global ones.
    pub promotion: Overrides,
    /// This model's payload logging (`payload_log*`); unset ones are the global ones.
    pub payload: PayloadOverrides,
    /// When it is loaded (`load`); `None`: the global `load`.
    pub load: Option<LoadMode>,
    /// Never unloaded to make room under `memory_budget` (`pin: true`).
    pub pin: bool,
}

/// The fields a YAML `models` entry may have.
const FIELDS: &str = "name, uri, poll_interval, reload_policy, load, pin";

/// Parses one `models` entry.
pub(super) fn parse_model(item: &Item) -> Result<ModelSpec, String> {
    match item {
        Item::Text(text) => {
            let (name, uri) = text.split_once('=').ok_or_else(|| {
                format!("'{text}' is not NAME=URI, e.g. sentiment=models:/sentiment@champion")
            })?;
            Ok(ModelSpec {
                name: parse_model_name(name.trim())?,
                uri: nonempty_uri(uri.trim(), name.trim())?,
                poll_interval: None,
                reload_policy: None,
                promotion: Overrides::default(),
                payload: PayloadOverrides::default(),
                load: None,
                pin: false,
            })
        }
        Item::Fields(fields) => {
            let field = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
            let known = |key: &str| {
                FIELDS.split(", ").any(|known| known == key)
                    || promotion::FIELDS.contains(&key)
                    || payload::FIELDS.contains(&key)
            };
            if let Some((unknown, _)) = fields.iter().find(|(key, _)| !known(key)) {
                let every = FIELDS
                    .split(", ")
                    .chain(promotion::FIELDS.iter().copied())
                    .chain(payload::FIELDS.iter().copied());
                return Err(format!(
                    "unknown field '{unknown}'{}",
                    super::suggest::hint(
                        unknown,
                        every,
                        &format!(
                            "a model has {FIELDS}, {}, {}",
                            promotion::FIELDS.join(", "),
                            payload::FIELDS.join(", ")
                        )
                    )
                ));
            }
            let name = field("name").ok_or("a model needs a name")?;
            let name = parse_model_name(name)?;
            let uri = nonempty_uri(field("uri").unwrap_or(""), &name)?;
            let poll_interval = field("poll_interval")
                .map(parse_interval)
                .transpose()
                .map_err(|why| format!("poll_interval of model '{name}': {why}"))?;
            let reload_policy = field("reload_policy")
                .map(ReloadPolicy::parse)
                .transpose()
                .map_err(|why| format!("reload_policy of model '{name}': {why}"))?;
            let load = field("load")
                .map(LoadMode::parse)
                .transpose()
                .map_err(|why| format!("load of model '{name}': {why}"))?;
            let pin = field("pin")
                .map(parse_bool)
                .transpose()
                .map_err(|why| format!("pin of model '{name}': {why}"))?
                .unwrap_or(false);
            let mut promotion = Overrides::default();
            for (key, value) in fields {
                if promotion::FIELDS.contains(&key.as_str()) {
                    promotion
                        .set(key, value.trim())
                        .map_err(|why| format!("{key} of model '{name}': {why}"))?;
                }
            }
            let mut payload = PayloadOverrides::default();
            for (key, value) in fields {
                if payload::FIELDS.contains(&key.as_str()) {
                    payload
                        .set(key, value.trim())
                        .map_err(|why| format!("{key} of model '{name}': {why}"))?;
                }
            }
            Ok(ModelSpec {
                name,
                uri,
                poll_interval,
                reload_policy,
                promotion,
                payload,
                load,
                pin,
            })
        }
    }
}

/// A model name: a letter or digit, then up to 63 letters, digits, `_`, `.` or `-` (it is a
/// path segment in routes and a folder in the cache).
pub(super) fn parse_model_name(name: &str) -> Result<String, String> {
    if !is_model_name(name) {
        return Err(format!(
            "'{name}' is not a model name; use 1 to {MAX_MODEL_NAME} letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    Ok(name.to_string())
}

fn nonempty_uri(uri: &str, name: &str) -> Result<String, String> {
    if uri.is_empty() {
        return Err(format!(
            "model '{name}' has no uri; give it one, e.g. models:/{name}@champion"
        ));
    }
    Ok(uri.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::promotion::Mode;

    fn text(value: &str) -> Item {
        Item::Text(value.to_string())
    }

    fn fields(pairs: &[(&str, &str)]) -> Item {
        Item::Fields(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// One item and what it parses into, or the start of its error.
    fn check_item(item: Item, expected: Result<(&str, &str), &str>) {
        let parsed = parse_model(&item);
        match (parsed, expected) {
            (Ok(spec), Ok((name, uri))) => assert_eq!(
                (spec.name.as_str(), spec.uri.as_str()),
                (name, uri),
                "{item:?}"
            ),
            (Err(err), Err(start)) => assert!(err.starts_with(start), "{item:?}: {err}"),
            (got, want) => panic!("{item:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    #[rustfmt::skip]
    fn items() {
        check_item(text("a=models:/a@champion"), Ok(("a", "models:/a@champion")));
        check_item(text(" b = /srv/b "), Ok(("b", "/srv/b")));
        check_item(text("c=file:///x=y"), Ok(("c", "file:///x=y")));
        check_item(text("sentiment_v2.1-x=/m"), Ok(("sentiment_v2.1-x", "/m")));
        check_item(text("/srv/b"), Err("'/srv/b' is not NAME=URI"));
        check_item(text("a="), Err("model 'a' has no uri"));
        check_item(text("=x"), Err("'' is not a model name"));
        check_item(text("-a=x"), Err("'-a' is not a model name"));
        check_item(text("a b=x"), Err("'a b' is not a model name"));
        check_item(text(&format!("{}=x", "a".repeat(65))), Err("'aaaa"));
        check_item(fields(&[("name", "a"), ("uri", "/m")]), Ok(("a", "/m")));
        check_item(fields(&[("uri", "/m")]), Err("a model needs a name"));
        check_item(fields(&[("name", "a")]), Err("model 'a' has no uri"));
        check_item(fields(&[("name", "a"), ("uri", "/m"), ("url", "x")]), Err("unknown field 'url'"));
        check_item(fields(&[("name", "a"), ("uri", "/m"), ("poll_interval", "soon")]), Err("poll_interval of model 'a'"));
        check_item(fields(&[("name", "a"), ("uri", "/m"), ("reload_policy", "fast")]), Err("reload_policy of model 'a': expected availability or resource"));
        check_item(fields(&[("name", "a"), ("uri", "/m"), ("promotion", "shadow")]), Ok(("a", "/m")));
        check_item(fields(&[("name", "a"), ("uri", "/m"), ("shadow_min_agreement", "2")]), Err("shadow_min_agreement of model 'a': expected a number from 0 to 1"));
        check_item(fields(&[("name", "a"), ("uri", "/m"), ("payload_log", "off"), ("payload_log_sample", "0.5")]), Ok(("a", "/m")));
        check_item(fields(&[("name", "a"), ("uri", "/m"), ("payload_log", "ftp://x/y")]), Err("payload_log of model 'a': 'ftp://' is not a payload log scheme"));
    }

    #[test]
    fn overrides() {
        let spec = parse_model(&fields(&[
            ("name", "a"),
            ("uri", "/m"),
            ("poll_interval", "0"),
            ("reload_policy", "resource"),
        ]))
        .unwrap();
        assert_eq!(spec.poll_interval, Some(None));
        assert_eq!(spec.reload_policy, Some(ReloadPolicy::Resource));
        let spec = parse_model(&fields(&[
            ("name", "a"),
            ("uri", "/m"),
            ("poll_interval", "5s"),
        ]))
        .unwrap();
        assert_eq!(spec.poll_interval, Some(Some(Duration::from_secs(5))));
        assert_eq!(spec.reload_policy, None);
        let spec = parse_model(&fields(&[
            ("name", "a"),
            ("uri", "/m"),
            ("promotion", "shadow"),
            ("shadow_min_requests", "50"),
        ]))
        .unwrap();
        assert_eq!(spec.promotion.mode, Some(Mode::Shadow));
        assert_eq!(spec.promotion.min_requests, Some(50));
        assert_eq!(spec.promotion.fraction, None);
    }
}
