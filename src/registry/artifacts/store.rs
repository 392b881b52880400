//! Object stores read directly, through the `object_store` crate: `s3://` (AWS and
//! S3-compatible stores such as MinIO or Ceph), `gs://`, `wasbs://` / `abfss://` (Azure Blob and
//! ADLS Gen2) and plain `http(s)://` servers that list with WebDAV. This is how hotserve reads an
//! MLflow server that does not proxy artifacts (`--no-serve-artifacts`), and a bucket named as
//! `MODEL_URI` without MLflow.
//!
//! Credentials come from the variables MLflow's own clients read (boto3, google-cloud-storage,
//! azure-storage-blob), through the same environment closure as the MLflow settings
//! ([`StoreSettings`]); their values are held in [`Secret`]s and never reach a message. A
//! listing records each object's ETag (or last-modified time): downloads ask for exactly the
//! listed version (`If-Match`), and [`Snapshot`]s taken before and after a download must agree,
//! so a model that is being uploaded is never loaded. Retries with backoff and jitter are the
//! crate's, configured from `MLFLOW_HTTP_REQUEST_*`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::http::HttpBuilder;
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ClientOptions, GetOptions, ObjectStore, RetryConfig};
use reqwest::Url;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{unsafe_path, MAX_FILES};
use crate::files::{confine, hex, FileDigest};
use crate::registry::{MlflowSettings, RegistryError, RemoteFile, Secret};

/// An object store location: which store, and the key prefix below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLocation {
    /// The store and its bucket (or container).
    pub store: Store,
    /// The key prefix, without leading or trailing `/`; empty for a whole bucket.
    pub prefix: String,
}

/// Which object store a location is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// `s3://<bucket>` (also `s3a://`, `s3n://`, as Spark and MLflow write them).
    S3 { bucket: String },
    /// `gs://<bucket>`.
    Gcs { bucket: String },
    /// `wasbs://<container>@<account>.blob.core.windows.net` or
    /// `abfss://<container>@<account>.dfs.core.windows.net`; `scheme` is as written.
    Azure {
        scheme: String,
        container: String,
        account: String,
    },
    /// A plain http(s) server (WebDAV listing); `base` is scheme, host and port.
    Http { base: Url },
}

impl Store {
    /// The store as messages name it: `s3://bucket`, `wasbs://container@account`.
    pub fn display(&self) -> String {
        match self {
            Store::S3 { bucket } => format!("s3://{bucket}"),
            Store::Gcs { bucket } => format!("gs://{bucket}"),
            Store::Azure {
                scheme,
                container,
                account,
            } => format!("{scheme}://{container}@{account}"),
            Store::Http { base } => base.as_str().trim_end_matches('/').to_string(),
        }
    }

    /// What to set when this store refuses hotserve or hotserve has no credentials for it.
    pub fn advice(&self) -> &'static str {
        match self {
            Store::S3 { .. } => {
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for \
                 temporary credentials), or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE, or \
                 AWS_PROFILE with keys in ~/.aws/credentials, or run where instance or container \
                 credentials are available; AWS_DEFAULT_REGION for \
                 the bucket's region, MLFLOW_S3_ENDPOINT_URL for S3-compatible stores; and check \
                 that these credentials may list and read the bucket"
            }
            Store::Gcs { .. } => {
                "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run where \
                 workload identity or the metadata server provides credentials; and check that \
                 they may list and read the bucket"
            }
            Store::Azure { .. } => {
                "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCESS_KEY, or \
                 AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or \
                 AZURE_FEDERATED_TOKEN_FILE), or run where a managed identity is available; and \
                 check that it may list and read the container"
            }
            Store::Http { .. } => {
                "check that the server lists the location with WebDAV (PROPFIND) and serves its \
                 files"
            }
        }
    }
}

impl StoreLocation {
    /// Parses an object store URI; `None` when `uri` is not one (its scheme names no store
    /// this module reads), `Some(Err(why))` when it names one but is malformed.
    pub fn parse(uri: &str) -> Option<Result<StoreLocation, String>> {
        let (scheme, rest) = uri.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(
            scheme.as_str(),
            "s3" | "s3a" | "s3n" | "gs" | "wasbs" | "wasb" | "abfss" | "abfs" | "http" | "https"
        ) {
            return None;
        }
        Some(parse_store(&scheme, rest))
    }

    /// The location as a URI, for messages and as the canonical spelling of a `MODEL_URI`.
    pub fn display(&self) -> String {
        if self.prefix.is_empty() {
            self.store.display()
        } else {
            format!("{}/{}", self.store.display(), self.prefix)
        }
    }
}

fn parse_store(scheme: &str, rest: &str) -> Result<StoreLocation, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if rest.contains(['?', '#']) {
        return Err("query strings and fragments are not supported in a store URI".into());
    }
    let prefix = path.trim_matches('/').to_string();
    if prefix
        .split('/')
        .any(|segment| matches!(segment, "." | "..") || (segment.is_empty() && !prefix.is_empty()))
    {
        return Err("the path may not contain empty, '.' or '..' segments".into());
    }
    if authority.is_empty() {
        return Err(format!(
            "the bucket is missing; write {scheme}://<bucket>/<path>"
        ));
    }
    let store = match scheme {
        "s3" | "s3a" | "s3n" | "gs" => {
            let valid = authority
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
            if !valid {
                return Err(format!(
                    "'{authority}' is not a bucket name (lowercase letters, digits, '-', '.', '_')"
                ));
            }
            let bucket = authority.to_string();
            if scheme == "gs" {
                Store::Gcs { bucket }
            } else {
                Store::S3 { bucket }
            }
        }
        "wasbs" | "wasb" | "abfss" | "abfs" => {
            let form = format!(
                "write {scheme}://<container>@<account>.{}.core.windows.net/<path>",
                if scheme.starts_with("wasb") {
                    "blob"
                } else {
                    "dfs"
                }
            );
            let Some((container, host)) = authority.split_once('@') else {
                return Err(format!("the container or account is missing; {form}"));
            };
            let account = host.split('.').next().unwrap_or("");
            if container.is_empty() || account.is_empty() {
                return Err(format!("the container or account is missing; {form}"));
            }
            Store::Azure {
                scheme: scheme.to_string(),
                container: container.to_string(),
                account: account.to_string(),
            }
        }
        _ => {
            if authority.contains('@') {
                return Err("credentials in a store URL are not supported".into());
            }
            let base = Url::parse(&format!("{scheme}://{authority}/"))
                .map_err(|_| format!("'{authority}' is not a valid host[:port]"))?;
            Store::Http { base }
        }
    };
    Ok(StoreLocation { store, prefix })
}

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
    /// The store for `location`, opened on first use (an S3 store reads the AWS profile
    /// files then, on the blocking pool).
    pub(crate) async fn open(
        &self,
        settings: &MlflowSettings,
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
        let built = build(settings, uri, store, &profile)?;
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(open.entry(key).or_insert(built).clone())
    }
}

/// Builds a store client from the settings.
fn build(
    settings: &MlflowSettings,
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

/// One object as listed, with what identifies its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Path relative to the location's prefix.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The object's ETag, when the store has one.
    pub e_tag: Option<String>,
    /// Last-modified time, RFC 3339.
    pub modified: String,
}

/// A listing of a location, sorted by path: what a download is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot(pub Vec<Listed>);

impl Snapshot {
    /// The files, as the registry layer describes them.
    pub fn files(&self) -> Vec<RemoteFile> {
        self.0
            .iter()
            .map(|f| RemoteFile {
                path: f.path.clone(),
                size: Some(f.size),
            })
            .collect()
    }

    /// A short digest of every (path, size, ETag or last-modified): changes whenever any
    /// object is added, removed or rewritten. Bucket `MODEL_URI`s use it as their version.
    pub fn version(&self) -> String {
        let mut hasher = Sha256::new();
        for file in &self.0 {
            let tag = file.e_tag.as_deref().unwrap_or(&file.modified);
            hasher.update(format!("{} {} {tag}\n", file.path, file.size));
        }
        hex(&hasher.finalize())[..12].to_string()
    }

    /// What differs from `later`, in words, or `None` when nothing does.
    pub fn difference(&self, later: &Snapshot) -> Option<String> {
        let before: BTreeMap<&str, &Listed> = self.0.iter().map(|f| (f.path.as_str(), f)).collect();
        let after: BTreeMap<&str, &Listed> = later.0.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut changes = Vec::new();
        for (path, file) in &before {
            match after.get(path) {
                None => changes.push(format!("'{path}' was removed")),
                Some(now) if now != file => changes.push(format!("'{path}' was rewritten")),
                Some(_) => {}
            }
        }
        for path in after.keys().filter(|p| !before.contains_key(*p)) {
            changes.push(format!("'{path}' was added"));
        }
        (!changes.is_empty()).then(|| changes.join(", "))
    }
}

/// Lists every object below `location`, sorted by path.
pub(crate) async fn list(
    stores: &Stores,
    settings: &MlflowSettings,
    uri: &str,
    location: &StoreLocation,
) -> Result<Snapshot, RegistryError> {
    let store = stores.open(settings, uri, &location.store).await?;
    let prefix = (!location.prefix.is_empty()).then(|| StorePath::from(location.prefix.as_str()));
    let mut listing = store.list(prefix.as_ref());
    let mut files = Vec::new();
    loop {
        let next = tokio::time::timeout(settings.request_timeout, listing.next()).await;
        let meta = match next {
            Err(_) => return Err(silent(uri, &location.store, settings.request_timeout)),
            Ok(None) => break,
            Ok(Some(Err(err))) => return Err(store_error(uri, location, err)),
            Ok(Some(Ok(meta))) => meta,
        };
        let key = meta.location.as_ref();
        let path = match location.prefix.as_str() {
            "" => key,
            prefix => key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(key),
        };
        confine(path).map_err(|reason| unsafe_path(uri, path, reason.to_string()))?;
        if files.len() >= MAX_FILES {
            return Err(unsafe_path(
                uri,
                path,
                "the listing is implausibly large".into(),
            ));
        }
        files.push(Listed {
            path: path.to_string(),
            size: meta.size,
            e_tag: meta.e_tag,
            modified: meta.last_modified.to_rfc3339(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot(files))
}

/// Streams `file` (listed in `location`) into `target`, which must not exist, asking for the
/// listed version only; stops as soon as more bytes arrive than were listed.
pub(crate) async fn fetch(
    stores: &Stores,
    settings: &MlflowSettings,
    uri: &str,
    location: &StoreLocation,
    file: &Listed,
    target: &Path,
) -> Result<FileDigest, RegistryError> {
    let store = stores.open(settings, uri, &location.store).await?;
    let key = match location.prefix.as_str() {
        "" => file.path.clone(),
        prefix => format!("{prefix}/{}", file.path),
    };
    let options = GetOptions {
        if_match: file.e_tag.clone(),
        ..GetOptions::default()
    };
    let timeout = settings.request_timeout;
    let key = StorePath::from(key);
    let got = match tokio::time::timeout(timeout, store.get_opts(&key, options)).await {
        Err(_) => return Err(silent(uri, &location.store, timeout)),
        Ok(Ok(got)) => got,
        Ok(Err(err)) => {
            // Stores answer a failed If-Match with 412, some emulators with 403: either way,
            // an object whose ETag moved was rewritten, which is not a refusal.
            let rewritten = match (&file.e_tag, store.head(&key).await) {
                (Some(listed), Ok(now)) => now.e_tag.as_ref() != Some(listed),
                _ => false,
            };
            return Err(if rewritten {
                RegistryError::ListingChanged {
                    uri: uri.to_string(),
                    artifact_uri: location.display(),
                    what: format!("'{}' was rewritten", file.path),
                }
            } else {
                store_error(uri, location, err)
            });
        }
    };
    let mut body = got.into_stream();
    let io_error = |source| RegistryError::Io {
        uri: uri.to_string(),
        action: "write",
        path: target.to_path_buf(),
        source,
    };
    let handle = tokio::fs::File::create_new(target)
        .await
        .map_err(io_error)?;
    let mut writer = tokio::io::BufWriter::with_capacity(256 * 1024, handle);
    let mut hasher = Sha256::new();
    let mut received: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(timeout, body.next()).await {
            Err(_) => return Err(silent(uri, &location.store, timeout)),
            Ok(None) => break,
            Ok(Some(Err(err))) => {
                return Err(RegistryError::StoreUnavailable {
                    uri: uri.to_string(),
                    store: location.store.display(),
                    reason: format!(
                        "the download of '{}' broke after {received} bytes: {}",
                        file.path,
                        redact(&error_chain(&err))
                    ),
                })
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        received += chunk.len() as u64;
        if received > file.size {
            break;
        }
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(io_error)?;
    }
    if received != file.size {
        return Err(RegistryError::SizeMismatch {
            uri: uri.to_string(),
            path: file.path.clone(),
            expected: file.size,
            actual: received,
        });
    }
    writer.flush().await.map_err(io_error)?;
    writer.get_ref().sync_all().await.map_err(io_error)?;
    Ok(FileDigest {
        path: file.path.clone(),
        size: received,
        sha256: hex(&hasher.finalize()),
    })
}

/// The largest object read as a pointer.
const MAX_POINTER: u64 = 1024;

/// Follows a pointer object: when `location`'s whole prefix is the key of one small object
/// (`s3://bucket/sentiment/current`), its text names the model's location. `None` when there
/// is no such object. Publishing a version is then one atomic `PUT` of the pointer, after
/// every file of the version is in place under its own prefix.
pub(crate) async fn follow_pointer(
    stores: &Stores,
    settings: &MlflowSettings,
    uri: &str,
    location: &StoreLocation,
) -> Result<Option<StoreLocation>, RegistryError> {
    if location.prefix.is_empty() {
        return Ok(None);
    }
    let store = stores.open(settings, uri, &location.store).await?;
    let key = StorePath::from(location.prefix.as_str());
    let timeout = settings.request_timeout;
    let meta = match tokio::time::timeout(timeout, store.head(&key)).await {
        Err(_) => return Err(silent(uri, &location.store, timeout)),
        Ok(Err(object_store::Error::NotFound { .. })) => return Ok(None),
        Ok(Err(err)) => return Err(store_error(uri, location, err)),
        Ok(Ok(meta)) => meta,
    };
    let refused = |reason: String| RegistryError::UnsupportedArtifactUri {
        uri: uri.to_string(),
        artifact_uri: location.display(),
        reason,
    };
    if meta.size > MAX_POINTER {
        return Err(refused(format!(
            "it is one object of {} bytes, not a folder of model files nor a pointer (at most \
             {MAX_POINTER} bytes naming the model's folder); point MODEL_URI at the folder",
            meta.size
        )));
    }
    let read = async {
        let got = store.get(&key).await?;
        got.bytes().await
    };
    let bytes = match tokio::time::timeout(timeout, read).await {
        Err(_) => return Err(silent(uri, &location.store, timeout)),
        Ok(Err(err)) => return Err(store_error(uri, location, err)),
        Ok(Ok(bytes)) => bytes,
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| refused("the pointer object is not text".into()))?;
    pointer_target(location, text).map(Some).map_err(refused)
}

/// The location a pointer's text names: a URI in the same store and bucket, or a folder
/// relative to the pointer's own folder (`versions/7` beside `sentiment/current` is
/// `sentiment/versions/7`).
pub(crate) fn pointer_target(pointer: &StoreLocation, text: &str) -> Result<StoreLocation, String> {
    let text = text.trim();
    let advice = "the pointer must hold one line: the folder of the current version, relative to \
                  the pointer (versions/7) or as a URI in the same bucket";
    if text.is_empty() || text.contains('\n') {
        return Err(format!(
            "the pointer object is empty or has several lines; {advice}"
        ));
    }
    if text.contains("://") {
        return match StoreLocation::parse(text) {
            Some(Ok(target)) if target.store == pointer.store && !target.prefix.is_empty() => {
                Ok(target)
            }
            _ => Err(format!(
                "the pointer names '{text}', which is not a folder in {}; {advice}",
                pointer.store.display()
            )),
        };
    }
    let relative = text.trim_matches('/');
    confine(relative).map_err(|why| format!("the pointer names '{text}': {why}; {advice}"))?;
    let prefix = match pointer.prefix.rsplit_once('/') {
        Some((folder, _)) => format!("{folder}/{relative}"),
        None => relative.to_string(),
    };
    Ok(StoreLocation {
        store: pointer.store.clone(),
        prefix,
    })
}

/// No byte within the request timeout.
fn silent(uri: &str, store: &Store, timeout: Duration) -> RegistryError {
    RegistryError::StoreUnavailable {
        uri: uri.to_string(),
        store: store.display(),
        reason: format!(
            "no answer within {} s (MLFLOW_HTTP_REQUEST_TIMEOUT)",
            timeout.as_secs_f64()
        ),
    }
}

/// Maps a store failure onto the layer's error: refusals (401, 403, a missing bucket, bad
/// credentials) tell the user what to set; throttling, 5xx and broken connections are
/// transient; an object rewritten since it was listed is a changed listing.
fn store_error(uri: &str, location: &StoreLocation, err: object_store::Error) -> RegistryError {
    let chain = error_chain(&err);
    let transient = is_transient_text(&chain);
    let reason = summarize(&chain);
    let store = location.store.display();
    match err {
        object_store::Error::Precondition { path, .. } => RegistryError::ListingChanged {
            uri: uri.to_string(),
            artifact_uri: location.display(),
            what: format!("'{path}' was rewritten"),
        },
        object_store::Error::Generic { .. } if transient => RegistryError::StoreUnavailable {
            uri: uri.to_string(),
            store,
            reason,
        },
        _ => RegistryError::StoreRefused {
            uri: uri.to_string(),
            store,
            reason,
            advice: location.store.advice().to_string(),
        },
    }
}

/// Whether a store error's text says it may pass: a 408/429/5xx status, throttling, or no
/// HTTP status at all (a connection that failed or broke).
fn is_transient_text(text: &str) -> bool {
    const MARK: &str = "status code: ";
    match text.find(MARK) {
        Some(at) => {
            let status: String = text[at + MARK.len()..].chars().take(3).collect();
            crate::registry::error::is_transient_status(status.parse().unwrap_or(0))
        }
        None => !text.contains("Error getting credentials") && !text.contains("credential"),
    }
}

/// A store failure in one line: `HTTP 403 AccessDenied: Access Denied (after 3 retries)` when
/// the store answered (S3 and Azure put `<Code>` and `<Message>` in their XML errors), the
/// redacted error chain otherwise (a connection that failed, missing credentials).
fn summarize(chain: &str) -> String {
    const MARK: &str = "status code: ";
    let Some(at) = chain.find(MARK) else {
        return redact(chain);
    };
    let status: String = chain[at + MARK.len()..].chars().take(3).collect();
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = chain.find(&open)? + open.len();
        let length = chain[start..].find(&close)?;
        Some(redact(chain[start..start + length].trim()))
    };
    let mut text = match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("HTTP {status} {code}: {message}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        _ => format!("HTTP {status}"),
    };
    if let Some(retries) = chain
        .split(", after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
    {
        text.push_str(&format!(" (after {retries} retries)"));
    }
    text
}

/// An error and its sources, `: `-separated, with repeated texts dropped.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// Removes what may carry a credential from an error text: the query string and userinfo of
/// every URL (signed URLs and SAS tokens live there), and XML elements that echo signatures.
/// Long texts are cut.
pub(crate) fn redact(text: &str) -> String {
    let mut out = Vec::new();
    for word in text.split(' ') {
        if word.contains("://") {
            let cut = word.find('?').map_or(word, |at| &word[..at]);
            let cut = match (cut.find("://"), cut.find('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}{}", &cut[..scheme + 3], &cut[at + 1..])
                }
                _ => cut.to_string(),
            };
            out.push(if cut.len() < word.len() && word.contains('?') {
                format!("{cut}?<redacted>")
            } else {
                cut
            });
        } else if word.to_ascii_lowercase().contains("signature")
            || word.contains("sig=")
            || word.contains("X-Amz-")
        {
            out.push("<redacted>".into());
        } else {
            out.push(word.to_string());
        }
    }
    let mut text = out.join(" ").replace('\n', " ");
    if text.len() > 400 {
        let mut end = 400;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: Option<Result<(&str, &str), &str>>) {
        let got = StoreLocation::parse(uri);
        match (got, expected) {
            (None, None) => {}
            (Some(Ok(location)), Some(Ok((store, prefix)))) => {
                assert_eq!(
                    (location.store.display().as_str(), location.prefix.as_str()),
                    (store, prefix),
                    "{uri}"
                );
            }
            (Some(Err(why)), Some(Err(want))) => {
                assert!(why.contains(want), "{uri}: {why:?} lacks {want:?}")
            }
            (got, want) => panic!("{uri}: got {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn locations() {
        check(
            "s3://models/sentiment/v3",
            Some(Ok(("s3://models", "sentiment/v3"))),
        );
        check(
            "s3://models/sentiment/",
            Some(Ok(("s3://models", "sentiment"))),
        );
        check("S3://models", Some(Ok(("s3://models", ""))));
        check("s3a://b/x", Some(Ok(("s3://b", "x"))));
        check("gs://b/1/x", Some(Ok(("gs://b", "1/x"))));
        check(
            "wasbs://c@acct.blob.core.windows.net/0/x",
            Some(Ok(("wasbs://c@acct", "0/x"))),
        );
        check(
            "abfss://c@acct.dfs.core.windows.net/x",
            Some(Ok(("abfss://c@acct", "x"))),
        );
        check(
            "https://files.example:8443/m/1",
            Some(Ok(("https://files.example:8443", "m/1"))),
        );
        check("s3:///x", Some(Err("the bucket is missing")));
        check("s3://Bad_Bucket/x", Some(Err("not a bucket name")));
        check("s3://b/a/../c", Some(Err("'..' segments")));
        check("s3://b/a//c", Some(Err("empty")));
        check("s3://b/x?versionId=1", Some(Err("query strings")));
        check(
            "wasbs://acct.blob.core.windows.net/x",
            Some(Err("container or account")),
        );
        check("https://u:p@h/x", Some(Err("credentials")));
        check("dbfs:/x", None);
        check("hdfs://nn/x", None);
        check("models:/x/1", None);
    }

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

    #[test]
    fn redaction() {
        let check = |text: &str, expected: &str| assert_eq!(redact(text), expected, "{text}");
        check(
            "Error performing GET https://a.blob.core.windows.net/c/x?sv=1&sig=abc in 1s",
            "Error performing GET https://a.blob.core.windows.net/c/x?<redacted> in 1s",
        );
        check("GET http://user:pw@h/x failed", "GET http://h/x failed");
        check("bad Signature=abc here", "bad <redacted> here");
        check("plain", "plain");
    }

    #[test]
    fn summaries() {
        let check = |chain: &str, expected: &str| assert_eq!(summarize(chain), expected);
        check(
            "Generic S3 error: Error performing GET http://h/models?list-type=2 in 1ms - Server \
             returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error>\
             <Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
            "HTTP 403 AccessDenied: Access Denied",
        );
        check(
            "Error performing GET http://h/m/x in 100ms, after 3 retries, max_retries: 3, \
             retry_timeout: 300s  - Server returned non-2xx status code: 503 Service Unavailable: ",
            "HTTP 503 (after 3 retries)",
        );
        check(
            "Generic S3 error: HTTP error: error sending request for url (http://h/x?sig=1)",
            "Generic S3 error: HTTP error: error sending request for url (http://h/x?<redacted>",
        );
    }

    #[test]
    fn transient_texts() {
        let check =
            |text: &str, expected: bool| assert_eq!(is_transient_text(text), expected, "{text}");
        check(
            "Server returned non-2xx status code: 503 Service Unavailable: SlowDown",
            true,
        );
        check(
            "Server returned non-2xx status code: 500 Internal Server Error",
            true,
        );
        check(
            "Server returned non-2xx status code: 400 Bad Request",
            false,
        );
        check("HTTP error: error sending request", true);
        check("Error getting credentials from provider", false);
    }

    #[test]
    fn pointers() {
        let pointer = StoreLocation::parse("s3://models/sentiment/current")
            .unwrap()
            .unwrap();
        let check = |text: &str, expected: Result<&str, &str>| match (
            pointer_target(&pointer, text),
            expected,
        ) {
            (Ok(target), Ok(want)) => assert_eq!(target.display(), want, "{text:?}"),
            (Err(why), Err(want)) => assert!(why.contains(want), "{text:?}: {why}"),
            (got, want) => panic!("{text:?}: got {got:?}, expected {want:?}"),
        };
        check("versions/7\n", Ok("s3://models/sentiment/versions/7"));
        check("/versions/7/", Ok("s3://models/sentiment/versions/7"));
        check("s3://models/elsewhere/7", Ok("s3://models/elsewhere/7"));
        check("s3://other/7", Err("not a folder in s3://models"));
        check("s3://models", Err("not a folder in s3://models"));
        check("../x", Err("'..' segments"));
        check("", Err("empty"));
        check("a\nb", Err("several lines"));
        let top = StoreLocation::parse("s3://models/current")
            .unwrap()
            .unwrap();
        assert_eq!(
            pointer_target(&top, "v7").unwrap().display(),
            "s3://models/v7"
        );
    }

    #[test]
    fn snapshots_see_every_change() {
        let file = |path: &str, size: u64, tag: &str| Listed {
            path: path.into(),
            size,
            e_tag: Some(tag.into()),
            modified: "2026-01-01T00:00:00+00:00".into(),
        };
        let before = Snapshot(vec![file("MLmodel", 3, "a"), file("model.onnx", 9, "b")]);
        let check = |after: Vec<Listed>, expected: Option<&str>| {
            let after = Snapshot(after);
            assert_eq!(before.difference(&after).as_deref(), expected);
            assert_eq!(before.version() == after.version(), expected.is_none());
        };
        check(
            vec![file("MLmodel", 3, "a"), file("model.onnx", 9, "b")],
            None,
        );
        check(
            vec![file("MLmodel", 3, "a"), file("model.onnx", 9, "c")],
            Some("'model.onnx' was rewritten"),
        );
        check(
            vec![file("MLmodel", 3, "a")],
            Some("'model.onnx' was removed"),
        );
        check(
            vec![
                file("MLmodel", 3, "a"),
                file("model.onnx", 9, "b"),
                file("x", 1, "d"),
            ],
            Some("'x' was added"),
        );
    }
}
