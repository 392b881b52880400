//! Safe promotion: what happens between "a new version passed the gate" and "it is the live
//! one for good". With `promotion: shadow` the candidate is first held beside the live model
//! and compared with it on copies of live requests ([`shadow`]: the candidate slot, the copies
//! on idle inference capacity, the evaluation loop; [`compare`]: the figures and the verdict,
//! pure); one model's settings are resolved in `config::promotion`. The reload pipeline (`reload/publish.rs`) calls
//! [`shadow::evaluate`] before its swap and [`guard::watch`] after it (the previous version
//! stays resident meanwhile, and is swapped back when the new one misbehaves); the HTTP layer offers copies
//! ([`shadow::offer_texts`], [`shadow::offer_tensors`]) and decides by hand
//! ([`shadow::Slot::decide_by_hand`]).

pub mod compare;
pub mod guard;
pub mod shadow;
pub mod tags;

pub use crate::config::promotion::{Mode, Overrides, Promotion};
pub use guard::Guard;

pub use crate::live::status::{Decided, PromotionResult};
