//! Pages of a list: a request (`after` the last row of the previous page, at most `limit`
//! rows) and its answer (the rows, and where the next page starts when there is one).
//!
//! Lists are walked by their sort key (keyset paging), never by an offset: a row added while
//! a client pages lands before the first page or in order after the cursor, so a walk sees
//! every row that existed when it started exactly once.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One page of a list to read: the rows after `after` (from the start when `None`), at most
/// `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// The sort key of the previous page's last row.
    pub after: Option<K>,
    /// At most this many rows; at least 1.
    pub limit: i64,
}

impl<K> PageRequest<K> {
    /// The first page of at most `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self { after: None, limit }
    }

    /// How many rows to read to know whether another page follows: one more than `limit`.
    pub fn probe(&self) -> i64 {
        self.limit.saturating_add(1)
    }
}

/// One page of a list: its rows, and the key to start the next page after, `None` on the
/// last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, K> {
    /// The rows, in the list's order.
    pub items: Vec<T>,
    /// The sort key of the last row, when more rows follow it.
    pub next: Option<K>,
}

impl<T, K> Page<T, K> {
    /// The page of `request` from `rows` read with [`PageRequest::probe`] as their limit:
    /// the first `limit`, and the key of the last of them when there were more.
    pub fn from_probe<R>(rows: Vec<R>, request: &PageRequest<K>, split: impl Fn(R) -> (T, K)) -> Self {
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        let mut next = None;
        for row in rows.into_iter().take(limit) {
            let (item, key) = split(row);
            items.push(item);
            next = Some(key);
        }
        Self {
            items,
            next: if more { next } else { None },
        }
    }

    /// [`Self::from_probe`] for rows that carry their own key, `key` of each.
    pub fn keyed(rows: Vec<T>, request: &PageRequest<K>, key: impl Fn(&T) -> K) -> Self {
        Self::from_probe(rows, request, |row| {
            let k = key(&row);
            (row, k)
        })
    }

    /// The same page with its rows turned into `U`s.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U, K> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

/// The sort key of a row in a list ordered by time: the time, and a tie-breaker unique in
/// the list (the row's id or its insertion sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeKey<I> {
    /// The row's time (created, issued, started).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Orders rows of the same time.
    pub tie: I,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(after: Option<u32>, limit: i64) -> PageRequest<u32> {
        PageRequest { after, limit }
    }

    #[test]
    fn a_probe_with_a_row_more_than_the_limit_has_a_next_key_its_last_kept_row() {
        let page = Page::from_probe(vec![1, 2, 3], &request(None, 2), |r| (r * 10, r));
        assert_eq!(page.items, vec![10, 20]);
        assert_eq!(page.next, Some(2));
    }

    #[test]
    fn a_probe_with_at_most_the_limit_is_the_last_page() {
        let page = Page::from_probe(vec![1, 2], &request(Some(7), 2), |r| (r, r));
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(page.next, None);
        let empty = Page::from_probe(Vec::<u32>::new(), &request(None, 2), |r| (r, r));
        assert!(empty.items.is_empty());
        assert_eq!(empty.next, None);
    }

    #[test]
    fn the_probe_reads_one_row_more_than_the_limit() {
        assert_eq!(request(None, 20).probe(), 21);
        assert_eq!(PageRequest::<u32>::first(5), request(None, 5));
    }
}
