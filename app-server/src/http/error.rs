//! Every error leaves as `application/problem+json` with a stable `code`. Use-case errors
//! arrive through [`application::Problem`]; request-shape errors (malformed JSON, a bad path)
//! are built here. A 500 logs its cause and answers opaquely.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use application::{ErrorKind, Problem};

/// The problem+json body (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemBody {
    /// A URI naming the problem type (`about:blank` or `urn:hexride:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, dotted error code, e.g. `coupon.sold_out`.
    pub code: String,
    /// Field → messages, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Option<BTreeMap<String, Vec<String>>>,
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: None,
            retry_after: None,
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "auth.unauthenticated", detail)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "auth.forbidden", "your role may not do this")
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        Self {
            errors: Some(errors),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation.failed",
                "the request has invalid values",
            )
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "resource.not_found", "no such resource")
    }

    pub fn too_many(retry_after: Duration) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests")
        }
    }

    /// A failure of ours: the cause is logged here, the client sees an opaque body.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }
}

/// Any use-case error converts via its [`Problem`] impl.
impl<E: Problem + 'static> From<E> for ApiError {
    fn from(error: E) -> Self {
        let status = match error.kind() {
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => return ApiError::internal(&ports::ErrorChain(&error)),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %ports::ErrorChain(&error), code = error.code(), "dependency unavailable");
        }
        let retry_after = match error.kind() {
            ErrorKind::TooManyRequests { retry_after } => Some(retry_after),
            ErrorKind::Unavailable => Some(Duration::from_secs(1)),
            _ => None,
        };
        Self {
            status,
            code: error.code(),
            detail: error.public_detail(),
            errors: error.validation().map(|v| v.fields().clone()),
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let body = ProblemBody {
            kind: format!("urn:hexride:{}", self.code),
            title,
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
            errors: self.errors,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(retry_after) = self.retry_after {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        // A bearer challenge where a bearer token is what is missing (not on the insurer's
        // HMAC-signed callback).
        if self.status == StatusCode::UNAUTHORIZED && self.code.starts_with("auth.") {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use application::members::MemberError;
    use ports::{Cause, StoreError};

    #[test]
    fn a_store_outage_answers_without_the_drivers_words() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused (os error 111)",
        );
        let error = MemberError::Store(StoreError::Unavailable(Cause::caused_by(
            "error communicating with database at db-primary.internal:5432",
            io,
        )));
        let api = ApiError::from(error);
        assert_eq!(
            (api.status, api.code),
            (StatusCode::SERVICE_UNAVAILABLE, "service.unavailable")
        );
        assert_eq!(api.detail, "the service is temporarily unavailable; try again shortly");
        assert_eq!(api.retry_after, Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_use_case_error_keeps_its_own_message() {
        let api = ApiError::from(MemberError::EmailTaken);
        assert_eq!(
            (api.status, api.detail.as_str()),
            (StatusCode::CONFLICT, "this e-mail address is already registered")
        );
    }
}
