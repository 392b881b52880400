//! Credentials and endpoints of object stores, from the variables MLflow's own clients read
//! (boto3, google-cloud-storage, azure-storage-blob) through the settings' environment
//! closure: [`StoreSettings`] keeps the ones that are set as [`Secret`]s (`Debug` shows names
//! only), AWS profiles come from the shared credentials and config files, and [`Stores`] builds
//! one `object_store` client per bucket on first use and keeps it (connection pool, credential
//! cache) for the life of the MLflow client.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::Access;
use super::{error_chain, redact, Store};
use crate::registry::{RegistryError, Secret};

/// The variables object stores are configured from, as MLflow's clients read them. Only
/// variables that are set are kept; values are secrets, `Debug` shows names only.
#[derive(Clone, Default, PartialEq)]
pub struct StoreSettings {
    /// Variable name -> value, for every variable of [`VARIABLES`] that is set and not empty.
    vars: BTreeMap<&'static str, Secret>,
}

/// Every variable [`StoreSettings`] reads.
pub const VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "HOME",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "MLFLOW_S3_ENDPOINT_URL",
    "MLFLOW_S3_IGNORE_TLS",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
];

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("set", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl StoreSettings {
    /// Reads [`VARIABLES`] through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> StoreSettings {
        let vars = VARIABLES
            .iter()
            .filter_map(|name| {
                let value = env(name)?.trim().to_string();
                (!value.is_empty()).then(|| (*name, Secret::new(value)))
            })
            .collect();
        StoreSettings { vars }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(Secret::expose)
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
    }

    /// Whether the environment itself carries S3 credentials (keys or web identity), which
    /// win over a profile, as in boto3's chain.
    fn has_s3_env_credentials(&self) -> bool {
        let has = |name| self.get(name).is_some();
        has("AWS_ACCESS_KEY_ID") || (has("AWS_ROLE_ARN") && has("AWS_WEB_IDENTITY_TOKEN_FILE"))
    }

    /// Why no S3 credentials can be found, when that is certain before asking the store:
    /// no keys, no web identity, no profile keys, no container credentials, and instance
    /// metadata disabled.
    fn missing_s3_credentials(&self, profile: &Profile) -> bool {
        let has = |name| self.get(name).is_some();
        !(self.has_s3_env_credentials()
            || profile.keys.is_some()
            || has("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            || has("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
            && self.flag("AWS_EC2_METADATA_DISABLED")
    }

    /// The shared credentials and config files of `AWS_PROFILE` (or `default`), as boto3
    /// finds them. Blocking file IO: call it off the async runtime.
    fn read_profile(&self) -> Result<Profile, String> {
        if self.has_s3_env_credentials() {
            return Ok(Profile::default());
        }
        let home = self.get("HOME").map(|home| Path::new(home).join(".aws"));
        let path = |variable: &str, file: &str| {
            self.get(variable)
                .map(std::path::PathBuf::from)
                .or_else(|| home.as_ref().map(|dir| dir.join(file)))
        };
        let read = |path: &Option<std::path::PathBuf>| {
            path.as_ref()
                .and_then(|path| std::fs::read_to_string(path).ok())
                .unwrap_or_default()
        };
        let credentials = path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
        let config = path("AWS_CONFIG_FILE", "config");
        parse_profile(&read(&credentials), &read(&config), self.get("AWS_PROFILE"))
    }

    /// The S3 configuration: `(object_store key, value)` pairs.
    fn s3_config(&self) -> Vec<(AmazonS3ConfigKey, String)> {
        let pairs = [
            ("AWS_ACCESS_KEY_ID", AmazonS3ConfigKey::AccessKeyId),
            ("AWS_SECRET_ACCESS_KEY", AmazonS3ConfigKey::SecretAccessKey),
            ("AWS_SESSION_TOKEN", AmazonS3ConfigKey::Token),
            ("AWS_DEFAULT_REGION", AmazonS3ConfigKey::Region),
            ("AWS_REGION", AmazonS3ConfigKey::Region),
            ("AWS_ROLE_ARN", AmazonS3ConfigKey::RoleArn),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                AmazonS3ConfigKey::WebIdentityTokenFile,
            ),
            ("AWS_ROLE_SESSION_NAME", AmazonS3ConfigKey::RoleSessionName),
            ("AWS_ENDPOINT_URL_STS", AmazonS3ConfigKey::StsEndpoint),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                AmazonS3ConfigKey::ContainerCredentialsFullUri,
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                AmazonS3ConfigKey::ContainerAuthorizationTokenFile,
            ),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                AmazonS3ConfigKey::MetadataEndpoint,
            ),
            ("MLFLOW_S3_ENDPOINT_URL", AmazonS3ConfigKey::Endpoint),
        ];
        let mut config: Vec<(AmazonS3ConfigKey, String)> = pairs
            .into_iter()
            .filter_map(|(name, key)| Some((key, self.get(name)?.to_string())))
            .collect();
        if self.get("MLFLOW_S3_ENDPOINT_URL").is_some() {
            // S3-compatible stores are addressed by path, as boto3 does with an endpoint URL.
            config.push((AmazonS3ConfigKey::VirtualHostedStyleRequest, "false".into()));
        }
        config
    }

    /// The Azure configuration for `account`: `(object_store key, value)` pairs, from a
    /// connection string (`AccountName`, `AccountKey`, `BlobEndpoint`, `SharedAccessSignature`)
    /// and the identity variables.
    fn azure_config(&self, account: &str) -> Vec<(AzureConfigKey, String)> {
        let mut config = vec![(AzureConfigKey::AccountName, account.to_string())];
        if let Some(connection) = self.get("AZURE_STORAGE_CONNECTION_STRING") {
            for part in connection.split(';') {
                let Some((key, value)) = part.split_once('=') else {
                    continue;
                };
                let value = value.trim().to_string();
                match key.trim() {
                    "AccountName" => config[0].1 = value,
                    "AccountKey" => config.push((AzureConfigKey::AccessKey, value)),
                    "BlobEndpoint" => config.push((AzureConfigKey::Endpoint, value)),
                    "SharedAccessSignature" => config.push((AzureConfigKey::SasKey, value)),
                    _ => {}
                }
            }
        }
        let pairs = [
            ("AZURE_STORAGE_ACCESS_KEY", AzureConfigKey::AccessKey),
            ("AZURE_CLIENT_ID", AzureConfigKey::ClientId),
            ("AZURE_CLIENT_SECRET", AzureConfigKey::ClientSecret),
            ("AZURE_TENANT_ID", AzureConfigKey::AuthorityId),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                AzureConfigKey::FederatedTokenFile,
            ),
            ("AZURE_AUTHORITY_HOST", AzureConfigKey::AuthorityHost),
        ];
        for (name, key) in pairs {
            if let Some(value) = self.get(name) {
                config.push((key, value.to_string()));
            }
        }
        config
    }

    /// Whether a store at `endpoint` may be reached over plain http (an emulator, MinIO).
    fn allows_http(endpoint: Option<&str>) -> bool {
        endpoint.is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"))
    }
}

/// What an AWS profile of the shared files provides.
#[derive(Clone, Debug, Default, PartialEq)]
struct Profile {
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`.
    keys: Option<(String, Secret, Option<Secret>)>,
    /// `region`, from the config file.
    region: Option<String>,
}

/// Reads profile `name` (`default` when `None`) from the texts of the shared credentials and
/// config files. Only static keys are read; a profile named explicitly that does not exist or
/// has no keys is an error that says what to do instead.
fn parse_profile(credentials: &str, config: &str, name: Option<&str>) -> Result<Profile, String> {
    let explicit = name.is_some();
    let name = name.unwrap_or("default");
    let config_section = if name == "default" {
        "default".to_string()
    } else {
        format!("profile {name}")
    };
    let from_credentials = ini_section(credentials, name);
    let from_config = ini_section(config, &config_section);
    if explicit && from_credentials.is_none() && from_config.is_none() {
        return Err(format!(
            "AWS_PROFILE='{name}' is in neither the shared credentials file nor the config file \
             (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, ~/.aws/)"
        ));
    }
    let keys_from = |section: &HashMap<String, String>| {
        let id = section.get("aws_access_key_id")?;
        let secret = section.get("aws_secret_access_key")?;
        Some((
            id.clone(),
            Secret::new(secret.clone()),
            section
                .get("aws_session_token")
                .map(|t| Secret::new(t.clone())),
        ))
    };
    let keys = from_credentials
        .as_ref()
        .and_then(keys_from)
        .or_else(|| from_config.as_ref().and_then(keys_from));
    if explicit && keys.is_none() {
        return Err(format!(
            "AWS_PROFILE='{name}' has no aws_access_key_id and aws_secret_access_key; hotserve \
             reads static keys from profiles, so for role_arn, sso or credential_process \
             profiles export the credentials (aws configure export-credentials --format env) or \
             use AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE"
        ));
    }
    Ok(Profile {
        keys,
        region: from_config.and_then(|section| section.get("region").cloned()),
    })
}

/// The `key = value` pairs of `[section]` in an INI text, or `None` without that section.
fn ini_section(text: &str, section: &str) -> Option<HashMap<String, String>> {
    let mut found: Option<HashMap<String, String>> = None;
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            if inside {
                found.get_or_insert_with(HashMap::new);
            }
            continue;
        }
        if let (true, Some((key, value))) = (inside, line.split_once('=')) {
            if let Some(section) = found.as_mut() {
                section.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
    }
    found
}

/// Stores opened so far, by [`Store::display`]: their connection pools and credential caches
/// live as long as the client.
#[derive(Default)]
pub(crate) struct Stores(Mutex<HashMap<String, Arc<dyn ObjectStore>>>);

impl Stores {
    /// The store for `location`, opened on first use (reading the AWS profile files and any
    /// credential file the client needs then, on the blocking pool).
    pub(crate) async fn open(
        &self,
        settings: &Access,
        uri: &str,
        store: &Store,
    ) -> Result<Arc<dyn ObjectStore>, RegistryError> {
        let key = store.display();
        if let Some(found) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(found.clone());
        }
        let profile = match store {
            Store::S3 { .. } => {
                let vars = settings.stores.clone();
                tokio::task::spawn_blocking(move || vars.read_profile())
                    .await
                    .expect("reading the AWS profile files does not panic")
                    .map_err(|reason| RegistryError::StoreRefused {
                        uri: uri.to_string(),
                        store: store.display(),
                        reason,
                        advice: store.advice().to_string(),
                    })?
            }
            _ => Profile::default(),
        };
        // Building reads credential files (a GCS service account, an Azure token file): on the
        // blocking pool, like the profile above.
        let built = {
            let (settings, uri, store) = (settings.clone(), uri.to_string(), store.clone());
            tokio::task::spawn_blocking(move || build(&settings, &uri, &store, &profile))
                .await
                .expect("building a store client does not panic")?
        };
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(open.entry(key).or_insert(built).clone())
    }
}

/// Builds a store client from the settings.
fn build(
    settings: &Access,
    uri: &str,
    store: &Store,
    profile: &Profile,
) -> Result<Arc<dyn ObjectStore>, RegistryError> {
    let vars = &settings.stores;
    let refused = |reason: String| RegistryError::StoreRefused {
        uri: uri.to_string(),
        store: store.display(),
        reason,
        advice: store.advice().to_string(),
    };
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_secs_f64(settings.backoff_factor.max(0.01)),
            max_backoff: Duration::from_secs(120),
            base: 2.0,
        },
        max_retries: settings.max_retries as usize,
        retry_timeout: Duration::from_secs(300),
    };
    // A whole-request timeout would cut large downloads; reads are timed per chunk instead.
    let options = |endpoint: Option<&str>| {
        ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(settings.request_timeout)
            .with_allow_http(StoreSettings::allows_http(endpoint))
            .with_allow_invalid_certificates(vars.flag("MLFLOW_S3_IGNORE_TLS"))
    };
    let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match store {
        Store::S3 { bucket } => {
            if vars.missing_s3_credentials(profile) {
                return Err(refused(
                    "no AWS credentials are configured and AWS_EC2_METADATA_DISABLED forbids \
                     instance metadata"
                        .into(),
                ));
            }
            let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
            if let Some((key_id, secret, token)) = &profile.keys {
                builder = builder
                    .with_access_key_id(key_id)
                    .with_secret_access_key(secret.expose());
                if let Some(token) = token {
                    builder = builder.with_token(token.expose());
                }
            }
            if let Some(region) = &profile.region {
                builder = builder.with_region(region);
            }
            // The environment comes last: it wins over the profile, as in boto3.
            for (key, value) in vars.s3_config() {
                builder = builder.with_config(key, value);
            }
            builder
                .with_client_options(options(vars.get("MLFLOW_S3_ENDPOINT_URL")))
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _)
        }
        Store::Gcs { bucket } => {
            let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
            if let Some(path) = vars.get("GOOGLE_APPLICATION_CREDENTIALS") {
                builder = builder.with_config(GoogleConfigKey::ApplicationCredentials, path);
            }
            builder
                .with_client_options(options(None))
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _)
        }
        Store::Azure {
            container, account, ..
        } => {
            let config = vars.azure_config(account);
            let endpoint = config
                .iter()
                .find(|(key, _)| *key == AzureConfigKey::Endpoint)
                .map(|(_, value)| value.clone());
            let mut builder = MicrosoftAzureBuilder::new().with_container_name(container);
            for (key, value) in config {
                builder = builder.with_config(key, value);
            }
            builder
                .with_client_options(options(endpoint.as_deref()))
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _)
        }
        Store::Http { base } => HttpBuilder::new()
            .with_url(base.as_str())
            .with_client_options(options(Some(base.as_str())))
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
    };
    built.map_err(|err| refused(redact(&error_chain(&err))))
}
#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> StoreSettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StoreSettings::from_env(&|name| vars.get(name).cloned())
    }

    #[test]
    fn s3_configuration_follows_mlflow() {
        let vars = settings(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("UNRELATED", "x"),
        ]);
        let config = vars.s3_config();
        let has = |key: AmazonS3ConfigKey, value: &str| {
            assert!(
                config.iter().any(|(k, v)| *k == key && v == value),
                "{key:?}={value} missing"
            )
        };
        has(AmazonS3ConfigKey::AccessKeyId, "AKIA");
        has(AmazonS3ConfigKey::SecretAccessKey, "s3cr3t");
        has(AmazonS3ConfigKey::Region, "eu-west-1");
        has(AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9000");
        has(AmazonS3ConfigKey::VirtualHostedStyleRequest, "false");
        assert!(StoreSettings::allows_http(
            vars.get("MLFLOW_S3_ENDPOINT_URL")
        ));
        let none = Profile::default();
        assert!(!vars.missing_s3_credentials(&none));
        let no_metadata = settings(&[("AWS_EC2_METADATA_DISABLED", "true")]);
        assert!(no_metadata.missing_s3_credentials(&none));
        let profile = parse_profile(
            "[default]\naws_access_key_id=a\naws_secret_access_key=b",
            "",
            None,
        );
        assert!(!no_metadata.missing_s3_credentials(&profile.unwrap()));
        assert!(
            !settings(&[]).missing_s3_credentials(&none),
            "instance metadata may answer"
        );
    }

    #[test]
    fn profiles() {
        let credentials = "# comment\n[default]\naws_access_key_id = AKIADEFAULT\n\
                           aws_secret_access_key = d3fault\n\n[ci]\naws_access_key_id=AKIACI\n\
                           aws_secret_access_key=c1\naws_session_token=t0ken\n";
        let config = "[default]\nregion = eu-west-1\n[profile ci]\nregion=us-west-2\n\
                      [profile sso]\nsso_start_url=https://x\n";
        let check = |name: Option<&str>, expected: Result<(&str, Option<&str>), &str>| match (
            parse_profile(credentials, config, name),
            expected,
        ) {
            (Ok(profile), Ok((key_id, region))) => {
                assert_eq!(
                    profile.keys.map(|k| k.0).as_deref(),
                    Some(key_id),
                    "{name:?}"
                );
                assert_eq!(profile.region.as_deref(), region, "{name:?}");
            }
            (Err(why), Err(want)) => assert!(why.contains(want), "{name:?}: {why}"),
            (got, want) => panic!("{name:?}: got {got:?}, expected {want:?}"),
        };
        check(None, Ok(("AKIADEFAULT", Some("eu-west-1"))));
        check(Some("ci"), Ok(("AKIACI", Some("us-west-2"))));
        check(Some("sso"), Err("export the credentials"));
        check(Some("nope"), Err("AWS_PROFILE='nope' is in neither"));
        assert_eq!(parse_profile("", "", None), Ok(Profile::default()));
        let session = parse_profile(credentials, config, Some("ci")).unwrap();
        assert!(
            !format!("{session:?}").contains("t0ken") && !format!("{session:?}").contains("c1\"")
        );
    }

    #[test]
    fn azure_connection_strings() {
        let vars = settings(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;\
             BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
        )]);
        let config = vars.azure_config("ignored");
        assert_eq!(
            config,
            vec![
                (AzureConfigKey::AccountName, "devstoreaccount1".to_string()),
                (AzureConfigKey::AccessKey, "a2V5".to_string()),
                (
                    AzureConfigKey::Endpoint,
                    "http://127.0.0.1:10000/devstoreaccount1".to_string()
                ),
            ]
        );
    }

    #[test]
    fn azure_keys_and_identities() {
        let vars = settings(&[
            ("AZURE_STORAGE_ACCESS_KEY", "a2V5"),
            ("AZURE_CLIENT_ID", "client"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
        ]);
        assert_eq!(
            vars.azure_config("acct"),
            vec![
                (AzureConfigKey::AccountName, "acct".to_string()),
                (AzureConfigKey::AccessKey, "a2V5".to_string()),
                (AzureConfigKey::ClientId, "client".to_string()),
                (AzureConfigKey::AuthorityId, "tenant".to_string()),
                (
                    AzureConfigKey::FederatedTokenFile,
                    "/var/run/token".to_string()
                ),
            ]
        );
    }

    #[test]
    fn debug_shows_names_not_values() {
        let vars = settings(&[
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
            ("AZURE_STORAGE_CONNECTION_STRING", "AccountKey=k3y-value"),
        ]);
        let text = format!("{vars:?}");
        assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
        assert!(
            !text.contains("s3cr3t-value") && !text.contains("k3y-value"),
            "{text}"
        );
    }
}
