//! How a use-case error presents itself to a client, without naming HTTP.

use std::time::Duration;

use core_domain::ValidationErrors;
use ports::StoreError;

/// The class of an error; the HTTP layer maps each to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Invalid values (422).
    Invalid,
    /// Missing or bad credentials (401).
    Unauthorized,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// The resource does not exist (404).
    NotFound,
    /// The state forbids it (409).
    Conflict,
    /// Throttled (429).
    TooManyRequests {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// A dependency is down (503).
    Unavailable,
    /// A bug: logged with its cause, answered opaquely (500).
    Internal,
}

/// A use-case error a client can be told about.
pub trait Problem: std::error::Error {
    /// The error's class.
    fn kind(&self) -> ErrorKind;
    /// Stable, dotted, documented: clients branch on it.
    fn code(&self) -> &'static str;
    /// Field errors, for [`ErrorKind::Invalid`].
    fn validation(&self) -> Option<&ValidationErrors> {
        None
    }
    /// What the client is told: the error's message, unless it carries an infrastructure
    /// cause (driver or server text, which names hosts, tables and versions), which stays in
    /// the logs.
    fn public_detail(&self) -> String {
        self.to_string()
    }
}

impl Problem for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Conflict(_) | StoreError::Concurrency => ErrorKind::Conflict,
            StoreError::Unavailable(_) | StoreError::SchemaMissing(_) => ErrorKind::Unavailable,
            StoreError::Other(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StoreError::Conflict(_) => "conflict",
            StoreError::Concurrency => "conflict.concurrent_update",
            StoreError::Unavailable(_) | StoreError::SchemaMissing(_) => "service.unavailable",
            StoreError::Other(_) => "internal",
        }
    }

    fn public_detail(&self) -> String {
        match self {
            StoreError::Conflict(_) => "this conflicts with data that already exists",
            StoreError::Concurrency => "a concurrent change came first; try again",
            StoreError::Unavailable(_) | StoreError::SchemaMissing(_) => {
                "the service is temporarily unavailable; try again shortly"
            }
            StoreError::Other(_) => "internal error",
        }
        .to_owned()
    }
}

impl Problem for ValidationErrors {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }

    fn code(&self) -> &'static str {
        "validation.failed"
    }

    fn validation(&self) -> Option<&ValidationErrors> {
        Some(self)
    }
}

/// Implements [`Problem`] for a context error enum: the shared `Validation` and `Store`
/// variants delegate, and so do the variants in brackets (each wraps a [`Problem`]); every
/// other variant is listed with its kind and code.
macro_rules! problem {
    ($error:ident $([$($delegate:ident),+])? { $($variant:ident $(($($field:tt)*))? $({ $($named:tt)* })? => $kind:expr, $code:literal;)* }) => {
        impl $crate::error::Problem for $error {
            fn kind(&self) -> $crate::error::ErrorKind {
                #[allow(unused_imports)]
                use $crate::error::ErrorKind::*;
                match self {
                    $error::Validation(e) => $crate::error::Problem::kind(e),
                    $error::Store(e) => $crate::error::Problem::kind(e),
                    $($($error::$delegate(e) => $crate::error::Problem::kind(e),)+)?
                    $($error::$variant $(($($field)*))? $({ $($named)* })? => $kind,)*
                }
            }

            fn code(&self) -> &'static str {
                match self {
                    $error::Validation(e) => $crate::error::Problem::code(e),
                    $error::Store(e) => $crate::error::Problem::code(e),
                    $($($error::$delegate(e) => $crate::error::Problem::code(e),)+)?
                    $($error::$variant { .. } => $code,)*
                }
            }

            fn validation(&self) -> Option<&core_domain::ValidationErrors> {
                match self {
                    $error::Validation(e) => Some(e),
                    _ => None,
                }
            }

            fn public_detail(&self) -> String {
                match self {
                    $error::Store(e) => $crate::error::Problem::public_detail(e),
                    $($($error::$delegate(e) => $crate::error::Problem::public_detail(e),)+)?
                    other => other.to_string(),
                }
            }
        }
    };
}
pub(crate) use problem;
