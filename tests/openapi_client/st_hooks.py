"""Schemathesis hooks for scripts/openapi.sh (loaded through SCHEMATHESIS_HOOKS).

An Idempotency-Key is the client's promise that two requests are one: the server answers
the same key with another body or path with 422 `idempotency.key_mismatch`, as it must
(draft-ietf-httpapi-idempotency-key-header). A fuzzer reuses short keys such as "0" across
unrelated requests, which would make every later request with that key a mismatch. So each
request's valid key is made unique here (it stays 1-255 visible ASCII characters); keys
the schema refuses are left as generated, so their rejection is still tested. Replays with
one key are covered by the API test suite (tests/tests/api/idempotency.rs).
"""

import itertools
import re

import schemathesis

VALID_KEY = re.compile(r"^[!-~]{1,255}$")
SERIAL = itertools.count()


@schemathesis.hook
def map_headers(ctx, headers):
    """Runs on generated headers only, before the run adds its own (Authorization)."""
    if not headers:
        return headers
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        key = headers[name]
        if isinstance(key, str) and VALID_KEY.match(key):
            suffix = f".{next(SERIAL)}"
            headers[name] = key[: 255 - len(suffix)] + suffix
    return headers
