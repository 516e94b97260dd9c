-- Catalogue, wallets, coupons, orders and payments. Money is integer KRW.
create table products (
    id text primary key not null,
    name text not null,
    price integer not null check (price > 0),
    stock integer not null check (stock >= 0),
    created_at integer not null,
    updated_at integer not null
);

create table wallets (
    member_id text primary key not null references members (id),
    balance integer not null default 0 check (balance >= 0),
    created_at integer not null,
    updated_at integer not null
);

-- Append-only: every wallet change with the balance after it.
create table wallet_ledger (
    id text primary key not null,
    member_id text not null references members (id),
    kind text not null,
    amount integer not null,
    balance_after integer not null,
    reference text,
    created_at integer not null
);

create index wallet_ledger_member_idx on wallet_ledger (member_id, created_at);

create table coupon_campaigns (
    id text primary key not null,
    name text not null,
    discount_kind text not null,
    discount_value integer not null,
    total_quantity integer not null,
    issued_count integer not null default 0,
    starts_at integer not null,
    ends_at integer,
    created_at integer not null,
    updated_at integer not null,
    check (issued_count between 0 and total_quantity)
);

create table coupons (
    id text primary key not null,
    campaign_id text not null references coupon_campaigns (id),
    member_id text not null references members (id),
    status text not null,
    discount_kind text not null,
    discount_value integer not null,
    order_id text,
    issued_at integer not null,
    expires_at integer not null,
    created_at integer not null,
    updated_at integer not null
);

-- One coupon per member per campaign.
create unique index coupons_campaign_member_key on coupons (campaign_id, member_id);
create index coupons_member_idx on coupons (member_id, issued_at);

create table orders (
    id text primary key not null,
    member_id text not null references members (id),
    status text not null,
    subtotal integer not null,
    discount integer not null,
    total integer not null check (total >= 0),
    coupon_id text references coupons (id),
    paid_at integer,
    cancelled_at integer,
    created_at integer not null,
    updated_at integer not null
);

create index orders_member_idx on orders (member_id, created_at);
create index orders_status_created_idx on orders (status, created_at);
create index orders_status_paid_idx on orders (status, paid_at);

-- The lines of an order, in the order they were placed (line_no).
create table order_items (
    order_id text not null references orders (id),
    line_no integer not null,
    product_id text not null references products (id),
    product_name text not null,
    unit_price integer not null,
    quantity integer not null,
    line_total integer not null,
    primary key (order_id, line_no)
);

create index order_items_product_idx on order_items (product_id);

create table payments (
    id text primary key not null,
    order_id text not null references orders (id),
    member_id text not null references members (id),
    amount integer not null,
    status text not null,
    created_at integer not null,
    updated_at integer not null
);

create unique index payments_order_key on payments (order_id);

-- Idempotency-Key reservations and the responses stored under them.
create table idempotency_keys (
    scope text not null,
    key text not null,
    fingerprint text not null,
    response text,
    created_at integer not null,
    primary key (scope, key)
);
