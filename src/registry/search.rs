//! The registry's search for registered models ([`search_registered_models`]): every registered
//! model matching an MLflow filter (`tags.serve = 'true'`, `name LIKE 'fraud-%'`, both joined
//! by `AND`), with its aliases and tags, read page by page from `registered-models/search`.
//! Discovery serves what it finds under [`super::names::served_name`].

use std::collections::BTreeMap;

use super::client::MlflowClient;
use super::rest::{self, MAX_REGISTERED_MODELS_PAGE, MAX_SEARCH_PAGES};
use super::RegistryError;

/// A registered model as the search finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredModel {
    /// Its name in the registry (served under [`super::names::served_name`] of it).
    pub name: String,
    /// Its aliases and the version each points at, `(alias, version)`, sorted by alias.
    pub aliases: Vec<(String, String)>,
    /// The registered model's own tags (not its versions').
    pub tags: BTreeMap<String, String>,
}

impl RegisteredModel {
    /// The version `alias` points at, if the model has that alias.
    pub fn alias(&self, alias: &str) -> Option<&str> {
        self.aliases
            .iter()
            .find(|(name, _)| name == alias)
            .map(|(_, version)| version.as_str())
    }
}

/// Every registered model matching `filter` (MLflow's `search_registered_models` grammar; every
/// registered model when empty), by name, in pages of 1000 (MLflow's largest), up to 100 pages:
/// more than that is an error that says to narrow the filter, never a partial answer.
pub async fn search_registered_models(
    client: &MlflowClient,
    filter: &str,
) -> Result<Vec<RegisteredModel>, RegistryError> {
    search_registered_models_paged(client, filter, MAX_REGISTERED_MODELS_PAGE).await
}

/// [`search_registered_models`] in pages of `page_size` models (1 to 1000), up to 100 pages; the
/// tests use small pages to see several.
pub async fn search_registered_models_paged(
    client: &MlflowClient,
    filter: &str,
    page_size: usize,
) -> Result<Vec<RegisteredModel>, RegistryError> {
    let subject = if filter.is_empty() {
        "every registered model".to_string()
    } else {
        format!("registered models matching \"{filter}\"")
    };
    let pages = rest::search_registered_models(client, filter, page_size)
        .await
        .map_err(|err| err.into_registry(&subject, client.request_timeout()))?;
    if !pages.complete {
        return Err(RegistryError::TooManyMatches {
            uri: subject,
            read: pages.items.len(),
            pages: MAX_SEARCH_PAGES,
        });
    }
    Ok(pages.items.into_iter().map(registered).collect())
}

/// The search's answer for one model, in this module's terms.
fn registered(model: rest::RegisteredModel) -> RegisteredModel {
    let mut aliases: Vec<(String, String)> = model
        .aliases
        .into_iter()
        .map(|alias| (alias.alias, alias.version))
        .collect();
    aliases.sort();
    RegisteredModel {
        name: model.name,
        aliases,
        tags: model
            .tags
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_model_in_this_module_s_terms() {
        let wire: rest::RegisteredModel = serde_json::from_str(
            r#"{"name": "fraud", "tags": [{"key": "serve", "value": "true"}, {"key": "team", "value": "risk"}],
                "aliases": [{"alias": "old", "version": "1"}, {"alias": "champion", "version": "2"}]}"#,
        )
        .unwrap();
        let model = registered(wire);
        assert_eq!(
            model.aliases,
            [
                ("champion".to_string(), "2".to_string()),
                ("old".to_string(), "1".to_string())
            ]
        );
        assert_eq!(model.alias("champion"), Some("2"));
        assert_eq!(model.alias("challenger"), None);
        assert_eq!(model.tags["serve"], "true");
        assert_eq!(model.tags.len(), 2);
    }
}
