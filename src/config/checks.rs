//! The checks across settings, once every value has parsed: the `models` list against
//! `MODEL_URI` and `default_model` ([`models`]: unique names, one form or the other, promotion
//! modes a reload policy allows) and every configured model's URI ([`sources`]).

use super::parse::ReloadPolicy;
use super::promotion::Mode;
use super::settings::Config;
use crate::registry::{ModelUri, RemoteUri};

/// The problems across settings: `MODEL_URI` together with `models`, a name used twice, a
/// `default_model` that no configured model has.
pub(super) fn models(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if config.model_uri.is_some() && !config.models.is_empty() {
        problems.push(
            "model_uri and models are both set; use MODEL_URI for one model or models for several, not both"
                .to_string(),
        );
    }
    for (index, model) in config.models.iter().enumerate() {
        let first = config.models.iter().position(|m| m.name == model.name);
        if first != Some(index) {
            problems.push(format!(
                "models: the name '{}' is used twice; give each model its own name",
                model.name
            ));
        }
    }
    if config.model_name.is_some() && !config.models.is_empty() {
        problems.push(
            "model_name names the one model of model_uri; with models, each model is named in its entry"
                .to_string(),
        );
    }
    let shadow_without_room = |promotion: Option<Mode>, policy: Option<ReloadPolicy>| {
        promotion.unwrap_or(config.promotion) == Mode::Shadow
            && policy.unwrap_or(config.reload_policy) == ReloadPolicy::Resource
    };
    let one_model = config.models.is_empty() && shadow_without_room(None, None);
    if one_model {
        problems.push(
            "promotion = shadow holds the candidate beside the live model, which reload_policy = resource does not allow; use reload_policy = availability"
                .to_string(),
        );
    }
    for model in &config.models {
        if shadow_without_room(model.promotion.mode, model.reload_policy) {
            problems.push(format!(
                "model '{}': promotion = shadow holds the candidate beside the live model, which reload_policy = resource does not allow; use reload_policy = availability",
                model.name
            ));
        }
    }
    if let Some(default) = &config.default_model {
        let known = !config.models.is_empty() && config.models.iter().any(|m| &m.name == default);
        if !known {
            let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
            problems.push(format!(
                "default_model = '{default}' names no configured model; configured: {}",
                if names.is_empty() {
                    "(none: default_model needs models)".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    problems
}

/// Every configured model's URI, parsed: a URI that does not parse and a registry URI with no
/// MLflow server to ask are configuration problems, reported with the others and naming the
/// entry. Nothing is read on disk here; a local directory that does not exist is found when
/// the daemon starts (`app`), for every model alike.
pub(super) fn sources(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let entries: Vec<(String, &str)> = match &config.model_uri {
        Some(uri) => vec![("model_uri".to_string(), uri.as_str())],
        None => config
            .models
            .iter()
            .enumerate()
            .map(|(index, model)| {
                (
                    format!("models[{index}] ({})", model.name),
                    model.uri.as_str(),
                )
            })
            .collect(),
    };
    let mut problems = Vec::new();
    let mut needs_mlflow = Vec::new();
    for (entry, uri) in entries {
        match ModelUri::parse(uri) {
            Err(err) => problems.push(format!("{entry}: {err}")),
            Ok(ModelUri::Remote(RemoteUri::Bucket { .. }))
            | Ok(ModelUri::Local(_))
            | Ok(ModelUri::Zip(_)) => {}
            Ok(ModelUri::Remote(_)) => needs_mlflow.push((entry, uri)),
        }
    }
    if needs_mlflow.is_empty() {
        return problems;
    }
    match crate::registry::hotserve_settings(env) {
        Err(err) => problems.push(err.to_string()),
        Ok(settings) if settings.tracking_uri.is_none() && settings.registry_uri.is_none() => {
            for (entry, uri) in needs_mlflow {
                problems.push(format!(
                    "{entry}: {uri} needs an MLflow server but MLFLOW_TRACKING_URI is not set; set it, e.g. MLFLOW_TRACKING_URI=http://mlflow.internal:5000"
                ));
            }
        }
        Ok(_) => {}
    }
    problems
}
