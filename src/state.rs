//! The application state every transport serves from ([`App`], [`Served`]): the configuration,
//! the models with their live versions (the configured ones and, with `discover_filter`, the
//! ones discovery adds and removes while the daemon runs: [`ModelSet`]), the inference pool,
//! the metrics and the credentials. Below the transports (HTTP, gRPC, the Open Inference Protocol), so they import
//! it and it imports none of them; built once by `app.rs`.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access::AccessLog;
use crate::config::Config;
use crate::live::Live;
use crate::metrics::{Metrics, ModelMetrics};
use crate::model::Model;
use crate::payload;
use crate::promote::shadow::Slot;
use crate::queue::{For, ModelKey, Pool};
use crate::reload::budget::Budget;
use crate::reload::webhook::Verifier;
use crate::reload::{Reloader, Triggers};
use crate::security::keys::ApiKeysFile;
use crate::security::tls::Certificates;

/// Everything a request handler may touch.
pub struct App {
    pub config: Arc<Config>,
    /// The models served: the configured ones, in configuration order (one for the
    /// `MODEL_URI` form), then the discovered ones.
    pub models: ModelSet,
    /// Asks discovery for a search of the registry now (webhooks), when `discover_filter` is
    /// set.
    pub discovery: Option<Triggers>,
    /// One inference pool for every model.
    pub pool: Arc<Pool>,
    /// The memory budget every model counts in (`memory_budget`).
    pub budget: Arc<Budget>,
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

/// The models served, changed as a whole (discovery adds and removes models while requests
/// read it): a request takes one model's `Arc<Served>` and keeps it until it answers, so a
/// model removed meanwhile finishes the requests it has.
pub struct ModelSet {
    all: ArcSwap<Vec<Arc<Served>>>,
    /// The name of the model the un-prefixed routes serve (`None`: discovered models only).
    default: Option<String>,
}

impl ModelSet {
    /// `models` in order; `default` names the one the un-prefixed routes serve.
    pub fn new(models: Vec<Served>, default: Option<String>) -> ModelSet {
        ModelSet {
            all: ArcSwap::from_pointee(models.into_iter().map(Arc::new).collect()),
            default,
        }
    }

    /// Every model now.
    pub fn all(&self) -> Arc<Vec<Arc<Served>>> {
        self.all.load_full()
    }

    /// Adds a model (discovery).
    pub fn add(&self, served: Served) {
        let served = Arc::new(served);
        self.all.rcu(|all| {
            let mut all = Vec::clone(all);
            all.push(served.clone());
            all
        });
    }

    /// Removes the model named `name` (discovery); requests that hold it finish with it.
    pub fn remove(&self, name: &str) -> Option<Arc<Served>> {
        let mut removed = None;
        self.all.rcu(|all| {
            let mut all = Vec::clone(all);
            if let Some(at) = all.iter().position(|m| m.name == name) {
                removed = Some(all.remove(at));
            }
            all
        });
        removed
    }
}

/// One model, as the handlers see it.
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
    /// Added by discovery (`discover_filter`), not configured: readiness does not wait for it.
    pub discovered: bool,
}

impl App {
    /// The model the un-prefixed routes serve (none when only discovered models are served).
    pub fn default_model(&self) -> Option<Arc<Served>> {
        self.model(self.models.default.as_deref()?)
    }

    /// The model served as `name`.
    pub fn model(&self, name: &str) -> Option<Arc<Served>> {
        self.models
            .all()
            .iter()
            .find(|model| model.name == name)
            .cloned()
    }

    /// Every model served now.
    pub fn models(&self) -> Arc<Vec<Arc<Served>>> {
        self.models.all()
    }

    /// The names served, configured ones first.
    pub fn model_names(&self) -> Vec<String> {
        self.models
            .all()
            .iter()
            .map(|model| model.name.clone())
            .collect()
    }
}

impl Served {
    /// The model `reloader` loads, as the handlers see it (its name, live handle, shadow slot,
    /// metrics and registered name are the reloader's), with a queue key of its own.
    pub fn new(
        reloader: Arc<Reloader>,
        triggers: Triggers,
        payload: Option<Arc<payload::Policy>>,
        discovered: bool,
    ) -> Served {
        Served {
            name: reloader.name().to_string(),
            live: reloader.live.clone(),
            shadow: reloader.shadow.clone(),
            key: ModelKey::new(),
            metrics: reloader.metrics.clone(),
            triggers,
            registered_name: reloader.registered_name(),
            payload,
            reloader,
            discovered,
        }
    }

    /// Who a job is for, when it runs on `model` (the version the request took).
    pub fn for_queue<'a>(&'a self, model: &'a Arc<Model>) -> For<'a> {
        For {
            key: self.key,
            model,
            metrics: &self.metrics,
        }
    }
}
