//! Extractors whose rejections are problem+json: JSON bodies, paths, queries, the bearer
//! token (with the per-member API rate limit) and the client IP.

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

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

/// An authenticated member with one of the given roles; any other role is refused (403)
/// before the body is even read.
macro_rules! role_extractor {
    ($(#[$meta:meta])* $name:ident: $($role:expr),+) => {
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
                let Auth(claims) = Auth::from_request_parts(parts, state).await?;
                if [$($role),+].contains(&claims.role) { Ok(Self(claims)) } else { Err(ApiError::forbidden()) }
            }
        }
    };
}

role_extractor!(
    /// A rider (insurance and driving routes).
    Rider: Role::Rider
);
role_extractor!(
    /// CX or admin staff.
    Staff: Role::Cx, Role::Admin
);
role_extractor!(
    /// An admin.
    Admin: Role::Admin
);

/// The client's IP: the first `X-Forwarded-For` entry when the proxy is trusted, else the
/// peer address, else `unknown`.
pub struct ClientIp(pub String);

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        if state.http.trust_forwarded_for
            && let Some(forwarded) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
            && let Some(first) = forwarded.split(',').next()
        {
            return Ok(Self(first.trim().to_owned()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Ok(Self(peer.unwrap_or_else(|| "unknown".to_owned())))
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
