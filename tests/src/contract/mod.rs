//! The SQL adapter contract: what every store adapter (SQLite, PostgreSQL, MySQL) must do,
//! written once. An adapter's test file builds [`Stores`] over a fresh, migrated database and
//! calls [`contract_tests!`](crate::contract_tests), which expands to one test per case.

mod admin_web;
mod catalog;
mod coupons;
mod events;
mod idempotency;
mod insurance;
mod licences;
mod members;
mod orders;
mod paging;
mod tokens;
mod units_of_work;
mod wallet;

use time::OffsetDateTime;
use uuid::Uuid;

use core_domain::MemberId;
use core_domain::member::{Member, NewMember, Role};
use ports::StoreError;

pub use admin_web::*;
pub use catalog::*;
pub use coupons::*;
pub use events::*;
pub use idempotency::*;
pub use insurance::*;
pub use licences::*;
pub use members::*;
pub use orders::*;
pub use paging::*;
pub use tokens::*;
pub use units_of_work::*;
pub use wallet::*;

/// The ports of one adapter over one fresh, empty, migrated database
/// ([`ports::StorePorts::of`] makes them from the adapter's store).
pub type Stores = ports::StorePorts;

/// Expands to one `#[tokio::test]` per contract case. `$factory` is an expression whose
/// value is a future of `(Stores, guard)`: the guard (a temporary directory, a container
/// handle, …) is kept alive until the case ends. With `optional`, the future's value is an
/// `Option<(Stores, guard)>` and a case with `None` (its service is missing and skipping was
/// asked for) returns at once.
///
/// ```ignore
/// tests::contract_tests!(sqlite_stores());
/// tests::contract_tests!(optional postgres_stores());
/// ```
#[macro_export]
macro_rules! contract_tests {
    (optional $factory:expr) => {
        $crate::contract_tests!(@list [$factory] optional);
    };
    ($factory:expr) => {
        $crate::contract_tests!(@list [$factory] required);
    };
    (@list [$factory:expr] $mode:ident) => {
        $crate::contract_tests!(@cases $mode $factory;
            a_member_round_trips_every_field,
            a_duplicate_email_is_a_member_email_conflict,
            members_are_searched_by_email_prefix,
            members_are_found_by_any_part_of_email_name_or_phone,
            members_are_found_by_digits_in_any_field_and_by_a_changed_phone,
            staff_sessions_live_until_idle_and_end_on_logout_or_for_the_member,
            insurer_callbacks_round_trip_oldest_first_per_policy,
            the_trail_shows_an_aggregates_events_newest_first_with_their_consumers,
            members_to_anonymise_are_withdrawn_by_the_cutoff_and_not_anonymised,
            a_policy_round_trips,
            a_licence_and_its_checks_round_trip,
            due_licences_are_listed_by_member_after_a_key_and_counted,
            one_holder_at_a_time_holds_a_job_and_its_progress_survives_it,
            plans_round_trip_list_by_name_and_change,
            a_second_active_policy_is_an_active_policy_conflict,
            a_duplicate_policy_number_is_a_policy_number_conflict,
            updating_a_policy_with_a_stale_version_is_a_concurrency_error,
            the_audit_trail_reads_oldest_first,
            a_second_open_session_is_an_open_session_conflict,
            sessions_of_policy_are_those_overlapping_the_period,
            a_rollback_leaves_nothing,
            dropping_a_unit_of_work_without_commit_leaves_nothing,
            a_spent_unit_of_work_refuses_work,
            a_failed_statement_leaves_the_unit_of_work_unable_to_commit,
            a_queued_write_is_seen_by_later_reads_and_its_failure_fails_the_commit,
            products_round_trip_and_page_by_id,
            take_stock_never_goes_below_zero,
            concurrent_stock_takes_succeed_exactly_as_often_as_there_is_stock,
            credit_stops_at_the_maximum_and_debit_at_zero,
            ledger_reads_newest_first,
            concurrent_credits_all_land_with_a_ledger_row_each,
            coupon_slots_never_exceed_the_total_quantity_under_concurrent_claims,
            campaigns_page_by_id_with_their_issued_counts,
            a_second_coupon_of_a_campaign_is_a_coupon_per_member_conflict,
            an_order_with_lines_round_trips_with_its_payment,
            a_members_lists_page_by_their_keys_through_ties_and_additions,
            popular_products_rank_units_of_recently_paid_orders,
            stale_orders_are_pending_orders_created_by_the_cutoff,
            an_idempotency_key_is_new_then_seen_with_its_response,
            reads_see_committed_idempotency_keys_only,
            a_claim_reserves_the_key_and_locks_the_member,
            the_inbox_records_an_event_once_per_consumer,
            the_outbox_is_claimed_in_seq_order,
            a_later_event_of_an_aggregate_waits_for_the_earlier_one,
            concurrent_claimers_never_get_the_same_row,
            an_expired_lease_makes_a_row_claimable_again,
            a_failed_row_is_hidden_until_its_retry_time,
            dead_rows_are_not_claimed_and_are_counted,
            outbox_stats_report_the_backlog_and_its_oldest_row,
            waiting_for_events_wakes_after_a_commit_that_appended_some,
            rotating_a_refresh_token_detects_reuse_and_revokes_the_family,
            revoking_a_member_or_a_family_invalidates_their_tokens,
            an_expired_refresh_token_is_invalid,
        );
    };
    (@cases required $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (stores, _guard) = $factory.await;
                $crate::contract::$case(stores).await;
            }
        )*
    };
    (@cases optional $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some((stores, _guard)) = $factory.await else {
                    return;
                };
                $crate::contract::$case(stores).await;
            }
        )*
    };
}

/// The current time at microsecond precision (what every adapter stores).
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .expect("a valid nanosecond")
}

/// A registered rider (not stored).
pub fn rider(email: &str, at: OffsetDateTime) -> Member {
    let new = NewMember::parse(email, "correct horse battery", "Kim Rider", "010-1234-5678").expect("valid sign-up");
    Member::register(
        MemberId(Uuid::now_v7()),
        &new,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        Role::Rider,
        at,
    )
    .0
}

/// Stores a fresh rider and returns it.
pub async fn stored_rider(stores: &Stores, email: &str) -> Member {
    let member = rider(email, now());
    let mut uow = stores.db.begin().await.expect("begin");
    uow.members().insert(&member).await.expect("insert member");
    uow.commit().await.expect("commit");
    member
}

/// Asserts a result is the store error `expected`.
#[track_caller]
pub fn assert_store_error<T: std::fmt::Debug>(result: Result<T, StoreError>, expected: StoreError) {
    match result {
        Err(e) => assert_eq!(e, expected),
        Ok(v) => panic!("expected {expected:?}, got Ok({v:?})"),
    }
}
