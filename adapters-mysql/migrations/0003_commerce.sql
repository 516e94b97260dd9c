-- Catalogue, wallets, coupons, orders and payments. Money is integer KRW (bigint).
-- InnoDB creates an index for each foreign key without one (named like the constraint):
-- orders_coupon_id_fkey and payments_member_id_fkey here.
create table products (
    id binary(16) not null,
    name text not null,
    price bigint not null,
    stock bigint not null,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (id),
    constraint products_price_check check (price > 0),
    constraint products_stock_check check (stock >= 0)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table wallets (
    member_id binary(16) not null,
    balance bigint not null default 0,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (member_id),
    constraint wallets_member_id_fkey foreign key (member_id) references members (id),
    constraint wallets_balance_check check (balance >= 0)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

-- Append-only: every wallet change with the balance after it. `seq` orders rows of the
-- same instant by insertion; wallet_ledger_seq_key as policy_audit_seq_key (until 0006).
create table wallet_ledger (
    seq bigint not null auto_increment,
    id binary(16) not null,
    member_id binary(16) not null,
    kind varchar(16) not null,
    amount bigint not null,
    balance_after bigint not null,
    reference binary(16),
    created_at datetime(6) not null,
    primary key (id),
    unique key wallet_ledger_seq_key (seq),
    key wallet_ledger_member_idx (member_id, created_at, seq),
    constraint wallet_ledger_member_id_fkey foreign key (member_id) references members (id),
    constraint wallet_ledger_kind_check check (kind in ('charge', 'payment', 'refund'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table coupon_campaigns (
    id binary(16) not null,
    name text not null,
    discount_kind varchar(16) not null,
    discount_value bigint not null,
    total_quantity bigint not null,
    issued_count bigint not null default 0,
    starts_at datetime(6) not null,
    ends_at datetime(6),
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (id),
    constraint coupon_campaigns_discount_kind_check check (discount_kind in ('fixed', 'percent')),
    constraint coupon_campaigns_issued_count_check check (issued_count between 0 and total_quantity)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table coupons (
    id binary(16) not null,
    campaign_id binary(16) not null,
    member_id binary(16) not null,
    status varchar(16) not null,
    discount_kind varchar(16) not null,
    discount_value bigint not null,
    order_id binary(16),
    issued_at datetime(6) not null,
    expires_at datetime(6) not null,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (id),
    -- One coupon per member per campaign.
    unique key coupons_campaign_member_key (campaign_id, member_id),
    key coupons_member_idx (member_id, issued_at),
    constraint coupons_campaign_id_fkey foreign key (campaign_id) references coupon_campaigns (id),
    constraint coupons_member_id_fkey foreign key (member_id) references members (id),
    -- `expired` is never stored: an available coupon past its expiry reads as expired.
    constraint coupons_status_check check (status in ('available', 'used')),
    constraint coupons_discount_kind_check check (discount_kind in ('fixed', 'percent'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table orders (
    id binary(16) not null,
    member_id binary(16) not null,
    status varchar(16) not null,
    subtotal bigint not null,
    discount bigint not null,
    total bigint not null,
    coupon_id binary(16),
    paid_at datetime(6),
    cancelled_at datetime(6),
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (id),
    key orders_member_idx (member_id, created_at),
    key orders_status_created_idx (status, created_at),
    key orders_status_paid_idx (status, paid_at),
    constraint orders_member_id_fkey foreign key (member_id) references members (id),
    constraint orders_coupon_id_fkey foreign key (coupon_id) references coupons (id),
    constraint orders_status_check check (status in ('pending', 'paid', 'cancelled')),
    constraint orders_total_check check (total >= 0)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

-- The lines of an order, in the order they were placed (line_no).
create table order_items (
    order_id binary(16) not null,
    line_no bigint not null,
    product_id binary(16) not null,
    product_name text not null,
    unit_price bigint not null,
    quantity bigint not null,
    line_total bigint not null,
    primary key (order_id, line_no),
    key order_items_product_idx (product_id),
    constraint order_items_order_id_fkey foreign key (order_id) references orders (id),
    constraint order_items_product_id_fkey foreign key (product_id) references products (id)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

create table payments (
    id binary(16) not null,
    order_id binary(16) not null,
    member_id binary(16) not null,
    amount bigint not null,
    status varchar(16) not null,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (id),
    unique key payments_order_key (order_id),
    constraint payments_order_id_fkey foreign key (order_id) references orders (id),
    constraint payments_member_id_fkey foreign key (member_id) references members (id),
    constraint payments_status_check check (status in ('succeeded'))
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;

-- Idempotency-Key reservations and the responses stored under them. The key column is
-- `request_key` from the start, the name PostgreSQL's and SQLite's 0007 rename `key` to:
-- `key` is a reserved word in MariaDB and MySQL. Keys are 1–255 visible ASCII characters;
-- the scope is `payment:<member uuid>`. The primary key takes at most 2 × 255 × 4 bytes,
-- within InnoDB's 3072.
create table idempotency_keys (
    scope varchar(255) not null,
    request_key varchar(255) not null,
    fingerprint text not null,
    response longtext,
    created_at datetime(6) not null,
    updated_at datetime(6) not null,
    primary key (scope, request_key)
) engine=InnoDB default charset=utf8mb4 collate=utf8mb4_bin;
