//! The hexride domain: members, time-based rider insurance and commerce.
//!
//! Everything here is pure and synchronous: entities, value objects, state machines and the
//! arithmetic that bills riders and customers. Persistence, transport and time itself come
//! from the outside (the `ports` crate); a function that needs "now" takes it as an argument.

pub mod catalog;
pub mod coupon;
pub mod event;
pub mod ids;
pub mod insurance;
pub mod licence;
pub mod member;
pub mod order;
pub mod validation;
pub mod wallet;

pub use ids::*;
pub use validation::{FieldError, UnknownValue, ValidationErrors};

/// Money and points: integer KRW, never floats.
pub type Krw = i64;
