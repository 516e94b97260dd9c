//! Coupon campaigns and the coupons issued from them. The issued count changes only in one
//! conditional statement, so a campaign never issues more than its total quantity.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::coupon::{Coupon, CouponCampaign, Discount};
use core_domain::{CampaignId, CouponId, MemberId};
use ports::{Consistency, CouponKey, CouponReads, CouponWrites, Page, PageRequest, StoreError, TimeKey};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{Lock, SqlConn, sql};
use crate::{Columns, SqlStore, corrupt, require_row};

/// A discount as two columns: `discount_kind` (`fixed` | `percent`) and `discount_value`.
pub fn discount_columns(d: &Discount) -> (&'static str, i64) {
    match *d {
        Discount::Fixed { amount } => ("fixed", amount),
        Discount::Percent { percent } => ("percent", percent),
    }
}

/// The discount stored by [`discount_columns`] in a campaign's or a coupon's row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode, or an unknown kind.
pub fn discount(row: &impl Columns) -> Result<Discount, StoreError> {
    let value = row.int("discount_value")?;
    match row.text("discount_kind")?.as_str() {
        "fixed" => Ok(Discount::Fixed { amount: value }),
        "percent" => Ok(Discount::Percent { percent: value }),
        other => Err(corrupt(
            "discount_kind",
            format_args!("unknown discount kind `{other}`"),
        )),
    }
}

/// A `coupon_campaigns` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn campaign(row: &impl Columns) -> Result<CouponCampaign, StoreError> {
    Ok(CouponCampaign {
        id: row.id("id")?,
        name: row.text("name")?,
        discount: discount(row)?,
        total_quantity: row.int("total_quantity")?,
        issued_count: row.int("issued_count")?,
        starts_at: row.time("starts_at")?,
        ends_at: row.opt_time("ends_at")?,
        created_at: row.time("created_at")?,
    })
}

/// A `coupons` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn coupon(row: &impl Columns) -> Result<Coupon, StoreError> {
    Ok(Coupon {
        id: row.id("id")?,
        campaign_id: row.id("campaign_id")?,
        member_id: row.id("member_id")?,
        status: row.parsed("status")?,
        discount: discount(row)?,
        order_id: row.opt_id("order_id")?,
        issued_at: row.time("issued_at")?,
        expires_at: row.time("expires_at")?,
    })
}

pub(crate) async fn insert_campaign(conn: &mut impl SqlConn, c: &CouponCampaign) -> Result<(), StoreError> {
    let (kind, value) = discount_columns(&c.discount);
    sql(
        "insert into coupon_campaigns (id, name, discount_kind, discount_value, total_quantity, \
         issued_count, starts_at, ends_at, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .id(c.id)
    .text(&c.name)
    .text(kind)
    .int(value)
    .int(c.total_quantity)
    .int(c.issued_count)
    .time(c.starts_at)
    .opt_time(c.ends_at)
    .time(c.created_at)
    .time(c.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn campaign_by_id(
    conn: &mut impl SqlConn,
    id: CampaignId,
    lock: Lock,
) -> Result<Option<CouponCampaign>, StoreError> {
    sql("select * from coupon_campaigns where id = ? {lock}")
        .id(id)
        .lock(lock)
        .fetch_optional(conn, campaign)
        .await
}

/// A page of campaigns in id (creation) order.
pub(crate) async fn campaign_page(
    conn: &mut impl SqlConn,
    after: Option<CampaignId>,
    limit: i64,
) -> Result<Vec<CouponCampaign>, StoreError> {
    let statement = match after {
        Some(after) => sql("select * from coupon_campaigns where id > ? order by id limit ?").id(after),
        None => sql("select * from coupon_campaigns order by id limit ?"),
    };
    statement.limit(limit).fetch_all(conn, campaign).await
}

/// `issued_count += 1` only while below `total_quantity`; `false` when sold out.
pub(crate) async fn claim_coupon_slot(conn: &mut impl SqlConn, id: CampaignId) -> Result<bool, StoreError> {
    let changed = sql(
        "update coupon_campaigns set issued_count = issued_count + 1, updated_at = ? \
         where id = ? and issued_count < total_quantity",
    )
    .time(OffsetDateTime::now_utc())
    .id(id)
    .execute(conn)
    .await?;
    Ok(changed == 1)
}

/// Conflict: [`ports::Unique::CouponPerMember`].
pub(crate) async fn insert_coupon(conn: &mut impl SqlConn, c: &Coupon) -> Result<(), StoreError> {
    let (kind, value) = discount_columns(&c.discount);
    sql(
        "insert into coupons (id, campaign_id, member_id, status, discount_kind, discount_value, \
         order_id, issued_at, expires_at, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .id(c.id)
    .id(c.campaign_id)
    .id(c.member_id)
    .text(c.status.as_str())
    .text(kind)
    .int(value)
    .opt_id(c.order_id)
    .time(c.issued_at)
    .time(c.expires_at)
    .time(c.issued_at)
    .time(c.issued_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn coupon_by_id(
    conn: &mut impl SqlConn,
    id: CouponId,
    lock: Lock,
) -> Result<Option<Coupon>, StoreError> {
    sql("select * from coupons where id = ? {lock}")
        .id(id)
        .lock(lock)
        .fetch_optional(conn, coupon)
        .await
}

/// Saves status, order and expiry (the discount and owner never change after issue).
pub(crate) async fn update_coupon(conn: &mut impl SqlConn, c: &Coupon) -> Result<(), StoreError> {
    let changed = sql("update coupons set status = ?, order_id = ?, expires_at = ?, updated_at = ? where id = ?")
        .text(c.status.as_str())
        .opt_id(c.order_id)
        .time(c.expires_at)
        .time(OffsetDateTime::now_utc())
        .id(c.id)
        .execute(conn)
        .await?;
    require_row(changed, "coupon", c.id)
}

/// One page, newest first.
pub(crate) async fn coupons_of_member(
    conn: &mut impl SqlConn,
    member_id: MemberId,
    page: &PageRequest<CouponKey>,
) -> Result<Page<Coupon, CouponKey>, StoreError> {
    let coupons = sql("select * from coupons where member_id = ? \
                       and (issued_at < ? or (issued_at = ? and id < ?)) \
                       order by issued_at desc, id desc limit ?")
    .id(member_id)
    .before_id_key(page.after.as_ref())
    .limit(page.probe())
    .fetch_all(conn, coupon)
    .await?;
    Ok(Page::keyed(coupons, page, |c| TimeKey {
        at: c.issued_at,
        tie: c.id,
    }))
}

#[async_trait]
impl<B: Backend> CouponWrites for SqlUnitOfWork<B> {
    async fn insert_campaign(&mut self, campaign: &CouponCampaign) -> Result<(), StoreError> {
        let result = insert_campaign(&mut self.conn()?, campaign).await;
        self.track(result)
    }

    async fn campaign_by_id(&mut self, id: CampaignId) -> Result<Option<CouponCampaign>, StoreError> {
        let result = campaign_by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn claim_coupon_slot(&mut self, id: CampaignId) -> Result<bool, StoreError> {
        let result = claim_coupon_slot(&mut self.conn()?, id).await;
        self.track(result)
    }

    async fn insert_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        let result = insert_coupon(&mut self.conn()?, coupon).await;
        self.track(result)
    }

    async fn coupon_by_id(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError> {
        let result = coupon_by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        let result = update_coupon(&mut self.conn()?, coupon).await;
        self.track(result)
    }
}

#[async_trait]
impl<B: Backend> CouponReads for SqlStore<B> {
    async fn campaign(&self, id: CampaignId, consistency: Consistency) -> Result<Option<CouponCampaign>, StoreError> {
        self.read(&consistency, id, |conn, &id| {
            Box::pin(campaign_by_id(conn, id, Lock::None))
        })
        .await
    }

    async fn campaigns(
        &self,
        after: Option<CampaignId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<CouponCampaign>, StoreError> {
        self.read(&consistency, (after, limit), |conn, &(after, limit)| {
            Box::pin(campaign_page(conn, after, limit))
        })
        .await
    }

    async fn coupons_of_member(
        &self,
        member_id: MemberId,
        page: &PageRequest<CouponKey>,
        consistency: Consistency,
    ) -> Result<Page<Coupon, CouponKey>, StoreError> {
        self.read(&consistency, (member_id, page.clone()), |conn, (member_id, page)| {
            Box::pin(coupons_of_member(conn, *member_id, page))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Row;

    #[test]
    fn a_discount_reads_back_from_its_two_columns() {
        for d in [Discount::Fixed { amount: 3_000 }, Discount::Percent { percent: 15 }] {
            let (kind, value) = discount_columns(&d);
            let row = Row::default().with("discount_kind", kind).with("discount_value", value);
            assert_eq!(discount(&row).ok(), Some(d));
        }
        let row = Row::default().with("discount_kind", "bogof").with("discount_value", 1);
        assert!(matches!(
            discount(&row),
            Err(StoreError::Other(m)) if m == "corrupt value in column `discount_kind`: unknown discount kind `bogof`"
        ));
    }
}
