//! Members and authentication: sign-up, login with rotating refresh tokens, profile,
//! withdrawal (which emits `member.withdrawn` for the insurance side), staff accounts and
//! the anonymisation of withdrawn members.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use sha2::{Digest, Sha256};

use core_domain::member::{ANONYMISE_AFTER, Email, Member, MemberError as DomainMemberError, NewMember, Role};
use core_domain::{MemberId, TokenFamilyId, ValidationErrors};
use ports::{
    AccessClaims, AccessTokenError, Consistency, HashError, MemberPattern, MemberQuery, Page, Quota, RateDecision,
    RefreshToken, RotateOutcome, StaffSession, StoreError, Unique,
};

use crate::error::problem;
use crate::events::new_events;
use crate::freshness::Freshness;
use crate::jobs::{BatchJob, JobError, Progress, Recorded};
use crate::{Ports, Settings};

/// Why a members or auth use case failed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The request's values are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This e-mail address is already registered.
    #[error("this e-mail address is already registered")]
    EmailTaken,
    /// Wrong e-mail address or password.
    #[error("wrong e-mail address or password")]
    InvalidCredentials,
    /// The refresh token is invalid or expired.
    #[error("the refresh token is invalid or expired")]
    InvalidRefreshToken,
    /// The refresh token was already used; every token of this login is revoked.
    #[error("the refresh token was already used; every token of this login is revoked")]
    RefreshTokenReused,
    /// The account is not a staff account (the admin web is for CX and admins).
    #[error("this account is not a staff account")]
    NotStaff,
    /// Member not found.
    #[error("member not found")]
    NotFound,
    /// The member has already withdrawn.
    #[error("the member has already withdrawn")]
    AlreadyWithdrawn,
    /// Too many attempts.
    #[error("too many attempts")]
    RateLimited(Duration),
    /// The login rate limiter is unavailable.
    #[error("the login rate limiter is unavailable")]
    LimiterUnavailable,
    /// Password hashing is at capacity (a burst of sign-ups or logins): try again shortly.
    #[error("too many sign-ups and logins at once; try again shortly")]
    Busy,
    /// ….
    #[error("{0}")]
    Internal(String),
}

problem!(MemberError {
    EmailTaken => Conflict, "member.email_taken";
    InvalidCredentials => Unauthorized, "auth.invalid_credentials";
    InvalidRefreshToken => Unauthorized, "auth.invalid_refresh_token";
    RefreshTokenReused => Unauthorized, "auth.refresh_token_reused";
    NotStaff => Forbidden, "auth.not_staff";
    NotFound => NotFound, "member.not_found";
    AlreadyWithdrawn => Conflict, "member.already_withdrawn";
    RateLimited(retry_after) => TooManyRequests { retry_after: *retry_after }, "rate_limited";
    LimiterUnavailable => Unavailable, "auth.rate_limiter_unavailable";
    Busy => Unavailable, "auth.busy";
    Internal(_) => Internal, "internal";
});

impl From<HashError> for MemberError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => MemberError::Busy,
            HashError::Failed(_) => MemberError::Internal(e.to_string()),
        }
    }
}

impl From<AccessTokenError> for MemberError {
    fn from(e: AccessTokenError) -> Self {
        MemberError::Internal(e.to_string())
    }
}

/// Whether `member_id` is an active member, read (and locked) inside `uow`. Writes on a
/// member's behalf check it, so a withdrawn member's still-valid access token cannot act.
pub(crate) async fn is_active(members: &mut dyn ports::MemberWrites, member_id: MemberId) -> Result<bool, StoreError> {
    Ok(members.by_id(member_id).await?.is_some_and(|m| m.is_active()))
}

/// The fewest characters a staff search for text anywhere takes ([`MemberService::find`]).
pub const FIND_MIN_CHARS: usize = 3;

/// A sign-up (or staff) request as the client sent it.
#[derive(Debug, Clone)]
pub struct SignUp {
    /// The e-mail (trimmed and lower-cased on the way in).
    pub email: String,
    /// The password (10–128 characters).
    pub password: String,
    /// The name (1–50 characters).
    pub name: String,
    /// The phone number (9–15 digits once `-` and spaces are removed).
    pub phone: String,
}

/// What a login or refresh hands the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// A short-lived JWT.
    pub access_token: String,
    /// The opaque token that gets the next pair.
    pub refresh_token: String,
    /// The access token's lifetime.
    pub expires_in: Duration,
}

/// A staff member just logged in to the admin web.
#[derive(Debug, Clone)]
pub struct StaffLogin {
    /// The session token for the browser's cookie (only its hash is stored).
    pub token: String,
    /// Who logged in.
    pub member: Member,
}

/// An admin-web request's staff member, as the store says now.
#[derive(Debug, Clone)]
pub struct StaffContext {
    /// The staff member (active, with a staff role).
    pub member: Member,
    /// The token the session's forms must carry.
    pub csrf_token: String,
}

/// Members and auth: sign-up, login, refresh, logout, withdrawal, staff search.
#[derive(Clone)]
pub struct MemberService {
    ports: Ports,
    settings: Arc<Settings>,
    freshness: Freshness,
    /// A hash of a random password, made with the hasher's current costs on first use: a
    /// login for an unknown or withdrawn e-mail verifies against it, so it takes as long as
    /// a wrong password and the timing does not tell which e-mails have accounts.
    decoy_hash: Arc<tokio::sync::OnceCell<String>>,
}

/// A refresh token (or a staff session's) is 32 random bytes, hex; only its SHA-256 is
/// stored.
fn new_refresh_token() -> (String, String) {
    let token = random_hex();
    let hash = hash_token(&token);
    (token, hash)
}

/// 32 random bytes, hex.
fn random_hex() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

impl MemberService {
    /// The service over `ports`.
    pub fn new(ports: Ports, settings: Arc<Settings>) -> Self {
        let freshness = Freshness::new(ports.consistency.clone());
        Self {
            ports,
            settings,
            freshness,
            decoy_hash: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The member's role if the account is active, read on the primary (staff powers are
    /// checked against it on every staff request, not against a token's copy).
    ///
    /// # Errors
    /// [`MemberError::Store`] when the store fails.
    pub async fn current_role(&self, member_id: MemberId) -> Result<Option<Role>, MemberError> {
        let member = self.ports.members.member(member_id, Consistency::Strong).await?;
        Ok(member.filter(Member::is_active).map(|m| m.role))
    }

    /// Sign-up always makes a rider.
    #[tracing::instrument(skip_all)]
    pub async fn sign_up(&self, request: SignUp) -> Result<Member, MemberError> {
        self.register(request, Role::Rider).await
    }

    /// [`Self::sign_up`] for a request from `client_ip`, which may sign up
    /// `settings.sign_up_per_ip` times per period (each sign-up costs a password hash).
    ///
    /// # Errors
    /// [`MemberError::RateLimited`] past the limit, [`MemberError::LimiterUnavailable`] when
    /// the limiter cannot say; else as [`Self::sign_up`].
    pub async fn sign_up_from(&self, request: SignUp, client_ip: &str) -> Result<Member, MemberError> {
        self.check_limit(format!("signup:ip:{client_ip}"), self.settings.sign_up_per_ip)
            .await?;
        self.sign_up(request).await
    }

    /// Creates a staff (or any-role) account: the CLI and start-up bootstrap use it.
    #[tracing::instrument(skip_all, fields(%role))]
    pub async fn create_account(&self, request: SignUp, role: Role) -> Result<Member, MemberError> {
        self.register(request, role).await
    }

    /// Like [`Self::create_account`], but an existing account with that e-mail is kept as is.
    pub async fn ensure_account(&self, request: SignUp, role: Role) -> Result<Member, MemberError> {
        let email = Email::parse(&request.email).map_err(|e| ValidationErrors::field("email", e.to_string()))?;
        if let Some(existing) = self
            .ports
            .members
            .member_by_email(email.as_str(), Consistency::Strong)
            .await?
        {
            return Ok(existing);
        }
        self.register(request, role).await
    }

    async fn register(&self, request: SignUp, role: Role) -> Result<Member, MemberError> {
        let new = NewMember::parse(&request.email, &request.password, &request.name, &request.phone)?;
        let hash = self.ports.hasher.hash(new.password.expose()).await?;
        let now = self.ports.clock.now();
        let (member, event) = Member::register(self.ports.ids.new_id().into(), &new, hash, role, now);
        let mut uow = self.ports.db.begin().await?;
        match uow.members().insert(&member).await {
            Err(StoreError::Conflict(Unique::MemberEmail)) => return Err(MemberError::EmailTaken),
            other => other?,
        }
        uow.events().append(&new_events(&self.ports, now, [event])).await?;
        self.freshness.commit(uow.as_mut(), member.id).await?;
        Ok(member)
    }

    async fn check_limit(&self, key: String, quota: Quota) -> Result<(), MemberError> {
        match self.ports.limiter.check(&key, quota).await {
            Ok(RateDecision::Allowed) => Ok(()),
            Ok(RateDecision::Limited { retry_after }) => Err(MemberError::RateLimited(retry_after)),
            // Login and sign-up fail closed: an attacker must not gain unlimited guesses (or
            // hashes) from an outage.
            // (Debug: the limiter's adapter warns once per outage, not once per login.)
            Err(error) => {
                tracing::debug!(%error, "rate limiter unavailable; refusing login");
                Err(MemberError::LimiterUnavailable)
            }
        }
    }

    /// Checks the password of an active member, records the login, issues a token pair.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, email: &str, password: &str, client_ip: &str) -> Result<TokenPair, MemberError> {
        let member = self.authenticate(email, password, client_ip).await?;
        let current = self.record_login(member.id).await?;
        let now = self.ports.clock.now();
        let family_id = TokenFamilyId(self.ports.ids.new_id());
        let (refresh_token, refresh_hash) = new_refresh_token();
        self.ports
            .refresh_tokens
            .insert(&RefreshToken {
                token_hash: refresh_hash,
                member_id: current.id,
                family_id,
                expires_at: now + to_time(self.settings.refresh_ttl),
            })
            .await?;
        self.access_pair(&current, family_id, refresh_token)
    }

    /// Logs a staff member in to the admin web: the login's checks and limits, then a
    /// session (with its CSRF token) instead of a token pair. A rider is refused
    /// ([`MemberError::NotStaff`]) once the password is right, and no login is recorded.
    #[tracing::instrument(skip_all)]
    pub async fn staff_login(&self, email: &str, password: &str, client_ip: &str) -> Result<StaffLogin, MemberError> {
        let member = self.authenticate(email, password, client_ip).await?;
        if !member.role.is_staff() {
            return Err(MemberError::NotStaff);
        }
        let member = self.record_login(member.id).await?;
        let now = self.ports.clock.now();
        let (token, token_hash) = new_refresh_token();
        self.ports
            .staff_sessions
            .create_session(&StaffSession {
                token_hash,
                member_id: member.id,
                csrf_token: random_hex(),
                created_at: now,
                last_seen_at: now,
            })
            .await?;
        Ok(StaffLogin { token, member })
    }

    /// The staff member of an admin-web session `token`, or `None` when the session is
    /// unknown, idle past `settings.staff_idle_timeout`, or its account is no longer active
    /// staff (then the session ends). Seeing it counts as activity.
    pub async fn staff_session(&self, token: &str) -> Result<Option<StaffContext>, MemberError> {
        let now = self.ports.clock.now();
        let hash = hash_token(token);
        let idle_since = now - to_time(self.settings.staff_idle_timeout);
        let Some(session) = self.ports.staff_sessions.touch_session(&hash, idle_since, now).await? else {
            return Ok(None);
        };
        let member = self
            .ports
            .members
            .member(session.member_id, Consistency::Strong)
            .await?
            .filter(|m| m.is_active() && m.role.is_staff());
        let Some(member) = member else {
            self.ports.staff_sessions.delete_session(&hash).await?;
            return Ok(None);
        };
        Ok(Some(StaffContext {
            member,
            csrf_token: session.csrf_token,
        }))
    }

    /// Ends the admin-web session `token` (nothing if there is none).
    pub async fn staff_logout(&self, token: &str) -> Result<(), MemberError> {
        Ok(self.ports.staff_sessions.delete_session(&hash_token(token)).await?)
    }

    /// The login limits, then the password of an active member: the member, or
    /// [`MemberError::InvalidCredentials`] after as long as a wrong password takes.
    async fn authenticate(&self, email: &str, password: &str, client_ip: &str) -> Result<Member, MemberError> {
        let email = email.trim().to_lowercase();
        self.check_limit(format!("login:ip:{client_ip}"), self.settings.login_per_ip)
            .await?;
        self.check_limit(
            format!("login:ip-email:{client_ip}:{email}"),
            self.settings.login_per_ip_and_email,
        )
        .await?;
        self.check_limit(format!("login:email:{email}"), self.settings.login_per_email)
            .await?;

        // A replica may not have the member of a sign-up from a moment ago: ask the primary
        // before saying the e-mail is unknown.
        let member = match self
            .ports
            .members
            .member_by_email(&email, Consistency::Eventual)
            .await?
        {
            Some(member) => Some(member),
            None => self.ports.members.member_by_email(&email, Consistency::Strong).await?,
        };
        let Some(member) = member.filter(Member::is_active) else {
            let decoy = self
                .decoy_hash
                .get_or_try_init(|| async {
                    let password: [u8; 16] = rand::rng().random();
                    self.ports.hasher.hash(&hex::encode(password)).await
                })
                .await?;
            self.ports.hasher.verify(password, decoy).await?;
            return Err(MemberError::InvalidCredentials);
        };
        if !self.ports.hasher.verify(password, &member.password_hash).await? {
            return Err(MemberError::InvalidCredentials);
        }
        Ok(member)
    }

    /// Records a login of `member_id`, who must still be active.
    async fn record_login(&self, member_id: MemberId) -> Result<Member, MemberError> {
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        let mut current = uow
            .members()
            .by_id(member_id)
            .await?
            .ok_or(MemberError::InvalidCredentials)?;
        current.record_login(now).map_err(|_| MemberError::InvalidCredentials)?;
        uow.members().update(&current).await?;
        self.freshness.commit(uow.as_mut(), current.id).await?;
        Ok(current)
    }

    fn access_pair(
        &self,
        member: &Member,
        family_id: TokenFamilyId,
        refresh_token: String,
    ) -> Result<TokenPair, MemberError> {
        let ttl = self.ports.access_tokens.ttl();
        let access_token = self.ports.access_tokens.issue(&AccessClaims {
            member_id: member.id,
            role: member.role,
            family_id,
            expires_at: self.ports.clock.now() + to_time(ttl),
        })?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in: ttl,
        })
    }

    /// Spends a refresh token for a new pair. Reusing a spent token revokes its family.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, MemberError> {
        let now = self.ports.clock.now();
        let (new_token, new_hash) = new_refresh_token();
        let placeholder = RefreshToken {
            token_hash: new_hash,
            // The store keeps the old token's member and family.
            member_id: MemberId(uuid::Uuid::nil()),
            family_id: TokenFamilyId(uuid::Uuid::nil()),
            expires_at: now + to_time(self.settings.refresh_ttl),
        };
        let (member_id, family_id) = match self
            .ports
            .refresh_tokens
            .rotate(&hash_token(refresh_token.trim()), &placeholder, now)
            .await?
        {
            RotateOutcome::Rotated { member_id, family_id } => (member_id, family_id),
            RotateOutcome::Reused { member_id, family_id } => {
                tracing::warn!(%member_id, %family_id, "refresh token reuse: family revoked");
                return Err(MemberError::RefreshTokenReused);
            }
            RotateOutcome::Invalid => return Err(MemberError::InvalidRefreshToken),
        };
        let consistency = self.freshness.for_member(member_id).await;
        let member = self.ports.members.member(member_id, consistency).await?;
        match member.filter(Member::is_active) {
            Some(member) => self.access_pair(&member, family_id, new_token),
            None => {
                self.ports.refresh_tokens.revoke_family(family_id).await?;
                Err(MemberError::InvalidRefreshToken)
            }
        }
    }

    /// Revokes the refresh tokens of the caller's login.
    pub async fn logout(&self, claims: &AccessClaims) -> Result<(), MemberError> {
        Ok(self.ports.refresh_tokens.revoke_family(claims.family_id).await?)
    }

    /// The member's own profile (read-your-writes).
    pub async fn profile(&self, member_id: MemberId) -> Result<Member, MemberError> {
        let consistency = self.freshness.for_member(member_id).await;
        self.ports
            .members
            .member(member_id, consistency)
            .await?
            .ok_or(MemberError::NotFound)
    }

    /// Any member, withdrawn ones too, for staff (on the primary: staff act on what they see).
    pub async fn profile_for_staff(&self, member_id: MemberId) -> Result<Member, MemberError> {
        self.ports
            .members
            .member(member_id, Consistency::Strong)
            .await?
            .ok_or(MemberError::NotFound)
    }

    /// active → withdrawn, `member.withdrawn` in the same transaction, then every refresh
    /// token revoked. The insurance side expires the member's policies from the event.
    #[tracing::instrument(skip_all, fields(%member_id))]
    pub async fn withdraw(&self, member_id: MemberId) -> Result<Member, MemberError> {
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        let mut member = uow.members().by_id(member_id).await?.ok_or(MemberError::NotFound)?;
        let event = member.withdraw(now).map_err(|e| match e {
            DomainMemberError::AlreadyWithdrawn | DomainMemberError::NotActive => MemberError::AlreadyWithdrawn,
        })?;
        uow.members().update(&member).await?;
        uow.events().append(&new_events(&self.ports, now, [event])).await?;
        self.freshness.commit(uow.as_mut(), member_id).await?;
        // Committed: a failure here leaves tokens that `refresh` refuses anyway (the member
        // is no longer active), so it is logged rather than failing the withdrawal.
        if let Err(error) = self.ports.refresh_tokens.revoke_member(member_id).await {
            tracing::warn!(%error, %member_id, "could not revoke refresh tokens after withdrawal");
        }
        // A staff account's admin-web sessions end too (they would be refused anyway: every
        // request checks the account).
        if let Err(error) = self.ports.staff_sessions.delete_sessions_of(member_id).await {
            tracing::warn!(%error, %member_id, "could not end admin-web sessions after withdrawal");
        }
        Ok(member)
    }

    /// Staff search by e-mail prefix. Staff act on what they see (a withdrawal, say), and
    /// their searches are rare: read from the primary, like their other views.
    /// One page of `limit` by e-mail, after `after_email`.
    pub async fn search(
        &self,
        email_prefix: &str,
        after_email: Option<String>,
        limit: Option<i64>,
    ) -> Result<Page<Member, String>, MemberError> {
        let prefix = email_prefix.trim().to_lowercase();
        if prefix.is_empty() {
            return Err(ValidationErrors::field("email", "must not be empty").into());
        }
        let query = MemberQuery {
            pattern: MemberPattern::EmailPrefix(prefix),
            page: crate::paging::page(after_email, limit)?,
        };
        Ok(self.ports.members.search_members(&query, Consistency::Strong).await?)
    }

    /// Staff search by part of the e-mail, name or phone number, without regard to case,
    /// one page of `limit` by e-mail, after `after_email`. Text that looks like a
    /// phone number (digits with spaces, `-`, `+`, brackets) also matches phones by its digits.
    ///
    /// The text needs [`FIND_MIN_CHARS`] characters, and phone-like text as many digits when
    /// it has any: a part that short matches a large share of all members, and no index
    /// finds it (trigram indexes start at three characters), so every member would be read.
    pub async fn find(
        &self,
        text: &str,
        after_email: Option<String>,
        limit: Option<i64>,
    ) -> Result<Page<Member, String>, MemberError> {
        let page = crate::paging::page(after_email, limit)?;
        let text = text.trim().to_lowercase();
        if !(FIND_MIN_CHARS..=100).contains(&text.chars().count()) {
            return Err(ValidationErrors::field("q", "must be 3 to 100 characters").into());
        }
        let phone_like = text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '+' | '(' | ')'));
        let digits: String = if phone_like {
            text.chars().filter(char::is_ascii_digit).collect()
        } else {
            String::new()
        };
        if (1..FIND_MIN_CHARS).contains(&digits.len()) {
            return Err(ValidationErrors::field("q", "a phone number needs at least 3 digits").into());
        }
        let query = MemberQuery {
            pattern: MemberPattern::Anywhere { text, digits },
            page,
        };
        Ok(self.ports.members.search_members(&query, Consistency::Strong).await?)
    }
}

/// The batch that anonymises members withdrawn at least 60 days ago ([`crate::jobs`]).
#[derive(Clone)]
pub struct AnonymiseWithdrawn {
    ports: Ports,
}

/// The anonymisation batch's job name.
pub const ANONYMISE_JOB: &str = "anonymise-withdrawn";

impl AnonymiseWithdrawn {
    /// Over `ports`.
    pub fn new(ports: Ports) -> Self {
        Self { ports }
    }
}

#[async_trait::async_trait]
impl BatchJob for AnonymiseWithdrawn {
    type Item = MemberId;

    fn name(&self) -> &'static str {
        ANONYMISE_JOB
    }

    fn key(item: &MemberId) -> String {
        item.to_string()
    }

    async fn work_list(
        &self,
        after: Option<&str>,
        limit: i64,
        now: time::OffsetDateTime,
    ) -> Result<Vec<MemberId>, JobError> {
        let ids = self
            .ports
            .members
            .members_to_anonymise(
                now - ANONYMISE_AFTER,
                crate::jobs::resume_after(after)?,
                limit,
                Consistency::Eventual,
            )
            .await?;
        Ok(ids)
    }

    async fn remaining(&self, after: Option<&str>, now: time::OffsetDateTime) -> Result<i64, JobError> {
        let count = self
            .ports
            .members
            .count_members_to_anonymise(
                now - ANONYMISE_AFTER,
                crate::jobs::resume_after(after)?,
                Consistency::Eventual,
            )
            .await?;
        Ok(count)
    }

    async fn chunk(&self, ids: Vec<MemberId>, progress: Progress<'_>) -> Result<Recorded, JobError> {
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        let due = uow.members().to_anonymise(&ids, now - ANONYMISE_AFTER).await?;
        for mut member in due.iter().cloned() {
            member.anonymise(now);
            uow.members().update(&member).await?;
        }
        let recorded = progress.record(uow.as_mut(), due.len() as i64, 0).await?;
        uow.commit().await?;
        Ok(recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;
    use crate::testing::{TestPorts, member_fixture};
    use ports::{CommitToken, MockUnitOfWork, PageRequest};

    fn sign_up() -> SignUp {
        SignUp {
            email: "Rider@Example.com".into(),
            password: "correct horse battery".into(),
            name: "Kim".into(),
            phone: "010-1234-5678".into(),
        }
    }

    #[tokio::test]
    async fn sign_up_stores_a_rider_and_its_event_and_remembers_the_commit() {
        let mut t = TestPorts::new();
        t.hasher.expect_hash().returning(|_| Ok("phc".into()));
        t.expect_uow(|uow: &mut MockUnitOfWork| {
            uow.members
                .expect_insert()
                .withf(|m| m.email == "rider@example.com" && m.role == Role::Rider && m.password_hash == "phc")
                .returning(|_| Ok(()));
            uow.emits(&["member.registered"]);
            uow.end.expect_commit().returning(|| Ok(CommitToken("7".into())));
        });
        t.consistency
            .expect_remember()
            .withf(|_, token| token.0 == "7")
            .times(1)
            .returning(|_, _| Ok(()));
        let member = MemberService::new(t.build(), Default::default())
            .sign_up(sign_up())
            .await
            .expect("ok");
        assert_eq!(member.email, "rider@example.com");
    }

    #[tokio::test]
    async fn a_taken_email_is_a_conflict_with_a_stable_code() {
        let mut t = TestPorts::new();
        t.hasher.expect_hash().returning(|_| Ok("phc".into()));
        t.expect_uow(|uow| {
            uow.members
                .expect_insert()
                .returning(|_| Err(StoreError::Conflict(Unique::MemberEmail)));
        });
        let err = MemberService::new(t.build(), Default::default())
            .sign_up(sign_up())
            .await
            .expect_err("taken");
        assert!(matches!(err, MemberError::EmailTaken));
        assert_eq!(err.code(), "member.email_taken");
    }

    #[tokio::test]
    async fn invalid_sign_up_never_reaches_the_store() {
        let t = TestPorts::new();
        let mut bad = sign_up();
        bad.password = "short".into();
        let err = MemberService::new(t.build(), Default::default())
            .sign_up(bad)
            .await
            .expect_err("invalid");
        assert_eq!(err.code(), "validation.failed");
        assert!(err.validation().is_some_and(|v| v.fields().contains_key("password")));
    }

    #[tokio::test]
    async fn a_store_outage_surfaces_as_unavailable() {
        let mut t = TestPorts::new();
        t.hasher.expect_hash().returning(|_| Ok("phc".into()));
        t.db.expect_begin().returning(|| Err(StoreError::unavailable("down")));
        let err = MemberService::new(t.build(), Default::default())
            .sign_up(sign_up())
            .await
            .expect_err("down");
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
    }

    #[tokio::test]
    async fn login_falls_back_to_the_primary_and_rejects_a_wrong_password() {
        let mut t = TestPorts::new();
        t.allow_limits();
        let member = member_fixture(Role::Rider);
        let m2 = member.clone();
        t.members
            .expect_member_by_email()
            .withf(|_, c| *c == Consistency::Eventual)
            .returning(|_, _| Ok(None));
        t.members
            .expect_member_by_email()
            .withf(|_, c| *c == Consistency::Strong)
            .times(1)
            .returning(move |_, _| Ok(Some(m2.clone())));
        t.hasher.expect_verify().returning(|_, _| Ok(false));
        let err = MemberService::new(t.build(), Default::default())
            .login(&member.email, "wrong password!", "127.0.0.1")
            .await
            .expect_err("wrong");
        assert_eq!(err.code(), "auth.invalid_credentials");
    }

    #[tokio::test]
    async fn a_login_for_an_unknown_email_verifies_a_decoy_hash_made_once() {
        let mut t = TestPorts::new();
        t.allow_limits();
        t.members.expect_member_by_email().returning(|_, _| Ok(None));
        t.hasher.expect_hash().times(1).returning(|_| Ok("decoy-phc".into()));
        t.hasher
            .expect_verify()
            .withf(|password, hash| password == "guess" && hash == "decoy-phc")
            .times(2)
            .returning(|_, _| Ok(false));
        let service = MemberService::new(t.build(), Default::default());
        for _ in 0..2 {
            let err = service
                .login("nobody@example.com", "guess", "127.0.0.1")
                .await
                .expect_err("unknown");
            assert_eq!(err.code(), "auth.invalid_credentials");
        }
    }

    #[tokio::test]
    async fn a_busy_hasher_is_unavailable_and_sign_ups_are_limited_per_ip() {
        let mut t = TestPorts::new();
        t.limiter
            .expect_check()
            .withf(|key, quota| key == "signup:ip:10.0.0.7" && quota.limit == 20)
            .times(1)
            .returning(|_, _| Ok(RateDecision::Allowed));
        t.hasher.expect_hash().times(1).returning(|_| Err(HashError::Busy));
        let service = MemberService::new(t.build(), Default::default());
        let err = service.sign_up_from(sign_up(), "10.0.0.7").await.expect_err("busy");
        assert_eq!((err.kind(), err.code()), (crate::ErrorKind::Unavailable, "auth.busy"));

        let mut t = TestPorts::new();
        t.limiter.expect_check().returning(|_, _| {
            Ok(RateDecision::Limited {
                retry_after: Duration::from_secs(9),
            })
        });
        let err = MemberService::new(t.build(), Default::default())
            .sign_up_from(sign_up(), "10.0.0.7")
            .await
            .expect_err("limited");
        assert_eq!(err.code(), "rate_limited");
    }

    #[tokio::test]
    async fn login_is_refused_when_the_limiter_says_so_or_is_down() {
        let mut t = TestPorts::new();
        t.limiter.expect_check().returning(|_, _| {
            Ok(RateDecision::Limited {
                retry_after: Duration::from_secs(3),
            })
        });
        let err = MemberService::new(t.build(), Default::default())
            .login("a@b.co", "x", "1.2.3.4")
            .await
            .expect_err("limited");
        assert_eq!(
            err.kind(),
            crate::ErrorKind::TooManyRequests {
                retry_after: Duration::from_secs(3)
            }
        );

        let mut t = TestPorts::new();
        t.limiter
            .expect_check()
            .returning(|_, _| Err(ports::LimiterError::Unavailable("down".into())));
        let err = MemberService::new(t.build(), Default::default())
            .login("a@b.co", "x", "1.2.3.4")
            .await
            .expect_err("closed");
        assert_eq!(err.code(), "auth.rate_limiter_unavailable");
    }

    #[tokio::test]
    async fn reusing_a_spent_refresh_token_is_reported() {
        let mut t = TestPorts::new();
        t.refresh_tokens.expect_rotate().returning(|_, _, _| {
            Ok(RotateOutcome::Reused {
                member_id: MemberId(uuid::Uuid::nil()),
                family_id: TokenFamilyId(uuid::Uuid::nil()),
            })
        });
        let err = MemberService::new(t.build(), Default::default())
            .refresh("spent")
            .await
            .expect_err("reused");
        assert_eq!(err.code(), "auth.refresh_token_reused");
    }

    /// Ports where `email`'s account (of `role`) has the password `secret`.
    fn account_with_password(role: Role) -> (TestPorts, Member) {
        let mut t = TestPorts::new();
        t.allow_limits();
        let mut member = member_fixture(role);
        member.password_hash = "right".into();
        let found = member.clone();
        t.members
            .expect_member_by_email()
            .returning(move |_, _| Ok(Some(found.clone())));
        t.hasher
            .expect_verify()
            .returning(|password, hash| Ok(password == "secret" && hash == "right"));
        (t, member)
    }

    #[tokio::test]
    async fn a_rider_with_the_right_password_is_refused_the_admin_web_and_no_login_is_recorded() {
        let (t, _) = account_with_password(Role::Rider);
        // No unit of work (the strict database mock fails on `begin`), no session.
        let err = MemberService::new(t.build(), Default::default())
            .staff_login("rider@example.com", "secret", "203.0.113.9")
            .await
            .expect_err("rider");
        assert_eq!(err.code(), "auth.not_staff");
    }

    #[tokio::test]
    async fn a_staff_login_records_the_login_and_stores_only_the_session_hash() {
        let (mut t, member) = account_with_password(Role::Cx);
        let id = member.id;
        t.expect_uow(move |uow| {
            let m = member.clone();
            uow.members.expect_by_id().returning(move |_| Ok(Some(m.clone())));
            uow.members
                .expect_update()
                .withf(|m| m.last_login_at.is_some())
                .times(1)
                .returning(|_| Ok(()));
            uow.commits();
        });
        t.consistency.expect_remember().returning(|_, _| Ok(()));
        let stored = std::sync::Arc::new(std::sync::Mutex::new(None));
        let sink = stored.clone();
        t.staff_sessions.expect_create_session().times(1).returning(move |s| {
            *sink.lock().expect("lock") = Some(s.clone());
            Ok(())
        });
        let login = MemberService::new(t.build(), Default::default())
            .staff_login("rider@example.com", "secret", "203.0.113.9")
            .await
            .expect("staff");
        let session = stored.lock().expect("lock").clone().expect("stored");
        assert_eq!(session.member_id, id);
        assert_eq!(session.token_hash, hash_token(&login.token));
        assert_ne!(session.token_hash, login.token);
        assert_eq!(session.csrf_token.len(), 64);
    }

    #[tokio::test]
    async fn a_staff_session_is_asked_for_with_the_idle_timeout_and_ends_when_the_account_is_no_longer_staff() {
        let mut t = TestPorts::new();
        let mut demoted = member_fixture(Role::Rider);
        demoted.role = Role::Rider;
        let member_id = demoted.id;
        t.staff_sessions
            .expect_touch_session()
            .withf(|hash, idle_since, now| {
                hash == hash_token("tok") && (*now - *idle_since) == time::Duration::minutes(30)
            })
            .times(1)
            .returning(move |hash, _, now| {
                Ok(Some(StaffSession {
                    token_hash: hash.to_owned(),
                    member_id,
                    csrf_token: "c".into(),
                    created_at: now,
                    last_seen_at: now,
                }))
            });
        t.members.expect_member().times(1).return_once(move |_, c| {
            assert_eq!(c, Consistency::Strong);
            Ok(Some(demoted))
        });
        t.staff_sessions
            .expect_delete_session()
            .withf(|hash| hash == hash_token("tok"))
            .times(1)
            .returning(|_| Ok(()));
        let found = MemberService::new(t.build(), Default::default())
            .staff_session("tok")
            .await
            .expect("ok");
        assert!(found.is_none());
    }

    #[tokio::test]
    async fn phone_like_text_also_searches_phone_digits_and_other_text_does_not() {
        let mut t = TestPorts::new();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        t.members.expect_search_members().times(2).returning(move |q, c| {
            assert_eq!(c, Consistency::Strong);
            sink.lock().expect("lock").push(q.clone());
            Ok(Page {
                items: vec![],
                next: None,
            })
        });
        let service = MemberService::new(t.build(), Default::default());
        service.find(" 1234-5678 ", None, Some(100)).await.expect("phone");
        service
            .find("Kim 2", Some("a@example.com".into()), Some(1))
            .await
            .expect("name");
        for limit in [0, 101] {
            let err = service.find("Kim 2", None, Some(limit)).await.expect_err("limit");
            assert_eq!(err.code(), "validation.failed");
        }
        let err = service.find("   ", None, Some(20)).await.expect_err("empty");
        assert_eq!(err.code(), "validation.failed");
        // Shorter than a trigram: no index could find it, so it is refused, not scanned for.
        let err = service
            .find(" 민수 ", None, Some(20))
            .await
            .expect_err("two characters");
        assert_eq!(err.code(), "validation.failed");
        let err = service.find("(1) 2", None, Some(20)).await.expect_err("two digits");
        assert_eq!(err.code(), "validation.failed");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(
            seen,
            vec![
                MemberQuery {
                    pattern: MemberPattern::Anywhere {
                        text: "1234-5678".into(),
                        digits: "12345678".into()
                    },
                    page: PageRequest {
                        after: None,
                        limit: 100
                    },
                },
                MemberQuery {
                    pattern: MemberPattern::Anywhere {
                        text: "kim 2".into(),
                        digits: String::new()
                    },
                    page: PageRequest {
                        after: Some("a@example.com".into()),
                        limit: 1
                    },
                },
            ]
        );
    }

    #[tokio::test]
    async fn withdrawal_emits_the_event_and_revokes_tokens() {
        let mut t = TestPorts::new();
        let member = member_fixture(Role::Rider);
        let id = member.id;
        t.expect_uow(move |uow| {
            let m = member.clone();
            uow.members.expect_by_id().returning(move |_| Ok(Some(m.clone())));
            uow.members
                .expect_update()
                .withf(|m| m.withdrawn_at.is_some())
                .returning(|_| Ok(()));
            uow.emits(&["member.withdrawn"]);
            uow.commits();
        });
        t.consistency.expect_remember().returning(|_, _| Ok(()));
        t.refresh_tokens
            .expect_revoke_member()
            .withf(move |m| *m == id)
            .times(1)
            .returning(|_| Ok(()));
        t.staff_sessions
            .expect_delete_sessions_of()
            .withf(move |m| *m == id)
            .times(1)
            .returning(|_| Ok(()));
        let withdrawn = MemberService::new(t.build(), Default::default())
            .withdraw(id)
            .await
            .expect("ok");
        assert!(!withdrawn.is_active());
    }

    #[tokio::test]
    async fn withdrawing_twice_is_a_conflict_and_commits_nothing() {
        let mut t = TestPorts::new();
        let mut member = member_fixture(Role::Rider);
        member.withdraw(time::OffsetDateTime::now_utc()).expect("active");
        let id = member.id;
        t.expect_uow(move |uow| {
            let m = member.clone();
            uow.members.expect_by_id().returning(move |_| Ok(Some(m.clone())));
            uow.end.expect_commit().never();
        });
        let err = MemberService::new(t.build(), Default::default())
            .withdraw(id)
            .await
            .expect_err("twice");
        assert_eq!(err.code(), "member.already_withdrawn");
    }
}
