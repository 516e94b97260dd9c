//! Members' rows.

use core_domain::member::Member;
use ports::StoreError;

use crate::Columns;

/// A `members` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn member(row: &impl Columns) -> Result<Member, StoreError> {
    Ok(Member {
        id: row.id("id")?,
        email: row.text("email")?,
        name: row.text("name")?,
        phone: row.text("phone")?,
        password_hash: row.text("password_hash")?,
        role: row.parsed("role")?,
        status: row.parsed("status")?,
        created_at: row.time("created_at")?,
        last_login_at: row.opt_time("last_login_at")?,
        withdrawn_at: row.opt_time("withdrawn_at")?,
        anonymised_at: row.opt_time("anonymised_at")?,
    })
}
