//! Paged lists over HTTP: `limit` and an opaque `cursor` in, `items` and `next` out.
//!
//! A cursor is the sort key of a page's last row (JSON, base64url without padding): the
//! next page starts after it. Clients treat it as opaque and only send back a `next` they
//! were given.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use ports::Page;

use super::error::ApiError;

/// Which page of a list: `limit` and `cursor`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items: 1–100, default 20.
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Where the page starts: the `next` of the previous page (the first page without it).
    #[param(nullable = false, min_length = 1)]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The key the page starts after, from `cursor`.
    ///
    /// # Errors
    /// 422 `validation.failed` on `cursor` when it is not a cursor of this list.
    pub fn after<K: DeserializeOwned>(&self) -> Result<Option<K>, ApiError> {
        self.cursor.as_deref().map(decode).transpose()
    }
}

/// `{items: [...], next}`: one page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    /// The page's items, in the list's order.
    pub items: Vec<T>,
    /// The cursor of the next page, `null` on the last one.
    #[schema(required = true)]
    pub next: Option<String>,
}

impl<T> Paged<T> {
    /// The body of `page`, each item turned into a `T` by `f`.
    pub fn of<D, K: Serialize>(page: Page<D, K>, f: impl FnMut(D) -> T) -> Self {
        let page = page.map(f);
        Self {
            next: page.next.as_ref().map(encode),
            items: page.items,
        }
    }
}

/// The cursor of `key`.
pub fn encode<K: Serialize>(key: &K) -> String {
    // A key is plain data (times, ids, numbers, text): it always serialises.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

/// The key of `cursor`.
///
/// # Errors
/// 422 `validation.failed` on `cursor` when it is not base64url JSON of a key `K`.
pub fn decode<K: DeserializeOwned>(cursor: &str) -> Result<K, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            ApiError::invalid_field(
                "cursor",
                "is not a cursor of this list (send back a `next` you were given)",
            )
        })
}

#[cfg(test)]
mod tests {
    use ports::TimeKey;
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_key_survives_its_cursor_to_the_nanosecond() {
        let key = TimeKey {
            at: datetime!(2026-12-07 17:09:28.123456789 UTC),
            tie: Uuid::now_v7(),
        };
        let cursor = encode(&key);
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{cursor}"
        );
        assert_eq!(decode::<TimeKey<Uuid>>(&cursor).expect("decoded"), key);
    }

    #[test]
    fn anything_but_a_cursor_of_the_list_is_a_422_on_cursor() {
        let seq_key = encode(&TimeKey {
            at: datetime!(2026-12-07 0:00 UTC),
            tie: 7_i64,
        });
        for wrong in ["", "not base64!", "bm90IGpzb24", seq_key.as_str()] {
            let error = decode::<TimeKey<Uuid>>(wrong).expect_err(wrong);
            assert_eq!(error.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY, "{wrong}");
            assert_eq!(error.code, "validation.failed");
        }
    }
}
