//! The admin web's layout and the pieces its pages share: times in KST with UTC beside,
//! amounts in won, labels, the statement table.

use maud::{DOCTYPE, Markup, html};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use application::members::StaffContext;
use core_domain::Krw;
use core_domain::insurance::{ExpiryReason, Statement};
use core_domain::licence::LicenceStatus;
use core_domain::member::{Member, Role};

use super::i18n::{Lang, Msg};

/// Korea Standard Time, which has no daylight saving.
pub const KST: UtcOffset = match UtcOffset::from_hms(9, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

const SHOWN: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
const SHOWN_TIME: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[month]-[day] [hour]:[minute]:[second]");
/// What a `datetime-local` input holds.
const LOCAL_INPUT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
const LOCAL_INPUT_SECONDS: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

/// A time as KST, with UTC beside it, in a `<time>` element.
pub fn when(t: OffsetDateTime) -> Markup {
    let kst = t.to_offset(KST).format(SHOWN).unwrap_or_default();
    let utc = t.to_offset(UtcOffset::UTC).format(SHOWN_TIME).unwrap_or_default();
    let machine = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    html! {
        time datetime=(machine) { (kst) " KST " span.utc { "(" (utc) " UTC)" } }
    }
}

/// `raw` as a query-string value.
pub fn urlencode(raw: &str) -> String {
    serde_urlencoded::to_string([("", raw)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// An optional time, or a dash.
pub fn maybe_when(t: Option<OffsetDateTime>) -> Markup {
    match t {
        Some(t) => when(t),
        None => html! { "—" },
    }
}

/// A time for a `datetime-local` input (with `step="1"`), in KST, to the second.
pub fn local_input(t: OffsetDateTime) -> String {
    t.to_offset(KST).format(LOCAL_INPUT_SECONDS).unwrap_or_default()
}

/// A `datetime-local` value (KST, with or without seconds) as a time.
pub fn parse_local(raw: &str) -> Option<OffsetDateTime> {
    let raw = raw.trim();
    PrimitiveDateTime::parse(raw, LOCAL_INPUT_SECONDS)
        .or_else(|_| PrimitiveDateTime::parse(raw, LOCAL_INPUT))
        .ok()
        .map(|t| t.assume_offset(KST).to_offset(UtcOffset::UTC))
}

/// An amount in won: `12,000원` / `KRW 12,000`.
pub fn won(lang: Lang, amount: Krw) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if amount < 0 { "-" } else { "" };
    match lang {
        Lang::Ko => format!("{sign}{grouped}원"),
        Lang::En => format!("{sign}KRW {grouped}"),
    }
}

/// An expiry reason in words, with its code.
pub fn reason(lang: Lang, reason: ExpiryReason) -> Markup {
    let text = match reason {
        ExpiryReason::AdminRequest => Msg::ReasonAdminRequest,
        ExpiryReason::InsurerCancellation => Msg::ReasonInsurerCancellation,
        ExpiryReason::MemberWithdrawn => Msg::ReasonMemberWithdrawn,
    };
    html! { (lang.t(text)) " " code { (reason.as_str()) } }
}

/// A member's status, and when they withdrew.
pub fn member_status(lang: Lang, member: &Member) -> Markup {
    html! {
        @if member.is_active() {
            span.badge.ok { (lang.t(Msg::Active)) }
        } @else {
            span.badge.off { (lang.t(Msg::Withdrawn)) }
            " " (maybe_when(member.withdrawn_at))
        }
    }
}

/// A licence's status as a badge, with its reason (the provider's words) when it has one.
pub fn licence_status(lang: Lang, status: LicenceStatus, reason: Option<&str>) -> Markup {
    let (text, class) = match status {
        LicenceStatus::Valid => (Msg::LicenceValid, "badge ok"),
        LicenceStatus::Suspended => (Msg::LicenceSuspended, "badge off"),
        LicenceStatus::Expired => (Msg::LicenceExpired, "badge off"),
    };
    html! {
        span class=(class) { (lang.t(text)) }
        @if let Some(reason) = reason { " " small.muted { (reason) } }
    }
}

/// The statement's sessions and total.
pub fn statement_table(lang: Lang, caption: &str, statement: &Statement) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr {
                th scope="col" { (lang.t(Msg::Started)) }
                th scope="col" { (lang.t(Msg::Ended)) }
                th scope="col" { (lang.t(Msg::InsuredMinutes)) }
                th scope="col" { (lang.t(Msg::Premium)) }
            } }
            tbody {
                @if statement.sessions.is_empty() {
                    tr { td colspan="4" { (lang.t(Msg::NoSessions)) } }
                }
                @for line in &statement.sessions {
                    tr {
                        td { (when(line.started_at)) }
                        td { @match line.ended_at { Some(t) => (when(t)), None => (lang.t(Msg::StillOpen)) } }
                        td.num { (line.insured_minutes) }
                        td.num { (won(lang, line.premium)) }
                    }
                }
            }
            tfoot { tr {
                th scope="row" colspan="2" { (lang.t(Msg::Total)) }
                td.num data-testid="insured-minutes" { (statement.insured_minutes) }
                td.num data-testid="premium" { (won(lang, statement.premium)) }
            } }
        }
    }
}

/// The login form (its own double-submit token in `login_csrf`).
pub fn login(lang: Lang, token: &str, notice: Option<&str>, error: Option<&str>, email: &str) -> Markup {
    html! {
        h1 { (lang.t(Msg::LoginTitle)) }
        p { (lang.t(Msg::LoginHint)) }
        @if let Some(notice) = notice { div.notice role="status" { (notice) } }
        @if let Some(error) = error { div.notice.error role="alert" { (error) } }
        form.stack method="post" action="/admin/login" {
            input type="hidden" name="login_csrf" value=(token);
            label for="email" { (lang.t(Msg::Email)) }
            input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
            label for="password" { (lang.t(Msg::Password)) }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { (lang.t(Msg::LogIn)) }
        }
    }
}

/// Every page: the skip link, the navigation for the staff member's role, the language
/// switch, the logout button, and `body` as the main content.
pub fn layout(lang: Lang, title: &str, staff: Option<&StaffContext>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (lang.t(Msg::Title)) }
                link rel="stylesheet" href="/admin/assets/admin.css";
            }
            body {
                a.skip href="#main" { @match lang { Lang::Ko => "본문으로 건너뛰기", Lang::En => "Skip to content" } }
                header {
                    a.brand href="/admin/members" { (lang.t(Msg::Title)) }
                    @if let Some(staff) = staff {
                        nav aria-label=(lang.t(Msg::MainNav)) {
                            ul {
                                li { a href="/admin/members" { (lang.t(Msg::Riders)) } }
                                @if staff.member.role == Role::Admin {
                                    li { a href="/admin/products" { (lang.t(Msg::Products)) } }
                                    li { a href="/admin/campaigns" { (lang.t(Msg::Campaigns)) } }
                                    li { a href="/admin/plans" { (lang.t(Msg::Plans)) } }
                                    li { a href="/admin/staff" { (lang.t(Msg::StaffAccounts)) } }
                                }
                            }
                        }
                    }
                    div.session {
                        // The name read out is the visible text (in its own language) and
                        // what the link does.
                        a href={ "/admin/lang/" (lang.other().code()) "?next=/admin/" } {
                            span lang=(lang.other().code()) { (lang.t(Msg::LanguageName)) }
                            span.visually-hidden { " — " (lang.t(Msg::SwitchLanguage)) }
                        }
                        @if let Some(staff) = staff {
                            span { (lang.t(Msg::SignedInAs)) " " (staff.member.email) " (" (staff.member.role.as_str()) ")" }
                            form.inline method="post" action="/admin/logout" {
                                input type="hidden" name="csrf" value=(staff.csrf_token);
                                button type="submit" { (lang.t(Msg::LogOut)) }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    (body)
                    p.muted { (lang.t(Msg::TimesNote)) }
                }
            }
        }
    }
}

/// The hidden CSRF field of a staff form.
pub fn csrf(staff: &StaffContext) -> Markup {
    html! { input type="hidden" name="csrf" value=(staff.csrf_token); }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn won_groups_thousands() {
        assert_eq!(won(Lang::Ko, 12_000), "12,000원");
        assert_eq!(won(Lang::En, 1_234_567), "KRW 1,234,567");
        assert_eq!(won(Lang::Ko, 999), "999원");
        assert_eq!(won(Lang::Ko, -1_000), "-1,000원");
    }

    #[test]
    fn local_inputs_are_korea_time() {
        let t = parse_local("2026-12-02T20:35").expect("parses");
        assert_eq!(t, time::macros::datetime!(2026-12-02 11:35 UTC));
        assert_eq!(local_input(t), "2026-12-02T20:35:00");
        assert_eq!(
            parse_local("2026-12-02T20:35:07"),
            Some(time::macros::datetime!(2026-12-02 11:35:07 UTC))
        );
        assert_eq!(parse_local("yesterday"), None);
    }
}
