//! Finding a rider, and the rider's page: profile, status, driving licence and its checks,
//! policies, event trail.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use maud::html;
use serde::Deserialize;
use uuid::Uuid;

use application::licences::LicenceRecord;
use core_domain::MemberId;
use ports::TrailEvent;

use super::i18n::Msg;
use super::view::{licence_status, maybe_when, member_status, reason, when};
use super::{Lang, Page, PageResult};
use crate::http::AppState;

/// Riders per page of a search.
const PAGE_SIZE: i64 = 20;
/// Events shown on a rider's page.
const TRAIL_LIMIT: i64 = 50;

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// The search form and, for a query, one page of riders matching it.
pub async fn search(State(state): State<AppState>, page: Page, Query(query): Query<SearchQuery>) -> PageResult {
    let lang = page.lang;
    let text = query.q.unwrap_or_default();
    let found = if text.trim().is_empty() {
        None
    } else {
        let members = state
            .services
            .members
            .find(&text, query.after.clone(), Some(PAGE_SIZE))
            .await
            .map_err(|e| page.failed(e))?;
        Some(members)
    };
    let body = html! {
        h1 { (lang.t(Msg::Riders)) }
        form.search method="get" action="/admin/members" role="search" {
            label for="q" { (lang.t(Msg::SearchLabel)) }
            input #q type="search" name="q" value=(text) required minlength=(application::members::FIND_MIN_CHARS) autofocus;
            button type="submit" { (lang.t(Msg::Search)) }
        }
        @if let Some(members) = &found {
            @if members.items.is_empty() {
                p role="status" { (lang.t(Msg::NoResults)) }
            } @else {
                table {
                    caption { (lang.t(Msg::Riders)) " — “" (text.trim()) "”" }
                    thead { tr {
                        th scope="col" { (lang.t(Msg::Name)) }
                        th scope="col" { (lang.t(Msg::Email)) }
                        th scope="col" { (lang.t(Msg::Phone)) }
                        th scope="col" { (lang.t(Msg::Role)) }
                        th scope="col" { (lang.t(Msg::Status)) }
                    } }
                    tbody {
                        @for m in &members.items {
                            tr {
                                td { a href={ "/admin/members/" (m.id) } { (m.name) } }
                                td { (m.email) }
                                td { (m.phone) }
                                td { (m.role.as_str()) }
                                td { (member_status(lang, m)) }
                            }
                        }
                    }
                }
                nav.pager aria-label=(lang.t(Msg::NextPage)) {
                    @if query.after.is_some() {
                        a href={ "/admin/members?q=" (super::view::urlencode(&text)) } { (lang.t(Msg::FirstPage)) }
                    }
                    @if let Some(last) = &members.next {
                        a href={ "/admin/members?q=" (super::view::urlencode(&text)) "&after=" (super::view::urlencode(last)) } rel="next" {
                            (lang.t(Msg::NextPage))
                        }
                    }
                }
            }
        }
    };
    Ok(page.render(lang.t(Msg::Riders), body))
}

/// A rider: profile and status, driving licence with its checks, policies, and the events
/// written about them with the consumers that applied each.
pub async fn show(State(state): State<AppState>, page: Page, Path(id): Path<String>) -> PageResult {
    let lang = page.lang;
    let Ok(id) = id.parse::<Uuid>().map(MemberId) else {
        return Err(page.error(StatusCode::NOT_FOUND, "member.not_found"));
    };
    let member = state
        .services
        .members
        .profile_for_staff(id)
        .await
        .map_err(|e| page.failed(e))?;
    let policies = state
        .services
        .insurance
        .every_policy(id)
        .await
        .map_err(|e| page.failed(e))?;
    let licence = state.services.licences.record(id).await.map_err(|e| page.failed(e))?;
    let trail = state
        .services
        .insurance
        .member_trail(id, TRAIL_LIMIT)
        .await
        .map_err(|e| page.failed(e))?;
    let body = html! {
        h1 { (member.name) }
        section aria-labelledby="profile" {
            h2 #profile { (lang.t(Msg::Profile)) }
            dl {
                dt { (lang.t(Msg::Email)) } dd { (member.email) }
                dt { (lang.t(Msg::Phone)) } dd { (member.phone) }
                dt { (lang.t(Msg::Role)) } dd { (member.role.as_str()) }
                dt { (lang.t(Msg::Status)) } dd data-testid="member-status" { (member_status(lang, &member)) }
                dt { (lang.t(Msg::JoinedAt)) } dd { (when(member.created_at)) }
                dt { (lang.t(Msg::LastLogin)) } dd { (maybe_when(member.last_login_at)) }
            }
        }
        (licence_section(lang, &licence))
        section aria-labelledby="policies" {
            h2 #policies { (lang.t(Msg::Policies)) }
            @if policies.is_empty() {
                p { (lang.t(Msg::NoPolicies)) }
            } @else {
                table {
                    thead { tr {
                        th scope="col" { (lang.t(Msg::PolicyNumber)) }
                        th scope="col" { (lang.t(Msg::Status)) }
                        th scope="col" { (lang.t(Msg::CoverageStart)) }
                        th scope="col" { (lang.t(Msg::Expiry)) }
                        th scope="col" { (lang.t(Msg::Reason)) }
                        th scope="col" { (lang.t(Msg::ExpiredBy)) }
                    } }
                    tbody {
                        @for p in &policies {
                            tr {
                                td { a href={ "/admin/policies/" (p.id) } { (p.policy_number) } }
                                td { (p.status.as_str()) }
                                td { (when(p.coverage_start)) }
                                td { (maybe_when(p.expired_at)) }
                                td { @if let Some(r) = p.expiry_reason { (reason(lang, r)) } @else { "—" } }
                                td { @if let Some(actor) = &p.expired_by { code { (actor.to_string()) } } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
        (trail_section(lang, &trail))
    };
    Ok(page.render(&member.name, body))
}

/// The driving licence (status, number, expiry, last verification) and its checks, newest
/// first: who checked it (the rider registering, the re-verification batch) and the verdict.
fn licence_section(lang: Lang, record: &LicenceRecord) -> maud::Markup {
    html! {
        section aria-labelledby="licence" {
            h2 #licence { (lang.t(Msg::Licence)) }
            @match &record.licence {
                None => p data-testid="licence-status" { (lang.t(Msg::NoLicence)) },
                Some(l) => dl {
                    dt { (lang.t(Msg::Status)) }
                    dd data-testid="licence-status" { (licence_status(lang, l.status, l.status_reason.as_deref())) }
                    dt { (lang.t(Msg::LicenceNumber)) } dd { code { (l.number) } }
                    dt { (lang.t(Msg::ExpiresOn)) } dd { (l.expires_on) }
                    dt { (lang.t(Msg::LastVerified)) } dd { (when(l.last_verified_at)) }
                    dt { (lang.t(Msg::RegisteredAt)) } dd { (when(l.registered_at)) }
                },
            }
            h3 { (lang.t(Msg::LicenceChecks)) }
            @if record.checks.is_empty() {
                p { (lang.t(Msg::NoLicenceChecks)) }
            } @else {
                table data-testid="licence-checks" {
                    thead { tr {
                        th scope="col" { (lang.t(Msg::CheckedAt)) }
                        th scope="col" { (lang.t(Msg::LicenceNumber)) }
                        th scope="col" { (lang.t(Msg::Status)) }
                        th scope="col" { (lang.t(Msg::CheckedBy)) }
                    } }
                    tbody {
                        @for c in &record.checks {
                            tr {
                                td { (when(c.checked_at)) }
                                td { code { (c.number) } }
                                td { (licence_status(lang, c.status, c.reason.as_deref())) }
                                td { code { (c.actor.to_string()) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The event trail: each event written, whether the relay delivered it, who applied it.
fn trail_section(lang: Lang, trail: &[TrailEvent]) -> maud::Markup {
    html! {
        section aria-labelledby="trail" {
            h2 #trail { (lang.t(Msg::EventTrail)) }
            @if trail.is_empty() {
                p { (lang.t(Msg::NoEvents)) }
            } @else {
                table data-testid="event-trail" {
                    thead { tr {
                        th scope="col" { (lang.t(Msg::Event)) }
                        th scope="col" { (lang.t(Msg::WrittenAt)) }
                        th scope="col" { (lang.t(Msg::Delivery)) }
                        th scope="col" { (lang.t(Msg::AppliedBy)) }
                    } }
                    tbody {
                        @for e in trail {
                            tr {
                                td { code { (e.event_type) } br; small.muted { (e.id) } }
                                td { (when(e.created_at)) }
                                td {
                                    @match e.status.as_str() {
                                        "sent" => { span.badge.ok { (lang.t(Msg::Sent)) } " " (maybe_when(e.sent_at)) },
                                        "dead" => { span.badge.off { (lang.t(Msg::Dead)) } },
                                        _ => { span.badge { (lang.t(Msg::Pending)) } },
                                    }
                                    @if let Some(error) = &e.last_error { br; small.muted { (error) } }
                                }
                                td {
                                    @if e.consumed.is_empty() {
                                        span.muted { (lang.t(Msg::NotAppliedYet)) }
                                    }
                                    @for c in &e.consumed {
                                        div { code { (c.consumer) } " " (when(c.processed_at)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
