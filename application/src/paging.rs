//! Page sizes of the list use cases: every list answers pages of `limit` rows (default
//! [`DEFAULT_PAGE`], at most [`MAX_PAGE`]) after a key ([`ports::PageRequest`]).

use core_domain::ValidationErrors;
use ports::PageRequest;

/// A page holds this many rows unless the caller asks for another number.
pub const DEFAULT_PAGE: i64 = 20;
/// The most rows one page may hold.
pub const MAX_PAGE: i64 = 100;

/// `limit` (when given) checked against `1..=MAX_PAGE`, or the default.
///
/// # Errors
/// A validation error on `limit` when it is out of range.
pub fn limit(limit: Option<i64>) -> Result<i64, ValidationErrors> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ValidationErrors::field(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ))
    }
}

/// The page after `after` of at most `limit` rows (checked as [`limit`]).
///
/// # Errors
/// A validation error on `limit` when it is out of range.
pub fn page<K>(after: Option<K>, limit: Option<i64>) -> Result<PageRequest<K>, ValidationErrors> {
    Ok(PageRequest {
        after,
        limit: self::limit(limit)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_one_to_the_maximum_and_defaults_to_the_default_page() {
        assert_eq!(limit(None), Ok(DEFAULT_PAGE));
        assert_eq!(limit(Some(1)), Ok(1));
        assert_eq!(limit(Some(MAX_PAGE)), Ok(MAX_PAGE));
        for wrong in [0, -1, MAX_PAGE + 1] {
            let error = limit(Some(wrong)).expect_err("out of range");
            assert!(error.to_string().contains("limit"), "{error}");
        }
        assert_eq!(
            page(Some(7), Some(3)),
            Ok(PageRequest {
                after: Some(7),
                limit: 3
            })
        );
    }
}
