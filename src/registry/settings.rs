//! MLflow's client environment (`MLFLOW_TRACKING_URI`, credentials, TLS, timeouts, retries),
//! read through a closure so tests never touch the process environment, with MLflow's defaults.
//!
//! Credentials are held in [`Secret`], whose `Debug` prints `<redacted>`; server addresses are
//! redacted by [`redact_uri`] before they reach any message.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use super::artifacts::store::{Access, StoreSettings};
pub use super::secret::Secret;
use super::RegistryError;

/// How to talk to MLflow. Built by [`MlflowSettings::from_env`] with MLflow's defaults; tests
/// may adjust fields (e.g. a shorter backoff) before building a client.
#[derive(Clone)]
pub struct MlflowSettings {
    /// `MLFLOW_TRACKING_URI` as given; checked when a remote URI is resolved, so a local model
    /// can be served whatever this says.
    pub tracking_uri: Option<String>,
    /// `MLFLOW_REGISTRY_URI`; the tracking URI when unset.
    pub registry_uri: Option<String>,
    /// `MLFLOW_TRACKING_TOKEN`: sent as `Authorization: Bearer`.
    pub token: Option<Secret>,
    /// `MLFLOW_TRACKING_USERNAME`: with the password, basic auth (which wins over the token, as
    /// in MLflow's client).
    pub username: Option<String>,
    /// `MLFLOW_TRACKING_PASSWORD`.
    pub password: Option<Secret>,
    /// `MLFLOW_TRACKING_INSECURE_TLS`: skip certificate verification.
    pub insecure_tls: bool,
    /// `MLFLOW_TRACKING_SERVER_CERT_PATH`: a PEM bundle of CA certificates to trust.
    pub server_cert_path: Option<PathBuf>,
    /// `MLFLOW_HTTP_REQUEST_TIMEOUT`: connect timeout and longest silence while reading.
    pub request_timeout: Duration,
    /// `MLFLOW_HTTP_REQUEST_MAX_RETRIES`: retries after the first attempt.
    pub max_retries: u32,
    /// `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`: retry `n` (from 2) waits `factor * 2^(n-1)` s.
    pub backoff_factor: f64,
    /// `MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`: up to this many random seconds added per wait.
    pub backoff_jitter: f64,
    /// Longest wait a `Retry-After` header may impose; longer ones are cut to this.
    pub max_retry_after: Duration,
    /// Object store credentials and endpoints (`AWS_*`, `MLFLOW_S3_*`, `GOOGLE_*`, `AZURE_*`),
    /// for artifact locations read directly.
    pub stores: StoreSettings,
}

impl Default for MlflowSettings {
    fn default() -> MlflowSettings {
        MlflowSettings {
            tracking_uri: None,
            registry_uri: None,
            token: None,
            username: None,
            password: None,
            insecure_tls: false,
            server_cert_path: None,
            request_timeout: Duration::from_secs(120),
            // MLflow retries 7 times (about four minutes of backoff); a serving daemon has its
            // own poll loop and cache, so it gives up sooner and tries again on the next poll.
            max_retries: 5,
            backoff_factor: 2.0,
            backoff_jitter: 1.0,
            max_retry_after: Duration::from_secs(60),
            stores: StoreSettings::default(),
        }
    }
}

impl fmt::Debug for MlflowSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowSettings")
            .field(
                "tracking_uri",
                &self.tracking_uri.as_deref().map(redact_uri),
            )
            .field(
                "registry_uri",
                &self.registry_uri.as_deref().map(redact_uri),
            )
            .field("token", &self.token)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("insecure_tls", &self.insecure_tls)
            .field("server_cert_path", &self.server_cert_path)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_factor", &self.backoff_factor)
            .field("backoff_jitter", &self.backoff_jitter)
            .field("max_retry_after", &self.max_retry_after)
            .field("stores", &self.stores)
            .finish()
    }
}

/// Highest `MLFLOW_HTTP_REQUEST_MAX_RETRIES` MLflow accepts (`_MLFLOW_HTTP_REQUEST_MAX_RETRIES_LIMIT`).
const MAX_RETRIES_LIMIT: u32 = 10;
/// Highest `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` MLflow accepts.
const MAX_BACKOFF_FACTOR: f64 = 120.0;

impl MlflowSettings {
    /// What reading object stores needs of these settings.
    pub fn store_access(&self) -> Access {
        Access {
            stores: self.stores.clone(),
            request_timeout: self.request_timeout,
            max_retries: self.max_retries,
            backoff_factor: self.backoff_factor,
        }
    }

    /// Reads MLflow's client variables; reports every malformed one together.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<MlflowSettings, RegistryError> {
        let defaults = MlflowSettings::default();
        let mut problems = Vec::new();
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let mut number = |name: &str, min: f64, max: f64| -> Option<f64> {
            let raw = get(name)?;
            match raw.parse::<f64>() {
                Ok(value) if (min..=max).contains(&value) => Some(value),
                _ => {
                    problems.push(format!(
                        "{name}='{raw}' must be a number from {min} to {max}"
                    ));
                    None
                }
            }
        };
        let request_timeout = number("MLFLOW_HTTP_REQUEST_TIMEOUT", 0.001, 86_400.0)
            .map_or(defaults.request_timeout, Duration::from_secs_f64);
        let max_retries = number(
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            0.0,
            MAX_RETRIES_LIMIT.into(),
        )
        .map_or(defaults.max_retries, |v| v as u32);
        let backoff_factor = number(
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
            0.0,
            MAX_BACKOFF_FACTOR,
        )
        .unwrap_or(defaults.backoff_factor);
        let backoff_jitter = number("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 0.0, 60.0)
            .unwrap_or(defaults.backoff_jitter);

        let insecure_tls = match get("MLFLOW_TRACKING_INSECURE_TLS").map(|v| v.to_ascii_lowercase())
        {
            None => false,
            Some(v) if matches!(v.as_str(), "true" | "1") => true,
            Some(v) if matches!(v.as_str(), "false" | "0") => false,
            Some(v) => {
                problems.push(format!(
                    "MLFLOW_TRACKING_INSECURE_TLS='{v}' must be true or false"
                ));
                false
            }
        };
        let server_cert_path = get("MLFLOW_TRACKING_SERVER_CERT_PATH").map(PathBuf::from);
        if insecure_tls && server_cert_path.is_some() {
            problems.push(
                "MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH are both set; \
                 unset one (MLflow refuses this combination too)"
                    .into(),
            );
        }
        let username = get("MLFLOW_TRACKING_USERNAME");
        let password = get("MLFLOW_TRACKING_PASSWORD").map(Secret::new);
        if username.is_some() != password.is_some() {
            problems.push(
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set together".into(),
            );
        }
        if !problems.is_empty() {
            return Err(RegistryError::Settings { problems });
        }
        Ok(MlflowSettings {
            tracking_uri: get("MLFLOW_TRACKING_URI"),
            registry_uri: get("MLFLOW_REGISTRY_URI"),
            token: get("MLFLOW_TRACKING_TOKEN").map(Secret::new),
            username,
            password,
            insecure_tls,
            server_cert_path,
            request_timeout,
            max_retries,
            backoff_factor,
            backoff_jitter,
            max_retry_after: defaults.max_retry_after,
            stores: StoreSettings::from_env(env),
        })
    }
}

/// A checked server address: the base URL (no credentials, no trailing slash) and, when the
/// URI carried `user:password@`, those credentials.
#[derive(Clone)]
pub(crate) struct Server {
    pub base: Url,
    pub userinfo: Option<(String, Secret)>,
}

impl Server {
    /// The address for messages.
    pub fn display(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }
}

/// Checks that `raw` (from `variable`) is an http(s) MLflow server address; says what to set
/// otherwise.
pub(crate) fn parse_server_uri(variable: &str, raw: &str) -> Result<Server, String> {
    let shown = redact_uri(raw);
    let lower = raw.to_ascii_lowercase();
    if lower == "databricks"
        || lower.starts_with("databricks:")
        || lower.starts_with("databricks-uc")
    {
        return Err(format!(
            "{variable}='{shown}' is not supported; hotserve talks to MLflow tracking servers \
             over http(s), set {variable} to e.g. http://mlflow.internal:5000"
        ));
    }
    let url = Url::parse(raw).map_err(|_| {
        format!(
            "{variable}='{shown}' is not an http(s) address; set it to the MLflow tracking \
             server, e.g. http://mlflow.internal:5000 (a local store such as sqlite:// or \
             ./mlruns cannot be read by hotserve; for a model directory set MODEL_URI to it)"
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{variable}='{shown}' is not an http(s) address; set it to the MLflow tracking \
             server, e.g. http://mlflow.internal:5000 (a local store such as sqlite:// or \
             ./mlruns cannot be read by hotserve; for a model directory set MODEL_URI to it)"
        ));
    }
    let userinfo = (!url.username().is_empty()).then(|| {
        let decode = |s: &str| super::uri::percent_decode(s).unwrap_or_else(|| s.to_string());
        (
            decode(url.username()),
            Secret::new(decode(url.password().unwrap_or(""))),
        )
    });
    let mut base = url;
    let _ = base.set_username("");
    let _ = base.set_password(None);
    base.set_query(None);
    base.set_fragment(None);
    let trimmed = base.path().trim_end_matches('/').to_string();
    base.set_path(&trimmed);
    Ok(Server { base, userinfo })
}

/// `scheme://user:pw@host/path?query` -> `scheme://host/path`: drops credentials and the query
/// (which may hold tokens) from any URI before it is shown.
pub fn redact_uri(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<MlflowSettings, RegistryError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MlflowSettings::from_env(&move |name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_match_mlflow() {
        let settings = from(&[]).unwrap();
        assert_eq!(settings.tracking_uri, None);
        assert_eq!(settings.request_timeout, Duration::from_secs(120));
        assert_eq!(settings.max_retries, 5);
        assert_eq!(settings.backoff_factor, 2.0);
        assert_eq!(settings.backoff_jitter, 1.0);
        assert!(!settings.insecure_tls);
    }

    #[test]
    fn reads_every_variable() {
        let settings = from(&[
            ("MLFLOW_TRACKING_URI", "https://mlflow.example:5000"),
            ("MLFLOW_REGISTRY_URI", "https://registry.example"),
            ("MLFLOW_TRACKING_TOKEN", "tok"),
            ("MLFLOW_TRACKING_USERNAME", "alice"),
            ("MLFLOW_TRACKING_PASSWORD", "pw"),
            ("MLFLOW_TRACKING_SERVER_CERT_PATH", "/etc/ca.pem"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.5"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0"),
        ])
        .unwrap();
        assert_eq!(
            settings.tracking_uri.as_deref(),
            Some("https://mlflow.example:5000")
        );
        assert_eq!(
            settings.registry_uri.as_deref(),
            Some("https://registry.example")
        );
        assert_eq!(settings.token, Some(Secret::new("tok")));
        assert_eq!(settings.username.as_deref(), Some("alice"));
        assert_eq!(
            settings.server_cert_path,
            Some(PathBuf::from("/etc/ca.pem"))
        );
        assert_eq!(settings.request_timeout, Duration::from_secs(30));
        assert_eq!(settings.max_retries, 2);
        assert_eq!(settings.backoff_factor, 0.5);
        assert_eq!(settings.backoff_jitter, 0.0);
        let settings = from(&[("MLFLOW_TRACKING_INSECURE_TLS", "TRUE")]).unwrap();
        assert!(settings.insecure_tls);
    }

    #[test]
    fn reports_all_problems_together() {
        let err = from(&[
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "soon"),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "11"),
            ("MLFLOW_TRACKING_INSECURE_TLS", "maybe"),
            ("MLFLOW_TRACKING_USERNAME", "alice"),
        ])
        .unwrap_err();
        let RegistryError::Settings { problems } = &err else {
            panic!("{err:?}")
        };
        let expected = [
            "MLFLOW_HTTP_REQUEST_TIMEOUT='soon' must be a number",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES='11' must be a number from 0 to 10",
            "MLFLOW_TRACKING_INSECURE_TLS='maybe' must be true or false",
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD must be set together",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, want) in problems.iter().zip(expected) {
            assert!(
                problem.starts_with(want),
                "{problem:?} should start with {want:?}"
            );
        }
        let err = from(&[
            ("MLFLOW_TRACKING_INSECURE_TLS", "true"),
            ("MLFLOW_TRACKING_SERVER_CERT_PATH", "/ca.pem"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("unset one"), "{err}");
    }

    #[test]
    fn server_uris() {
        let check = |raw: &str, expected: Result<(&str, Option<&str>), &str>| {
            let got = parse_server_uri("MLFLOW_TRACKING_URI", raw);
            match (got, expected) {
                (Ok(server), Ok((base, user))) => {
                    assert_eq!(server.display(), base, "{raw}");
                    assert_eq!(
                        server.userinfo.as_ref().map(|(u, _)| u.as_str()),
                        user,
                        "{raw}"
                    );
                }
                (Err(why), Err(want)) => {
                    assert!(why.contains(want), "{raw}: {why:?} lacks {want:?}");
                    assert!(!why.contains("hunter2"), "{why}");
                }
                (got, _) => panic!("{raw}: unexpected {:?}", got.map(|s| s.display())),
            }
        };
        check("http://127.0.0.1:5000", Ok(("http://127.0.0.1:5000", None)));
        check(
            "https://mlflow.example/prefix/",
            Ok(("https://mlflow.example/prefix", None)),
        );
        check(
            "http://bob:hunter2@h:5000/?x=1",
            Ok(("http://h:5000", Some("bob"))),
        );
        check("databricks", Err("is not supported"));
        check("databricks://profile", Err("is not supported"));
        check("sqlite:///mlflow.db", Err("is not an http(s) address"));
        check("./mlruns", Err("is not an http(s) address"));
        check(
            "postgresql://bob:hunter2@db/mlflow",
            Err("'postgresql://db/mlflow' is not"),
        );
    }

    #[test]
    fn redaction() {
        let check = |raw: &str, expected: &str| assert_eq!(redact_uri(raw), expected, "{raw}");
        check("http://h:5000/p", "http://h:5000/p");
        check("http://bob:hunter2@h:5000/p", "http://h:5000/p");
        check("https://tok@h/", "https://h/");
        check("https://h/p?token=hunter2#frag", "https://h/p");
        check("mlflow-artifacts:/0/x", "mlflow-artifacts:/0/x");
    }

    #[test]
    fn debug_never_shows_credentials() {
        let mut settings = from(&[
            ("MLFLOW_TRACKING_URI", "http://bob:hunter2@h:5000"),
            ("MLFLOW_TRACKING_TOKEN", "tok-hunter2"),
            ("MLFLOW_TRACKING_USERNAME", "alice"),
            ("MLFLOW_TRACKING_PASSWORD", "pw-hunter2"),
        ])
        .unwrap();
        settings.registry_uri = Some("https://x:hunter2@r/?token=hunter2".into());
        let shown = format!(
            "{settings:?} {:?} {}",
            Secret::new("hunter2"),
            Secret::new("hunter2")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("http://h:5000"),
            "{shown}"
        );
    }
}
