#![warn(missing_docs)]
//! Ports: the async traits the application needs from the outside world.
//!
//! Every trait is object-safe and used as `Arc<dyn …>` (or `Box<dyn UnitOfWork>`), so the
//! runtime picks adapters from configuration: SQLite or PostgreSQL or MySQL for the stores,
//! in-process or Kafka for events, in-process or Redis for the cache-like ports. With the
//! `mocks` feature each trait has a mockall `Mock…` twin for application tests, and
//! [`MockUnitOfWork`](unit_of_work) composes the per-context mocks of a transaction.

pub mod cache;
pub mod events;
pub mod health;
pub mod jobs;
pub mod licences;
pub mod limits;
pub mod page;
pub mod reads;
pub mod staff;
pub mod store;
pub mod store_ports;
pub mod system;
pub mod tokens;
pub mod unit_of_work;

pub use cache::*;
pub use events::*;
pub use health::*;
pub use jobs::*;
pub use licences::*;
pub use limits::*;
pub use page::*;
pub use reads::*;
pub use staff::*;
pub use store::*;
pub use store_ports::StorePorts;
pub use system::*;
pub use tokens::*;
pub use unit_of_work::*;

/// A boxed, sendable future, for loaders passed across `dyn` boundaries.
pub type BoxFuture<T> = futures::future::BoxFuture<'static, T>;
