//! Extractors whose rejections are problem+json: JSON bodies, paths, queries, the bearer
//! token (with the per-member API rate limit) and the client IP.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use application::idempotency::IdempotencyKey;
use core_domain::member::Role;
use ports::{AccessClaims, RateDecision};

use super::AppState;
use super::error::ApiError;

/// `axum::Json` with problem+json rejections: malformed JSON → 400, values that do not fit
/// the shape → 422, wrong content type → 415.
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError {
            errors: None,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation.failed", e.body_text())
        },
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "request.malformed_json", e.body_text())
        }
        JsonRejection::MissingJsonContentType(e) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
            e.body_text(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request.too_large", other.body_text())
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "request.invalid_body", other.body_text()),
    }
}

/// `axum::extract::Path` with a problem+json rejection (a malformed id → 404: no resource
/// can have it).
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| {
                ApiError::new(StatusCode::NOT_FOUND, "resource.not_found", rejection.body_text())
            })
    }
}

/// `axum::extract::Query` with a problem+json rejection (422).
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation.failed",
                    rejection.body_text(),
                )
            })
    }
}

/// An authenticated member: a valid bearer access token, within the per-member API rate
/// limit (which fails open: an outage of the limiter must not take the API down).
#[derive(Debug, Clone)]
pub struct Auth(pub AccessClaims);

impl<S> FromRequestParts<S> for Auth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("a bearer access token is required"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let claims = state
            .ports
            .access_tokens
            .verify(token.trim())
            .map_err(|_| ApiError::unauthorized("the access token is invalid or expired"))?;
        let key = format!("api:member:{}", claims.member_id);
        let started = std::time::Instant::now();
        match state.ports.limiter.check(&key, state.http.api_quota).await {
            Ok(RateDecision::Allowed) => state.outage_log.limiter_up(started),
            Ok(RateDecision::Limited { retry_after }) => {
                state.outage_log.limiter_up(started);
                return Err(ApiError::too_many(retry_after));
            }
            Err(error) => state.outage_log.limiter_down(started, &error.to_string()),
        }
        Ok(Auth(claims))
    }
}

/// The claims of an authenticated member whose role is one of `allowed`, else 403. With
/// `current`, the role is also checked in the store (on the primary): a staff account
/// withdrawn (401) or demoted (403) since its token was issued loses its powers at once, not
/// when the token expires.
async fn authorize<S>(parts: &mut Parts, state: &S, allowed: &[Role], current: bool) -> Result<AccessClaims, ApiError>
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    let Auth(claims) = Auth::from_request_parts(parts, state).await?;
    if !allowed.contains(&claims.role) {
        return Err(ApiError::forbidden());
    }
    if !current {
        return Ok(claims);
    }
    let app = AppState::from_ref(state);
    match app.services.members.current_role(claims.member_id).await? {
        Some(role) if allowed.contains(&role) => Ok(claims),
        Some(_) => Err(ApiError::forbidden()),
        None => Err(ApiError::unauthorized("the account is no longer active")),
    }
}

/// An authenticated member with one of the given roles ([`authorize`]), refused before the
/// body is even read.
macro_rules! role_extractor {
    ($(#[$meta:meta])* $name:ident (current: $current:expr): $($role:expr),+) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(pub AccessClaims);

        impl<S> FromRequestParts<S> for $name
        where
            AppState: FromRef<S>,
            S: Send + Sync,
        {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
                authorize(parts, state, &[$($role),+], $current).await.map(Self)
            }
        }
    };
}

role_extractor!(
    /// A rider (insurance and driving routes; their writes check the member is active).
    Rider (current: false): Role::Rider
);
role_extractor!(
    /// CX or admin staff, as the store says now.
    Staff (current: true): Role::Cx, Role::Admin
);
role_extractor!(
    /// An admin, as the store says now.
    Admin (current: true): Role::Admin
);

/// Who the client is, for rate limits: its address (an IPv6 one as its /64, which one
/// subscriber usually holds whole), found by [`client_address`]; `unknown` without a peer.
pub struct ClientIp(pub String);

/// The client's address: the peer's, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy (each proxy appends the
/// address it was reached from, so entries left of that are whatever the client sent). All
/// trusted: the left-most. A malformed entry ends the walk at the last address read.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    for entry in forwarded_for.iter().flat_map(|header| header.split(',')).rev() {
        let Ok(hop) = entry.trim().parse::<IpAddr>() else {
            return client;
        };
        client = hop.to_canonical();
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// The rate-limit key of `ip`: an IPv4 address as it is, an IPv6 one as its /64.
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, 64).map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
    }
}

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self("unknown".to_owned()));
        };
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let ip = client_address(peer.ip(), &forwarded, &state.http.trusted_proxies);
        Ok(Self(client_key(ip)))
    }
}

/// The raw request body (for signatures and fingerprints), kept out of the OpenAPI
/// inference that a bare `Bytes` would trigger.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|rejection| {
                // The same code as an oversized JSON body (`AppJson`): clients branch on it.
                let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    "request.too_large"
                } else {
                    "request.invalid_body"
                };
                ApiError::new(rejection.status(), code, rejection.body_text())
            })
    }
}

/// A money-moving request: its `Idempotency-Key`, if it came with one, and its body as `B`
/// (`AppJson<T>`, or `()` for a body that is only fingerprinted). The key's fingerprint is
/// the request's path and body bytes: another order, campaign or body under one key is
/// another request.
pub struct Idempotent<B = ()> {
    pub key: Option<IdempotencyKey>,
    pub body: B,
}

impl<B> Idempotent<B> {
    /// The key, for an operation that cannot run without one.
    pub fn required_key(&self) -> Result<&IdempotencyKey, ApiError> {
        self.key.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "idempotency.key_required",
                "the Idempotency-Key header is required",
            )
        })
    }
}

/// How [`Idempotent`] reads a body once its bytes are fingerprinted.
pub trait IdempotentBody: Sized {
    fn parse(
        bytes: axum::body::Bytes,
        content_type: Option<HeaderValue>,
    ) -> impl Future<Output = Result<Self, ApiError>> + Send;
}

impl IdempotentBody for () {
    async fn parse(_: axum::body::Bytes, _: Option<HeaderValue>) -> Result<Self, ApiError> {
        Ok(())
    }
}

impl<T: DeserializeOwned> IdempotentBody for AppJson<T> {
    async fn parse(bytes: axum::body::Bytes, content_type: Option<HeaderValue>) -> Result<Self, ApiError> {
        // The bytes back into a request, so the body meets exactly `AppJson`'s checks.
        let mut request = Request::new(axum::body::Body::from(bytes));
        if let Some(content_type) = content_type {
            request.headers_mut().insert(CONTENT_TYPE, content_type);
        }
        AppJson::from_request(request, &()).await
    }
}

impl<S: Send + Sync, B: IdempotentBody> FromRequest<S> for Idempotent<B> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let header = req.headers().get("idempotency-key").cloned();
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        let path = req.uri().path().to_owned();
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        let key = match header {
            None => None,
            Some(value) => {
                let mut hasher = Sha256::new();
                hasher.update(path.as_bytes());
                hasher.update([0]);
                hasher.update(&bytes);
                let fingerprint = hex::encode(hasher.finalize());
                // A header that is not visible ASCII fails the same check as a long one.
                Some(IdempotencyKey::parse(value.to_str().unwrap_or(""), fingerprint)?)
            }
        };
        let body = B::parse(bytes, content_type).await?;
        Ok(Self { key, body })
    }
}

#[cfg(test)]
mod client_ip_tests {
    use std::net::IpAddr;

    use super::{client_address, client_key};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn without_a_trusted_peer_the_peer_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("203.0.113.9"), &["1.2.3.4"], &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(client_address(ip("203.0.113.9"), &["1.2.3.4"], &[]), ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.1/32"]);
        // The client sent "6.6.6.6" itself; the edge proxy appended 198.51.100.7, the inner
        // one 10.1.2.3.
        let chain = ["6.6.6.6, 198.51.100.7", "10.1.2.3"];
        assert_eq!(client_address(ip("192.168.1.1"), &chain, &trusted), ip("198.51.100.7"));
        // Rotating what the client sends changes nothing.
        let rotated = ["7.7.7.7, 198.51.100.7, 10.1.2.3"];
        assert_eq!(
            client_address(ip("192.168.1.1"), &rotated, &trusted),
            ip("198.51.100.7")
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            client_address(ip("10.0.0.1"), &["10.0.0.2, 10.0.0.3"], &trusted),
            ip("10.0.0.2")
        );
        // No header: the proxy itself.
        assert_eq!(client_address(ip("10.0.0.1"), &[], &trusted), ip("10.0.0.1"));
        // A malformed entry ends the walk at the last address read.
        assert_eq!(
            client_address(ip("10.0.0.1"), &["garbage, 10.0.0.9"], &trusted),
            ip("10.0.0.9")
        );
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &["198.51.100.7"], &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(client_key(ip("2001:db8:1:2:ffff::9")), "2001:db8:1:2::/64");
        assert_ne!(client_key(ip("2001:db8:1:3::1")), "2001:db8:1:2::/64");
        assert_eq!(client_key(ip("198.51.100.7")), "198.51.100.7");
    }
}
