"""Drives hexride through a client generated from its own /openapi.json (openapi-python-client),
using only the generated API functions, never raw HTTP: sign up a rider, log in, create a
product as admin, charge points, place an order, pay it with an Idempotency-Key (twice: the
second is a replay), and read everything back, asserting statuses and values at each step.

    PYTHONPATH=<dir holding the generated package> \
    HEXRIDE_URL=http://127.0.0.1:PORT HEXRIDE_ADMIN_TOKEN=... python drive.py

scripts/openapi.sh client runs it. Environment:
  HEXRIDE_URL            the server's base URL
  HEXRIDE_ADMIN_TOKEN    an admin's access token
  HEXRIDE_CLIENT_PACKAGE the generated package's name (default: hexride_client)
Exit status 0 when every step passed; on the first failed step it prints what was expected
and what came back, and exits 1.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import uuid
from http import HTTPStatus

PACKAGE = os.environ.get("HEXRIDE_CLIENT_PACKAGE", "hexride_client")


def load(module: str):
    return importlib.import_module(f"{PACKAGE}.{module}")


client_module = load("client")
models = load("models")
members_sign_up = load("api.members.sign_up")
members_me = load("api.members.me")
auth_login = load("api.auth.login")
admin_create_product = load("api.admin.create_product")
products_get = load("api.products.get_product")
points_charge = load("api.points.charge")
points_balance = load("api.points.balance")
points_history = load("api.points.history")
orders_place = load("api.orders.place_order")
orders_pay = load("api.orders.pay")
orders_get = load("api.orders.get_order")
orders_mine = load("api.orders.my_orders")


class StepFailed(Exception):
    pass


STEP = {"n": 0, "name": ""}


def step(name: str) -> None:
    STEP["n"] += 1
    STEP["name"] = name
    print(f"  [{STEP['n']:2}] {name}", flush=True)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise StepFailed(what)


def expect(response, status: int, model):
    """The parsed body of `response`, after checking its status and body type."""
    if response.status_code != status:
        raise StepFailed(
            f"expected HTTP {status}, got {int(response.status_code)}: "
            f"{response.content[:500].decode('utf-8', 'replace')}"
        )
    parsed = response.parsed
    if model is not None and not isinstance(parsed, model):
        raise StepFailed(
            f"expected a {model.__name__} body, got {type(parsed).__name__}: "
            f"{response.content[:500].decode('utf-8', 'replace')}"
        )
    return parsed


def equal(actual, wanted, what: str) -> None:
    check(actual == wanted, f"{what}: expected {wanted!r}, got {actual!r}")


def run(base_url: str, admin_token: str) -> None:
    public = client_module.Client(base_url=base_url, raise_on_unexpected_status=True, timeout=30.0)
    admin = client_module.AuthenticatedClient(
        base_url=base_url, token=admin_token, raise_on_unexpected_status=True, timeout=30.0
    )
    suffix = uuid.uuid4().hex[:12]
    email = f"drive-{suffix}@example.com"
    password = f"drive-pass-{suffix}"

    step("sign up a rider (POST /api/v1/members)")
    member = expect(
        members_sign_up.sync_detailed(
            client=public,
            body=models.SignUpBody(email=email, password=password, name="Drive Rider", phone="01012345678"),
        ),
        HTTPStatus.CREATED,
        models.MemberBody,
    )
    equal(member.email, email, "member.email")
    equal(member.role, "rider", "member.role")
    equal(member.status, "active", "member.status")

    step("log in (POST /api/v1/auth/login)")
    tokens = expect(
        auth_login.sync_detailed(client=public, body=models.LoginBody(email=email, password=password)),
        HTTPStatus.OK,
        models.TokenBody,
    )
    equal(tokens.token_type, "Bearer", "token.token_type")
    check(tokens.expires_in > 0, f"token.expires_in should be positive, got {tokens.expires_in}")
    check(bool(tokens.refresh_token), "token.refresh_token is empty")
    rider = client_module.AuthenticatedClient(
        base_url=base_url, token=tokens.access_token, raise_on_unexpected_status=True, timeout=30.0
    )

    step("read the profile (GET /api/v1/members/me)")
    me = expect(members_me.sync_detailed(client=rider), HTTPStatus.OK, models.MemberBody)
    equal(me.id, member.id, "me.id")
    equal(me.email, email, "me.email")

    step("admin creates a product (POST /api/v1/admin/products)")
    price, stock, quantity = 1200, 5, 2
    product = expect(
        admin_create_product.sync_detailed(
            client=admin, body=models.NewProductBody(name=f"Helmet {suffix}", price=price, stock=stock)
        ),
        HTTPStatus.CREATED,
        models.ProductBody,
    )
    equal(product.price, price, "product.price")
    equal(product.stock, stock, "product.stock")

    step("read the product (GET /api/v1/products/{id})")
    fetched = expect(products_get.sync_detailed(product.id, client=public), HTTPStatus.OK, models.ProductBody)
    equal(fetched.id, product.id, "product.id")
    equal(fetched.name, product.name, "product.name")

    step("charge points (POST /api/v1/points/charge)")
    charged = 5000
    wallet = expect(
        points_charge.sync_detailed(client=rider, body=models.ChargeBody(amount=charged)),
        HTTPStatus.OK,
        models.WalletBody,
    )
    equal(wallet.balance, charged, "wallet.balance after charge")

    step("place an order (POST /api/v1/orders)")
    order = expect(
        orders_place.sync_detailed(
            client=rider,
            body=models.NewOrderBody(items=[models.OrderItemBody(product_id=product.id, quantity=quantity)]),
        ),
        HTTPStatus.CREATED,
        models.OrderBody,
    )
    total = price * quantity
    equal(order.status, "pending", "order.status")
    equal(order.subtotal, total, "order.subtotal")
    equal(order.discount, 0, "order.discount")
    equal(order.total, total, "order.total")
    equal(len(order.items), 1, "number of order lines")
    line = order.items[0]
    equal(line.product_id, product.id, "line.product_id")
    equal(line.quantity, quantity, "line.quantity")
    equal(line.unit_price, price, "line.unit_price")
    equal(line.line_total, total, "line.line_total")

    step("pay it (POST /api/v1/orders/{id}/payment, Idempotency-Key)")
    key = f"drive-{uuid.uuid4()}"
    payment = expect(
        orders_pay.sync_detailed(order.id, client=rider, idempotency_key=key), HTTPStatus.OK, models.PaymentBody
    )
    equal(payment.order_id, order.id, "payment.order_id")
    equal(payment.amount, total, "payment.amount")
    equal(payment.status, "succeeded", "payment.status")

    step("pay again with the same key: the first response is replayed")
    replay = expect(
        orders_pay.sync_detailed(order.id, client=rider, idempotency_key=key), HTTPStatus.OK, models.PaymentBody
    )
    equal(replay.id, payment.id, "replayed payment.id")
    equal(replay.amount, total, "replayed payment.amount")

    step("read the order back (GET /api/v1/orders/{id})")
    paid = expect(orders_get.sync_detailed(order.id, client=rider), HTTPStatus.OK, models.OrderBody)
    equal(paid.id, order.id, "order.id")
    equal(paid.status, "paid", "order.status after payment")
    equal(paid.total, total, "order.total after payment")

    step("the order is listed (GET /api/v1/orders)")
    mine = expect(orders_mine.sync_detailed(client=rider), HTTPStatus.OK, models.PagedOrderBody)
    check(any(item.id == order.id for item in mine.items), "the paid order is not in my_orders")
    equal(mine.next_, None, "one page of orders: no next cursor")

    step("the balance is charged minus paid (GET /api/v1/points)")
    wallet = expect(points_balance.sync_detailed(client=rider), HTTPStatus.OK, models.WalletBody)
    equal(wallet.balance, charged - total, "wallet.balance after payment")

    step("the ledger has the charge and the payment (GET /api/v1/points/history)")
    ledger = expect(points_history.sync_detailed(client=rider), HTTPStatus.OK, models.PagedLedgerBody)
    kinds = [entry.kind for entry in ledger.items]
    check("charge" in kinds and "payment" in kinds, f"ledger kinds: {kinds}")
    equal(ledger.items[0].balance_after, charged - total, "newest ledger entry's balance_after")

    step("the product's stock went down (GET /api/v1/products/{id})")
    # Product reads are cached (cache.product_ttl_secs): allow the cache to catch up.
    deadline = time.monotonic() + 15
    while True:
        fetched = expect(products_get.sync_detailed(product.id, client=public), HTTPStatus.OK, models.ProductBody)
        if fetched.stock == stock - quantity or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    equal(fetched.stock, stock - quantity, "product.stock after the order")


def main() -> int:
    base_url = os.environ["HEXRIDE_URL"]
    admin_token = os.environ["HEXRIDE_ADMIN_TOKEN"]
    print(f"drive: {PACKAGE} against {base_url}")
    try:
        run(base_url, admin_token)
    except StepFailed as failure:
        print(f"drive: FAILED at step {STEP['n']} ({STEP['name']}): {failure}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - report any client or parsing error as a failure
        print(
            f"drive: FAILED at step {STEP['n']} ({STEP['name']}): {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 1
    print(f"drive: all {STEP['n']} steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
