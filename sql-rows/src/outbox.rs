//! Outbox rows, as the relay reads them.

use ports::{OutboxRecord, OutboxStats, StoreError};

use crate::Columns;

/// An `outbox` row (the aggregate id is the record's key).
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn record(row: &impl Columns) -> Result<OutboxRecord, StoreError> {
    Ok(OutboxRecord {
        id: row.id("id")?,
        seq: row.int("seq")?,
        topic: row.text("topic")?,
        event_type: row.text("event_type")?,
        key: row.text("aggregate_id")?,
        payload: row.text("payload")?,
        attempts: row.int32("attempts")?,
        created_at: row.time("created_at")?,
    })
}

/// Claimed `outbox` rows in append order (`seq`), whatever order the statement that claimed
/// them returned them in (`update … returning` promises none).
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn claimed(rows: impl IntoIterator<Item = impl Columns>) -> Result<Vec<OutboxRecord>, StoreError> {
    let mut records = rows
        .into_iter()
        .map(|row| record(&row))
        .collect::<Result<Vec<_>, _>>()?;
    records.sort_by_key(|r| r.seq);
    Ok(records)
}

/// The row of the stats query: `backlog`, `oldest` (null when nothing is pending) and `dead`.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn stats(row: &impl Columns) -> Result<OutboxStats, StoreError> {
    Ok(OutboxStats {
        backlog: row.int("backlog")?,
        oldest_created_at: row.opt_time("oldest")?,
        dead: row.int("dead")?,
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::fake::Row;

    fn row(seq: i64) -> Row {
        Row::default()
            .with("id", Uuid::from_u128(seq.unsigned_abs().into()))
            .with("seq", seq)
            .with("topic", "t")
            .with("event_type", "e")
            .with("aggregate_id", "a")
            .with("payload", "{}")
            .with("attempts", 0)
            .with("created_at", 0)
    }

    #[test]
    fn claimed_records_come_in_append_order() {
        let records = claimed([row(3), row(1), row(2)]).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
