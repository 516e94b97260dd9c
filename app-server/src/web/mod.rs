//! The CX admin web under `/admin/`: server-rendered pages (maud) that CX and admins use in
//! a browser, on the same origin as the API and with every asset in the binary.
//!
//! - Session: an HttpOnly, `SameSite=Strict` cookie holding a random token whose hash the
//!   database keeps ([`ports::StaffSessions`]), so every instance behind a load balancer sees
//!   the same sessions and a logout ends one everywhere. It ends after
//!   `auth.staff_idle_timeout_secs` without a request. `Secure` when the request came over
//!   TLS (`X-Forwarded-Proto: https` from a trusted proxy).
//! - Every state-changing form carries the session's CSRF token (the login form a
//!   double-submit token of its own), compared in constant time.
//! - The Content-Security-Policy allows no script at all and styles only from `/admin/assets`.
//! - Every page and action asks the store for the staff member's role ([`Page`]); every action
//!   goes through the same use cases, and so the same audit, as the API.

// A page's helpers fail with the error page to answer: a `Response`, on a path that ends
// the request, where its size costs nothing.
#![allow(clippy::result_large_err)]

mod i18n;
mod manage;
mod members;
mod policies;
mod view;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use application::members::StaffContext;
use core_domain::member::Role;

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::ClientIp;
use i18n::{Lang, Msg};

/// What a page handler answers: the page, or the error page (or redirect) that ends it early,
/// so helpers can fail with `?`.
pub type PageResult = Result<Response, Response>;

/// The session cookie.
const SESSION_COOKIE: &str = "hexride_admin";
/// The login form's double-submit token.
const LOGIN_COOKIE: &str = "hexride_login";
/// The chosen language.
const LANG_COOKIE: &str = "hexride_lang";

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The admin web's routes, with their security headers.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { see_other("/admin/") }))
        .route("/admin/", get(home))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/lang/{code}", get(switch_lang))
        .route("/admin/assets/admin.css", get(stylesheet))
        .route("/admin/members", get(members::search))
        .route("/admin/members/{id}", get(members::show))
        .route("/admin/policies/{id}", get(policies::show))
        .route("/admin/policies/{id}/preview", post(policies::preview))
        .route("/admin/policies/{id}/expire", post(policies::expire))
        .route("/admin/products", get(manage::products).post(manage::create_product))
        .route("/admin/products/{id}", post(manage::update_product))
        .route("/admin/plans", get(manage::plans).post(manage::create_plan))
        .route("/admin/plans/{id}", post(manage::change_plan))
        .route("/admin/campaigns", get(manage::campaigns).post(manage::create_campaign))
        .route("/admin/staff", get(manage::staff).post(manage::create_staff))
        .layer(middleware::from_fn(security_headers))
}

/// CSP without scripts, no framing, no sniffing, no caching of pages with riders' data.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        include_str!("assets/admin.css"),
    )
        .into_response()
}

/// A `303 See Other` to `location` (an `/admin/` path of ours).
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// An HTML page.
fn html_page(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"))],
        markup.into_string(),
    )
        .into_response()
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn lang_of(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE).map_or_else(Lang::default, Lang::from_code)
}

/// Whether the browser reached us over TLS: a trusted proxy says so in `X-Forwarded-Proto`.
fn over_tls(parts: &Parts, state: &AppState) -> bool {
    let forwarded_https = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let from_trusted = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| {
            let ip = peer.ip().to_canonical();
            state.http.trusted_proxies.iter().any(|net| net.contains(&ip))
        });
    forwarded_https && from_trusted
}

/// A `Set-Cookie` value for one of our cookies, scoped to `/admin`.
fn set_cookie(name: &str, value: &str, max_age: Option<u64>, http_only: bool, secure: bool) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/admin; SameSite=Strict");
    if http_only {
        cookie.push_str("; HttpOnly");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether `given` is `expected`, in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// A page for a logged-in staff member: the session cookie names a live session whose
/// account is still active CX or admin staff (asked of the store on every request). Without
/// one the browser goes to the login page.
pub struct Page {
    pub lang: Lang,
    pub staff: StaffContext,
    /// The session token, for logout.
    token: String,
}

impl Page {
    /// An admin's page: a CX member gets 403.
    fn admin(&self) -> Result<(), Response> {
        if self.staff.member.role == Role::Admin {
            Ok(())
        } else {
            Err(self.error(StatusCode::FORBIDDEN, self.lang.t(Msg::Forbidden)))
        }
    }

    /// An error page with `detail`.
    fn error(&self, status: StatusCode, detail: &str) -> Response {
        error_page(self.lang, Some(&self.staff), status, detail, None)
    }

    /// The error page of a use case's error.
    fn failed(&self, error: impl Into<ApiError>) -> Response {
        api_error_page(self.lang, Some(&self.staff), error.into())
    }

    /// A page in the layout.
    fn render(&self, title: &str, body: Markup) -> Response {
        html_page(StatusCode::OK, view::layout(self.lang, title, Some(&self.staff), body))
    }
}

impl<S> FromRequestParts<S> for Page
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let lang = lang_of(&parts.headers);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Err(see_other("/admin/login"));
        };
        match state.services.members.staff_session(token).await {
            Ok(Some(staff)) => Ok(Page {
                lang,
                staff,
                token: token.to_owned(),
            }),
            Ok(None) => Err(see_other("/admin/login?ended=1")),
            Err(error) => Err(api_error_page(lang, None, error.into())),
        }
    }
}

/// A staff member's form post: a [`Page`] whose body carries the session's CSRF token
/// (`csrf`), parsed into `T`. A post without the token, or with another session's, is
/// refused with 403 before anything runs.
pub struct StaffForm<T> {
    pub page: Page,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<S, T> FromRequest<S> for StaffForm<T>
where
    AppState: FromRef<S>,
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let page = Page::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| page.error(e.status(), &e.body_text()))?;
        let csrf = serde_urlencoded::from_bytes::<CsrfField>(&bytes).map_or_else(|_| String::new(), |f| f.csrf);
        if !same_secret(&csrf, &page.staff.csrf_token) {
            return Err(page.error(StatusCode::FORBIDDEN, page.lang.t(Msg::BadCsrf)));
        }
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| page.error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()))?;
        Ok(StaffForm { page, form })
    }
}

/// The error page, for a signed-in staff member or not.
fn error_page(
    lang: Lang,
    staff: Option<&StaffContext>,
    status: StatusCode,
    detail: &str,
    fields: Option<&std::collections::BTreeMap<String, Vec<String>>>,
) -> Response {
    let body = html! {
        h1 { (lang.t(Msg::ErrorTitle)) }
        div.notice.error role="alert" {
            p { (detail) }
            @if let Some(fields) = fields {
                ul {
                    @for (field, problems) in fields {
                        @for problem in problems { li { code { (field) } ": " (problem) } }
                    }
                }
            }
        }
        p { a href="/admin/members" { (lang.t(Msg::Back)) } }
    };
    html_page(status, view::layout(lang, lang.t(Msg::ErrorTitle), staff, body))
}

fn api_error_page(lang: Lang, staff: Option<&StaffContext>, error: ApiError) -> Response {
    let detail = format!("{} ({})", error.detail, error.code);
    error_page(lang, staff, error.status, &detail, error.errors.as_ref())
}

/// The riders' search, for a signed-in staff member (the extractor sends others to login).
async fn home(_staff: Page) -> Response {
    see_other("/admin/members")
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    ended: Option<String>,
    #[serde(default)]
    bye: Option<String>,
}

/// The login page; it sets a fresh double-submit token for its form.
async fn login_page(State(state): State<AppState>, Query(q): Query<LoginQuery>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let lang = lang_of(&parts.headers);
    let notice = if q.ended.is_some() {
        Some(lang.t(Msg::SessionEnded))
    } else if q.bye.is_some() {
        Some(lang.t(Msg::LoggedOut))
    } else {
        None
    };
    login_form(lang, StatusCode::OK, notice, None, "", over_tls(&parts, &state))
}

/// The login form with a new double-submit token (and its cookie).
fn login_form(
    lang: Lang,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    email: &str,
    secure: bool,
) -> Response {
    let token = random_token();
    let body = view::login(lang, &token, notice, error, email);
    let mut response = html_page(status, view::layout(lang, lang.t(Msg::LoginTitle), None, body));
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(LOGIN_COOKIE, &token, None, true, secure));
    response
}

fn random_token() -> String {
    use rand::RngExt;
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    login_csrf: String,
}

/// Logs in: the login's own limits and checks, then a session cookie for a staff account.
async fn login(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let lang = lang_of(&parts.headers);
    let secure = over_tls(&parts, &state);
    let ClientIp(ip) = match ClientIp::from_request_parts(&mut parts, &state).await {
        Ok(ip) => ip,
        Err(error) => return api_error_page(lang, None, error),
    };
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default().to_owned();
    let bytes = match Bytes::from_request(Request::from_parts(parts, body), &state).await {
        Ok(bytes) => bytes,
        Err(e) => return error_page(lang, None, e.status(), &e.body_text(), None),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&bytes) else {
        return login_form(lang, StatusCode::UNPROCESSABLE_ENTITY, None, None, "", secure);
    };
    if expected.is_empty() || !same_secret(&form.login_csrf, &expected) {
        let error = lang.t(Msg::BadCsrf);
        return login_form(lang, StatusCode::FORBIDDEN, None, Some(error), &form.email, secure);
    }
    match state
        .services
        .members
        .staff_login(&form.email, &form.password, &ip)
        .await
    {
        Ok(login) => {
            let mut response = see_other("/admin/members");
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie(SESSION_COOKIE, &login.token, None, true, secure));
            headers.append(SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0), true, secure));
            response
        }
        Err(error) => {
            // A rider with the right password gets 403 `auth.not_staff`; a wrong password 401;
            // the login limits 429 — each with its message.
            let error = ApiError::from(error);
            login_form(lang, error.status, None, Some(&error.detail), &form.email, secure)
        }
    }
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
struct NoFields {}

/// Ends the session and clears its cookie.
async fn logout(
    State(state): State<AppState>,
    StaffForm {
        page,
        form: NoFields {},
    }: StaffForm<NoFields>,
) -> Response {
    if let Err(error) = state.services.members.staff_logout(&page.token).await {
        return page.failed(error);
    }
    let mut response = see_other("/admin/login?bye=1");
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0), true, false));
    response
}

#[derive(Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Sets the language cookie and goes back to `next` (one of our pages).
async fn switch_lang(Path(code): Path<String>, Query(q): Query<NextQuery>) -> Response {
    let lang = Lang::from_code(&code);
    let next = q
        .next
        .filter(|n| n.starts_with("/admin/") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/admin/".to_owned());
    let mut response = see_other(&next);
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(LANG_COOKIE, lang.code(), Some(365 * 24 * 3600), false, false),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; hexride_admin_x=2; hexride_admin=abc"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, LANG_COOKIE), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }

    #[test]
    fn session_cookies_are_http_only_and_strict() {
        let v = set_cookie(SESSION_COOKIE, "t", None, true, true);
        assert_eq!(v, "hexride_admin=t; Path=/admin; SameSite=Strict; HttpOnly; Secure");
    }
}
