//! The real clock and id source. Kept behind ports so tests can pin time and ids; the
//! clock truncates to microseconds because the databases store microseconds, and a value
//! that round-trips exactly keeps equality checks and optimistic versions honest.

use ports::{Clock, IdSource};
use time::OffsetDateTime;
use uuid::Uuid;

/// [`ports::Clock`]: the system's UTC time, truncated to whole microseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now - time::Duration::nanoseconds(i64::from(now.nanosecond() % 1_000))
    }
}

/// [`ports::IdSource`]: time-ordered UUIDv7s.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl IdSource for UuidV7Ids {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_clock_is_utc_and_has_no_sub_microsecond_part() {
        for _ in 0..100 {
            let now = SystemClock.now();
            assert_eq!(now.offset(), time::UtcOffset::UTC);
            assert_eq!(now.nanosecond() % 1_000, 0);
        }
    }

    #[tokio::test]
    async fn ids_are_v7_and_increase() {
        let a = UuidV7Ids.new_id();
        let b = UuidV7Ids.new_id();
        assert_eq!(a.get_version_num(), 7);
        assert!(b > a);
    }
}
