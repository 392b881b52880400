//! Where an object store location is: the store (`s3://bucket`, `gs://bucket`, Azure
//! `wasbs://container@account`, a plain `http(s)://` server) and the key prefix below it, parsed
//! from a URI ([`StoreLocation::parse`]). Pure; the URI forms (`uri.rs`) and the object store
//! reads (`artifacts/store`) both build on it.

use reqwest::Url;

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
