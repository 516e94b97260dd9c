//! Driving licences: the store's side and the licence-verification provider.

use async_trait::async_trait;
use time::Date;

use core_domain::MemberId;
use core_domain::licence::{DueCutoffs, Licence, LicenceCheck, Verdict};

use crate::store::{Consistency, StoreError};

/// What the provider is asked about a licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceQuery {
    /// The licence number, normalised ([`core_domain::licence::LicenceNumber`]).
    pub number: String,
    /// The expiry date the rider gave, or the one on record.
    pub expires_on: Date,
}

/// The provider could not answer; the licence stays as it is and is asked about again later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    /// Down, slow, failing, or its circuit is open.
    #[error("licence-verification provider unavailable: {0}")]
    Unavailable(String),
}

/// The licence-verification provider (the issuing authority's API, over HTTP).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait LicenceVerifier: Send + Sync {
    /// The provider's verdict on the licence.
    ///
    /// # Errors
    /// [`VerifierError::Unavailable`] when it gave no verdict in time.
    async fn verify(&self, query: &LicenceQuery) -> Result<Verdict, VerifierError>;
}

/// Licences in a unit of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait LicenceWrites: Send {
    /// The member's licence, locked.
    async fn licence_for_update(&mut self, member_id: MemberId) -> Result<Option<Licence>, StoreError>;
    /// The licences of these members that exist, locked, by member id.
    async fn licences_for_update(&mut self, member_ids: &[MemberId]) -> Result<Vec<Licence>, StoreError>;
    /// Inserts the member's licence, or replaces the one there.
    async fn save_licence(&mut self, licence: &Licence) -> Result<(), StoreError>;
    /// Appends to the licence's audit trail.
    async fn insert_check(&mut self, check: &LicenceCheck) -> Result<(), StoreError>;
}

/// Licences, as reads see them.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait LicenceReads: Send + Sync {
    /// The member's licence, if one is registered.
    async fn licence(&self, member_id: MemberId, consistency: Consistency) -> Result<Option<Licence>, StoreError>;
    /// The member's licence checks, newest first, at most `limit`.
    async fn licence_checks(
        &self,
        member_id: MemberId,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<LicenceCheck>, StoreError>;
    /// Licences due for re-verification ([`Licence::is_due`]) of members after `after`, by
    /// member id, at most `limit`.
    async fn due_licences(
        &self,
        cutoffs: &DueCutoffs,
        after: Option<MemberId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Licence>, StoreError>;
    /// How many licences are due, of members after `after`.
    async fn count_due_licences(
        &self,
        cutoffs: &DueCutoffs,
        after: Option<MemberId>,
        consistency: Consistency,
    ) -> Result<i64, StoreError>;
}
