-- Catalogue, wallets, coupons, orders and payments. Money is integer KRW (bigint).
create table products (
    id uuid primary key,
    name text not null,
    price bigint not null,
    stock bigint not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint products_price_check check (price > 0),
    constraint products_stock_check check (stock >= 0)
);

create table wallets (
    member_id uuid primary key references members (id),
    balance bigint not null default 0,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint wallets_balance_check check (balance >= 0)
);

-- Append-only: every wallet change with the balance after it. `seq` orders rows of the
-- same instant by insertion.
create table wallet_ledger (
    seq bigint generated always as identity,
    id uuid primary key,
    member_id uuid not null references members (id),
    kind text not null,
    amount bigint not null,
    balance_after bigint not null,
    reference uuid,
    created_at timestamptz not null,
    constraint wallet_ledger_kind_check check (kind in ('charge', 'payment', 'refund'))
);

create index wallet_ledger_member_idx on wallet_ledger (member_id, created_at, seq);

create table coupon_campaigns (
    id uuid primary key,
    name text not null,
    discount_kind text not null,
    discount_value bigint not null,
    total_quantity bigint not null,
    issued_count bigint not null default 0,
    starts_at timestamptz not null,
    ends_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint coupon_campaigns_discount_kind_check check (discount_kind in ('fixed', 'percent')),
    constraint coupon_campaigns_issued_count_check check (issued_count between 0 and total_quantity)
);

create table coupons (
    id uuid primary key,
    campaign_id uuid not null references coupon_campaigns (id),
    member_id uuid not null references members (id),
    status text not null,
    discount_kind text not null,
    discount_value bigint not null,
    order_id uuid,
    issued_at timestamptz not null,
    expires_at timestamptz not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    -- `expired` is never stored: an available coupon past its expiry reads as expired.
    constraint coupons_status_check check (status in ('available', 'used')),
    constraint coupons_discount_kind_check check (discount_kind in ('fixed', 'percent'))
);

-- One coupon per member per campaign.
create unique index coupons_campaign_member_key on coupons (campaign_id, member_id);
create index coupons_member_idx on coupons (member_id, issued_at);

create table orders (
    id uuid primary key,
    member_id uuid not null references members (id),
    status text not null,
    subtotal bigint not null,
    discount bigint not null,
    total bigint not null,
    coupon_id uuid references coupons (id),
    paid_at timestamptz,
    cancelled_at timestamptz,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint orders_status_check check (status in ('pending', 'paid', 'cancelled')),
    constraint orders_total_check check (total >= 0)
);

create index orders_member_idx on orders (member_id, created_at);
create index orders_status_created_idx on orders (status, created_at);
create index orders_status_paid_idx on orders (status, paid_at);

-- The lines of an order, in the order they were placed (line_no).
create table order_items (
    order_id uuid not null references orders (id),
    line_no bigint not null,
    product_id uuid not null references products (id),
    product_name text not null,
    unit_price bigint not null,
    quantity bigint not null,
    line_total bigint not null,
    primary key (order_id, line_no)
);

create index order_items_product_idx on order_items (product_id);

create table payments (
    id uuid primary key,
    order_id uuid not null references orders (id),
    member_id uuid not null references members (id),
    amount bigint not null,
    status text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint payments_status_check check (status in ('succeeded'))
);

create unique index payments_order_key on payments (order_id);

-- Idempotency-Key reservations and the responses stored under them.
create table idempotency_keys (
    scope text not null,
    key text not null,
    fingerprint text not null,
    response text,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    constraint idempotency_keys_pkey primary key (scope, key)
);
