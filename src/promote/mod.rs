//! Safe promotion: what happens between "a new version passed the gate" and "it is the live
//! one for good". With `promotion: shadow` the candidate is first held beside the live model
//! and compared with it on copies of live requests ([`shadow`]: the candidate slot, the copies
//! on idle inference capacity, the evaluation loop; [`compare`]: the figures and the verdict,
//! pure). [`settings`] resolves one model's settings from the daemon-wide ones and the
//! overrides of its `models` entry. The reload pipeline (`reload/publish.rs`) calls
//! [`shadow::evaluate`] before its swap and [`guard::watch`] after it (the previous version
//! stays resident meanwhile, and is swapped back when the new one misbehaves); the HTTP layer offers copies
//! ([`shadow::offer_texts`], [`shadow::offer_tensors`]) and decides by hand
//! ([`shadow::Slot::decide_by_hand`]).

pub mod compare;
pub mod guard;
pub mod settings;
pub mod shadow;
pub mod tags;

use std::time::SystemTime;

use serde::Serialize;

pub use guard::Guard;
pub use settings::{Mode, Overrides, Promotion};

/// How a promotion decision ended, as `hotserve_promotions_total{result}` and `/health` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionResult {
    /// The candidate went live.
    Promoted,
    /// The candidate was refused; the live model stays.
    Refused,
    /// The guard swapped back to the previous version after the swap.
    RolledBack,
}

impl PromotionResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PromotionResult::Promoted => "promoted",
            PromotionResult::Refused => "refused",
            PromotionResult::RolledBack => "rolled_back",
        }
    }
}

/// The last promotion decision of a model, for `/health`.
#[derive(Clone, Debug, Serialize)]
pub struct Decided {
    #[serde(with = "crate::model::rfc3339")]
    pub at: SystemTime,
    /// The candidate's version.
    pub version: String,
    pub result: PromotionResult,
    /// Why, in words (the figures, or who decided by hand).
    pub reason: String,
}
