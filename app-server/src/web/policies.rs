//! A policy for CX: its statement and driving sessions for a chosen period, its audit trail
//! and insurer callbacks, and the expiry flow — a form, a preview of what changes (the
//! statement before and after, the premium no longer billed), then the confirmation.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use application::insurance::{Caller, ExpiryPreview};
use core_domain::PolicyId;
use core_domain::insurance::{ExpiryChange, ExpiryReason, Policy, PolicyAudit};

use super::i18n::{Lang, Msg};
use super::view::{csrf, local_input, maybe_when, parse_local, reason, statement_table, when, won};
use super::{Page, PageResult, StaffForm, see_other};
use crate::http::AppState;

/// The statement period shown by default: the last 30 days.
const DEFAULT_PERIOD: time::Duration = time::Duration::days(30);

#[derive(Deserialize)]
pub struct PolicyQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    /// After an expiry: `expired` or `unchanged`.
    #[serde(default)]
    done: Option<String>,
}

fn caller(page: &Page) -> Caller {
    Caller {
        member_id: page.staff.member.id,
        role: page.staff.member.role,
    }
}

fn policy_id(page: &Page, raw: &str) -> Result<PolicyId, Response> {
    raw.parse::<Uuid>()
        .map(PolicyId)
        .map_err(|_| page.error(StatusCode::NOT_FOUND, "insurance.policy_not_found"))
}

/// The period of `from`/`to` (KST `datetime-local` values); by default the last 30 days.
fn period(page: &Page, from: Option<&str>, to: Option<&str>) -> Result<(OffsetDateTime, OffsetDateTime), Response> {
    let now = OffsetDateTime::now_utc();
    let parse = |raw: Option<&str>, default: OffsetDateTime, field: &str| match raw.filter(|r| !r.trim().is_empty()) {
        None => Ok(default),
        Some(raw) => parse_local(raw).ok_or_else(|| {
            page.error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("{field}: not a date and time"),
            )
        }),
    };
    Ok((parse(from, now - DEFAULT_PERIOD, "from")?, parse(to, now, "to")?))
}

/// The policy page.
pub async fn show(
    State(state): State<AppState>,
    page: Page,
    Path(id): Path<String>,
    Query(query): Query<PolicyQuery>,
) -> PageResult {
    let lang = page.lang;
    let id = policy_id(&page, &id)?;
    let (from, to) = period(&page, query.from.as_deref(), query.to.as_deref())?;
    let insurance = &state.services.insurance;
    let (policy, statement) = insurance
        .policy_statement(caller(&page), id, from, to)
        .await
        .map_err(|e| page.failed(e))?;
    let audit = insurance.audit_trail(id).await.map_err(|e| page.failed(e))?;
    let callbacks = insurance.insurer_callbacks(id).await.map_err(|e| page.failed(e))?;
    let done = match query.done.as_deref() {
        Some("expired") => Some(lang.t(Msg::ExpiredDone)),
        Some("unchanged") => Some(lang.t(Msg::ExpiryUnchanged)),
        _ => None,
    };
    let body = html! {
        p { a href={ "/admin/members/" (policy.member_id) } { "← " (lang.t(Msg::BackToRider)) } }
        h1 { (lang.t(Msg::Policy)) " " (policy.policy_number) }
        @if let Some(done) = done { div.notice.ok role="status" data-testid="done" { (done) } }
        (policy_facts(lang, &policy))
        section aria-labelledby="statement" {
            h2 #statement { (lang.t(Msg::Statement)) }
            form.period method="get" action={ "/admin/policies/" (policy.id) } {
                fieldset {
                    legend { (lang.t(Msg::Period)) " (KST)" }
                    label for="from" { (lang.t(Msg::From)) }
                    input #from type="datetime-local" step="1" name="from" value=(local_input(from));
                    label for="to" { (lang.t(Msg::To)) }
                    input #to type="datetime-local" step="1" name="to" value=(local_input(to));
                    button type="submit" { (lang.t(Msg::Show)) }
                }
            }
            (statement_table(lang, lang.t(Msg::Sessions), &statement))
        }
        @if policy.is_active() || policy.expired_at.is_some() {
            (expire_form(&page, &policy, from, to))
        }
        (audit_section(lang, &audit))
        section aria-labelledby="callbacks" {
            h2 #callbacks { (lang.t(Msg::InsurerCallbacks)) }
            @if callbacks.is_empty() {
                p { (lang.t(Msg::NoCallbacks)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.t(Msg::InsurerEventId)) }
                        th scope="col" { (lang.t(Msg::CancelledAt)) }
                        th scope="col" { (lang.t(Msg::ReceivedAt)) }
                        th scope="col" { (lang.t(Msg::Outcome)) }
                    } }
                    tbody {
                        @for c in &callbacks {
                            tr {
                                td { code { (c.insurer_event_id) } }
                                td { (when(c.cancelled_at)) }
                                td { (when(c.received_at)) }
                                td { code { (c.outcome.as_str()) } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page.render(&policy.policy_number, body))
}

fn policy_facts(lang: Lang, policy: &Policy) -> Markup {
    html! {
        dl data-testid="policy-facts" {
            dt { (lang.t(Msg::Status)) } dd data-testid="policy-status" { (policy.status.as_str()) }
            dt { (lang.t(Msg::HourlyPremium)) } dd { (won(lang, policy.hourly_premium)) }
            dt { (lang.t(Msg::CoverageStart)) } dd { (when(policy.coverage_start)) }
            dt { (lang.t(Msg::Expiry)) } dd { (maybe_when(policy.expired_at)) }
            dt { (lang.t(Msg::Reason)) } dd data-testid="policy-reason" {
                @if let Some(r) = policy.expiry_reason { (reason(lang, r)) } @else { "—" }
            }
            dt { (lang.t(Msg::ExpiredBy)) } dd { @if let Some(a) = &policy.expired_by { code { (a.to_string()) } } @else { "—" } }
        }
    }
}

/// The expiry form: effective time (now by default), reason, a required note.
fn expire_form(page: &Page, policy: &Policy, from: OffsetDateTime, to: OffsetDateTime) -> Markup {
    let lang = page.lang;
    let now = OffsetDateTime::now_utc();
    html! {
        section aria-labelledby="expire" {
            h2 #expire { (lang.t(Msg::ExpirePolicy)) }
            form.stack method="post" action={ "/admin/policies/" (policy.id) "/preview" } {
                (csrf(&page.staff))
                input type="hidden" name="from" value=(local_input(from));
                input type="hidden" name="to" value=(local_input(to));
                label for="effective_at" { (lang.t(Msg::EffectiveAt)) }
                input #effective_at type="datetime-local" step="1" name="effective_at" required
                    value=(local_input(now)) min=(local_input(policy.coverage_start)) max=(local_input(now))
                    aria-describedby="effective_hint";
                small #effective_hint { (lang.t(Msg::EffectiveHint)) }
                label for="reason" { (lang.t(Msg::Reason)) }
                select #reason name="reason" required {
                    option value="admin_request" selected { (lang.t(Msg::ReasonAdminRequest)) }
                    option value="insurer_cancellation" { (lang.t(Msg::ReasonInsurerCancellation)) }
                }
                label for="note" { (lang.t(Msg::Note)) " (" (lang.t(Msg::Required)) ")" }
                textarea #note name="note" rows="3" maxlength="1000" required aria-describedby="note_hint" {}
                small #note_hint { (lang.t(Msg::NoteHint)) }
                button type="submit" { (lang.t(Msg::PreviewChange)) }
            }
        }
    }
}

fn audit_section(lang: Lang, audit: &[PolicyAudit]) -> Markup {
    html! {
        section aria-labelledby="audit" {
            h2 #audit { (lang.t(Msg::AuditTrail)) }
            table data-testid="audit-trail" {
                thead { tr {
                    th scope="col" { (lang.t(Msg::When)) }
                    th scope="col" { (lang.t(Msg::Who)) }
                    th scope="col" { (lang.t(Msg::What)) }
                    th scope="col" { (lang.t(Msg::Reason)) }
                    th scope="col" { (lang.t(Msg::PreviousExpiry)) }
                    th scope="col" { (lang.t(Msg::NewExpiry)) }
                    th scope="col" { (lang.t(Msg::Note)) }
                } }
                tbody {
                    @for a in audit.iter().rev() {
                        tr {
                            td { (when(a.at)) }
                            td { code { (a.actor.to_string()) } }
                            td { code { (a.action) } }
                            td { @if let Some(r) = a.reason { (reason(lang, r)) } @else { "—" } }
                            td { (maybe_when(a.previous_expired_at)) }
                            td { (maybe_when(a.new_expired_at)) }
                            td { (a.note.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct ExpireForm {
    #[serde(default)]
    effective_at: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// What the form asks for, checked: the effective time, reason and note.
fn expiry_request(page: &Page, form: &ExpireForm) -> Result<(OffsetDateTime, ExpiryReason), Response> {
    let at = parse_local(&form.effective_at)
        .ok_or_else(|| page.error(StatusCode::UNPROCESSABLE_ENTITY, "effective_at: not a date and time"))?;
    let reason = match form.reason.as_str() {
        "admin_request" => ExpiryReason::AdminRequest,
        "insurer_cancellation" => ExpiryReason::InsurerCancellation,
        _ => return Err(page.error(StatusCode::UNPROCESSABLE_ENTITY, "reason: unknown")),
    };
    // The use case checks the note (required here, optional in the API).
    if form.note.trim().is_empty() {
        return Err(page.error(StatusCode::UNPROCESSABLE_ENTITY, "note: must not be empty"));
    }
    Ok((at, reason))
}

/// The preview: what the expiry would change, and a form to confirm it.
pub async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm { page, form }: StaffForm<ExpireForm>,
) -> PageResult {
    let lang = page.lang;
    let id = policy_id(&page, &id)?;
    let (at, expiry_reason) = expiry_request(&page, &form)?;
    let (from, to) = period(&page, form.from.as_deref(), form.to.as_deref())?;
    let preview: ExpiryPreview = state
        .services
        .insurance
        .preview_expiry(caller(&page), id, (at, expiry_reason), from, to)
        .await
        .map_err(|e| page.failed(e))?;
    let no_longer_billed = preview.statement_before.premium - preview.statement_after.premium;
    let body = html! {
        h1 { (lang.t(Msg::Preview)) }
        p { (lang.t(Msg::Policy)) " " strong { (preview.before.policy_number) } }
        @if preview.change == ExpiryChange::Unchanged {
            div.notice role="status" data-testid="nothing-changes" { (lang.t(Msg::NothingChanges)) }
        }
        div.compare {
            section aria-labelledby="before" {
                h2 #before { (lang.t(Msg::Before)) }
                (policy_facts(lang, &preview.before))
                (statement_table(lang, lang.t(Msg::Before), &preview.statement_before))
            }
            section aria-labelledby="after" data-testid="after" {
                h2 #after { (lang.t(Msg::After)) }
                (policy_facts(lang, &preview.after))
                (statement_table(lang, lang.t(Msg::After), &preview.statement_after))
            }
        }
        p.big { (lang.t(Msg::NoLongerBilled)) ": " strong data-testid="no-longer-billed" { (won(lang, no_longer_billed)) } }
        dl {
            dt { (lang.t(Msg::EffectiveAt)) } dd { (when(at)) }
            dt { (lang.t(Msg::Reason)) } dd { (reason(lang, expiry_reason)) }
            dt { (lang.t(Msg::Note)) } dd { (form.note.trim()) }
        }
        form.stack method="post" action={ "/admin/policies/" (id) "/expire" } {
            (csrf(&page.staff))
            input type="hidden" name="effective_at" value=(local_input(at));
            input type="hidden" name="reason" value=(expiry_reason.as_str());
            input type="hidden" name="note" value=(form.note);
            input type="hidden" name="from" value=(local_input(from));
            input type="hidden" name="to" value=(local_input(to));
            button type="submit" autofocus { (lang.t(Msg::Confirm)) }
            a href={ "/admin/policies/" (id) } { (lang.t(Msg::Cancel)) }
        }
    };
    Ok(page.render(lang.t(Msg::Preview), body))
}

/// Expires the policy through the same use case (and audit) as the API, then shows it.
pub async fn expire(
    State(state): State<AppState>,
    Path(id): Path<String>,
    StaffForm { page, form }: StaffForm<ExpireForm>,
) -> PageResult {
    let id = policy_id(&page, &id)?;
    let (at, reason) = expiry_request(&page, &form)?;
    let insurance = &state.services.insurance;
    let before = insurance
        .staff_policy(caller(&page), id)
        .await
        .map_err(|e| page.failed(e))?;
    let after = insurance
        .expire_by_staff(page.staff.member.id, id, at, reason, Some(&form.note))
        .await
        .map_err(|e| page.failed(e))?;
    let done = if after.version == before.version {
        "unchanged"
    } else {
        "expired"
    };
    let period = match (form.from.as_deref(), form.to.as_deref()) {
        (Some(from), Some(to)) => format!(
            "&from={}&to={}",
            super::view::urlencode(from),
            super::view::urlencode(to)
        ),
        _ => String::new(),
    };
    Ok(see_other(&format!("/admin/policies/{id}?done={done}{period}")))
}
