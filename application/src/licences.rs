//! Driving licences: a rider registers one (the provider verifies it first), staff see it and
//! its checks, and the re-verification batch asks the provider again about the licences that
//! are due, suspending those it rejects.

use async_trait::async_trait;
use futures::StreamExt as _;
use time::{Date, OffsetDateTime};

use core_domain::insurance::Actor;
use core_domain::licence::{DuePolicy, Licence, LicenceCheck, LicenceError, LicenceNumber, Verdict};
use core_domain::{AuditId, MemberId, ValidationErrors};
use ports::{Consistency, LicenceQuery, StoreError, VerifierError};

use crate::error::problem;
use crate::events::new_events;
use crate::freshness::Freshness;
use crate::jobs::{BatchJob, JobError, Progress, Recorded};
use crate::{Ports, members};

/// The audit actor of the re-verification batch, and its job name.
pub const REVERIFY_JOB: &str = "licence-reverification";

/// Provider calls one chunk of the batch makes at once.
const PROVIDER_CONCURRENCY: usize = 4;

/// Checks shown to staff.
const CHECKS_SHOWN: i64 = 50;

/// Why a licence use case failed.
#[derive(Debug, thiserror::Error)]
pub enum LicenceServiceError {
    /// The request's values are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The member is not active.
    #[error("the member is not active")]
    MemberInactive,
    /// No licence is registered.
    #[error("no driving licence is registered")]
    NotFound,
    /// The provider rejected the licence.
    #[error("the licence-verification provider rejected the licence: {0}")]
    Rejected(String),
    /// The provider says the licence has expired.
    #[error("the driving licence has expired")]
    Expired,
    /// The provider could not be asked.
    #[error("the licence-verification provider is unavailable; try again shortly")]
    ProviderUnavailable,
}

problem!(LicenceServiceError {
    MemberInactive => Conflict, "member.inactive";
    NotFound => NotFound, "licence.not_found";
    Rejected(_) => Conflict, "licence.rejected";
    Expired => Conflict, "licence.expired";
    ProviderUnavailable => Unavailable, "licence.provider_unavailable";
});

impl From<LicenceError> for LicenceServiceError {
    fn from(e: LicenceError) -> Self {
        match e {
            LicenceError::Missing => LicenceServiceError::NotFound,
            LicenceError::Rejected(reason) => LicenceServiceError::Rejected(reason),
            LicenceError::NotValid(_) => LicenceServiceError::Expired,
        }
    }
}

/// A licence with its checks, newest first, for staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceRecord {
    /// The licence, if one is registered.
    pub licence: Option<Licence>,
    /// Its verifications, newest first.
    pub checks: Vec<LicenceCheck>,
}

/// Driving licences.
#[derive(Clone)]
pub struct LicenceService {
    ports: Ports,
    freshness: Freshness,
}

impl LicenceService {
    /// Over `ports`.
    pub fn new(ports: Ports) -> Self {
        let freshness = Freshness::new(ports.consistency.clone());
        Self { ports, freshness }
    }

    /// Registers the rider's licence (replacing any earlier one) once the provider has
    /// verified it; the provider's expiry date wins over the one given.
    pub async fn register(
        &self,
        member_id: MemberId,
        number: &str,
        expires_on: Date,
    ) -> Result<Licence, LicenceServiceError> {
        let number = LicenceNumber::parse(number).map_err(|e| ValidationErrors::field("number", e.to_string()))?;
        let now = self.ports.clock.now();
        if expires_on < now.date() {
            // Well-formed, but a licence in force cannot have expired: no need to ask.
            return Err(LicenceServiceError::Expired);
        }
        let query = LicenceQuery {
            number: number.as_str().to_owned(),
            expires_on,
        };
        let verdict = self.ports.licence_verifier.verify(&query).await.map_err(|error| {
            tracing::warn!(%error, "licence registration: provider unavailable");
            LicenceServiceError::ProviderUnavailable
        })?;
        let check_id = AuditId(self.ports.ids.new_id());
        let mut uow = self.ports.db.begin().await?;
        if !members::is_active(uow.members(), member_id).await? {
            return Err(LicenceServiceError::MemberInactive);
        }
        let check_status = |status| LicenceCheck {
            id: check_id,
            member_id,
            number: number.as_str().to_owned(),
            status,
            reason: None,
            actor: Actor::Member(member_id),
            checked_at: now,
        };
        let licence = match Licence::register(member_id, number.clone(), verdict, now) {
            Ok(licence) => licence,
            Err(LicenceError::Rejected(reason)) => {
                // The rejection is kept in the trail (staff see what riders tried).
                let check = LicenceCheck {
                    reason: Some(reason.clone()),
                    ..check_status(core_domain::licence::LicenceStatus::Suspended)
                };
                uow.licences().insert_check(&check).await?;
                uow.commit().await?;
                return Err(LicenceServiceError::Rejected(reason));
            }
            Err(other) => return Err(other.into()),
        };
        uow.licences().save_licence(&licence).await?;
        uow.licences().insert_check(&check_status(licence.status)).await?;
        self.freshness.commit(uow.as_mut(), member_id).await?;
        Ok(licence)
    }

    /// The rider's own licence (their last write included).
    pub async fn my_licence(&self, member_id: MemberId) -> Result<Licence, LicenceServiceError> {
        let consistency = self.freshness.for_member(member_id).await;
        self.ports
            .licences
            .licence(member_id, consistency)
            .await?
            .ok_or(LicenceServiceError::NotFound)
    }

    /// Staff: a member's licence and its checks, from the primary.
    pub async fn record(&self, member_id: MemberId) -> Result<LicenceRecord, LicenceServiceError> {
        let licence = self.ports.licences.licence(member_id, Consistency::Strong).await?;
        let checks = self
            .ports
            .licences
            .licence_checks(member_id, CHECKS_SHOWN, Consistency::Strong)
            .await?;
        Ok(LicenceRecord { licence, checks })
    }
}

/// The batch that re-verifies due licences ([`Licence::is_due`]) with the provider. A
/// licence the provider cannot answer about stays as it is, counted as failed, and is due
/// again in the next run; one bad answer never holds up the others.
#[derive(Clone)]
pub struct ReverifyLicences {
    ports: Ports,
    due: DuePolicy,
}

impl ReverifyLicences {
    /// Over `ports`, for licences due by `due`.
    pub fn new(ports: Ports, due: DuePolicy) -> Self {
        Self { ports, due }
    }
}

#[async_trait]
impl BatchJob for ReverifyLicences {
    type Item = Licence;

    fn name(&self) -> &'static str {
        REVERIFY_JOB
    }

    fn key(item: &Licence) -> String {
        item.member_id.to_string()
    }

    async fn work_list(&self, after: Option<&str>, limit: i64, now: OffsetDateTime) -> Result<Vec<Licence>, JobError> {
        let cutoffs = self.due.cutoffs(now);
        Ok(self
            .ports
            .licences
            .due_licences(
                &cutoffs,
                crate::jobs::resume_after(after)?,
                limit,
                Consistency::Eventual,
            )
            .await?)
    }

    async fn remaining(&self, after: Option<&str>, now: OffsetDateTime) -> Result<i64, JobError> {
        let cutoffs = self.due.cutoffs(now);
        Ok(self
            .ports
            .licences
            .count_due_licences(&cutoffs, crate::jobs::resume_after(after)?, Consistency::Eventual)
            .await?)
    }

    async fn chunk(&self, items: Vec<Licence>, progress: Progress<'_>) -> Result<Recorded, JobError> {
        // The provider first, outside the transaction: no row stays locked while it answers.
        let answers: Vec<(Licence, Result<Verdict, VerifierError>)> = futures::stream::iter(items)
            .map(|licence| async move {
                let query = LicenceQuery {
                    number: licence.number.clone(),
                    expires_on: licence.expires_on,
                };
                let verdict = self.ports.licence_verifier.verify(&query).await;
                (licence, verdict)
            })
            .buffered(PROVIDER_CONCURRENCY)
            .collect()
            .await;
        let now = self.ports.clock.now();
        let cutoffs = self.due.cutoffs(now);
        let mut failed = 0;
        let mut verdicts = Vec::new();
        for (seen, answer) in answers {
            match answer {
                Ok(verdict) => verdicts.push((seen, verdict)),
                Err(error) => {
                    tracing::warn!(member_id = %seen.member_id, %error, "licence re-verification: no answer");
                    failed += 1;
                }
            }
        }
        let ids: Vec<MemberId> = verdicts.iter().map(|(seen, _)| seen.member_id).collect();
        let mut uow = self.ports.db.begin().await?;
        let mut current = uow.licences().licences_for_update(&ids).await?;
        let mut events = Vec::new();
        let mut done = 0;
        for (seen, verdict) in verdicts {
            // Re-checked under the lock: the replica may lag, and the rider may have
            // registered another licence since the work list was read.
            let Some(licence) = current
                .iter_mut()
                .find(|l| l.member_id == seen.member_id && l.number == seen.number && l.is_due(&cutoffs))
            else {
                done += 1;
                continue;
            };
            let (check, event) = licence.reverify(
                verdict,
                AuditId(self.ports.ids.new_id()),
                Actor::System(REVERIFY_JOB.into()),
                now,
            );
            uow.licences().save_licence(licence).await?;
            uow.licences().insert_check(&check).await?;
            events.extend(event);
            done += 1;
        }
        if !events.is_empty() {
            uow.events().append(&new_events(&self.ports, now, events)).await?;
        }
        let recorded = progress.record(uow.as_mut(), done, failed).await?;
        uow.commit().await?;
        Ok(recorded)
    }
}
