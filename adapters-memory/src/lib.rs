//! Single-process adapters: the embedded default when no Redis or Kafka is configured.
//!
//! Each module implements one port with in-memory state (moka, governor, a mutex-guarded
//! map) or a local resource (the system clock, argon2). State is lost on restart and not
//! shared between instances, which is exactly what a one-binary deployment needs.

pub mod cache;
pub mod consistency;
pub mod coupon_gate;
pub mod limiter;
pub mod password;
pub mod publisher;
pub mod system;

pub use cache::MokaCache;
pub use consistency::MemoryConsistencyTokens;
pub use coupon_gate::MemoryCouponGate;
pub use limiter::MemoryRateLimiter;
pub use password::{Argon2Hasher, Argon2Params, HashLimits};
pub use publisher::InProcessPublisher;
pub use system::{SystemClock, UuidV7Ids};
