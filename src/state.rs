//! The application state every transport serves from ([`App`], [`Served`]): the configuration,
//! the configured models with their live versions, the inference pool, the metrics and the
//! credentials. Below the transports (HTTP, gRPC, the Open Inference Protocol), so they import
//! it and it imports none of them; built once by `app.rs`.

use std::sync::Arc;

use crate::access::AccessLog;
use crate::config::Config;
use crate::live::Live;
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::Model;
use crate::payload;
use crate::promote::shadow::Slot;
use crate::queue::{For, ModelKey, Pool};
use crate::reload::webhook::Verifier;
use crate::reload::{Reloader, Triggers};
use crate::security::keys::ApiKeysFile;
use crate::security::tls::Certificates;

/// Everything a request handler may touch.
pub struct App {
    pub config: Arc<Config>,
    /// The configured models, in configuration order (one for the `MODEL_URI` form).
    pub models: Vec<Served>,
    /// Which of `models` the un-prefixed routes (`/predict`, `/v1/model`, ...) serve.
    pub default: usize,
    /// One inference pool for every model.
    pub pool: Arc<Pool>,
    pub metrics: Arc<Metrics>,
    /// Set when `webhook_secret` is configured.
    pub webhook: Option<Verifier>,
    /// The certificate served, when `tls_cert_file` is configured (for `/health`).
    pub tls: Option<Arc<Certificates>>,
    /// The API keys the model routes need, when `api_keys_file` is configured.
    pub api_keys: Option<Arc<ApiKeysFile>>,
    /// Where each request's access record goes (`access_log`).
    pub access_log: Arc<AccessLog>,
}

/// One configured model, as the handlers see it.
pub struct Served {
    /// The configured name (`/models/{name}/...`, `/health`, the `model` label).
    pub name: String,
    /// Its live version and status.
    pub live: Arc<Live>,
    /// Its metrics.
    pub metrics: Arc<ModelMetrics>,
    /// Asks its reload loop for a check (admin route, webhook).
    pub triggers: Triggers,
    /// The version compared with the live one before a swap (`promotion: shadow`), shared
    /// with its reload pipeline.
    pub shadow: Arc<Slot>,
    /// Who its jobs are for in the inference queue.
    pub key: ModelKey,
    /// The registered model name webhooks name (`None` for local models: every registry event
    /// may concern them).
    pub registered_name: Option<String>,
    /// Its payload logging (`payload_log`); `None` when off.
    pub payload: Option<Arc<payload::Policy>>,
    /// Its reload pipeline (the model repository API loads and unloads through it).
    pub reloader: Arc<Reloader>,
}

impl App {
    /// The model the un-prefixed routes serve.
    pub fn default_model(&self) -> &Served {
        &self.models[self.default]
    }

    /// The model configured as `name`.
    pub fn model(&self, name: &str) -> Option<&Served> {
        self.models.iter().find(|model| model.name == name)
    }

    /// The configured names, in configuration order.
    pub fn model_names(&self) -> Vec<&str> {
        self.models
            .iter()
            .map(|model| model.name.as_str())
            .collect()
    }
}

impl Served {
    /// Who a job is for, when it runs on `model` (the version the request took).
    pub fn for_queue<'a>(&'a self, model: &'a Arc<Model>) -> For<'a> {
        For {
            key: self.key,
            model,
            metrics: &self.metrics,
        }
    }
}
