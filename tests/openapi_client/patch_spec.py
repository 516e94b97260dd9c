"""Diagnostic only: a copy of the OpenAPI document with its known defects patched, so that the
client generator and drive.py can still be exercised while the server's document is being
fixed. scripts/openapi.sh uses it only with OPENAPI_CLIENT_PATCH=1, and still fails the
step when the real document was refused.

    python patch_spec.py IN.json OUT.json

Patches (each printed with its count):
  * a response without `description` gets the HTTP reason phrase (OpenAPI requires one);
  * an `in: path` parameter whose name is not in the path template becomes `in: query`
    (required unless its schema admits null).
"""

from __future__ import annotations

import http
import json
import re
import sys

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def main() -> int:
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as handle:
        document = json.load(handle)
    descriptions = moved = 0
    for path, item in document.get("paths", {}).items():
        template = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            for status, response in operation.get("responses", {}).items():
                if "$ref" not in response and "description" not in response:
                    try:
                        response["description"] = http.HTTPStatus(int(status)).phrase
                    except ValueError:
                        response["description"] = str(status)
                    descriptions += 1
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") not in template:
                    parameter["in"] = "query"
                    kinds = parameter.get("schema", {}).get("type")
                    nullable = isinstance(kinds, list) and "null" in kinds
                    parameter["required"] = not nullable
                    moved += 1
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    print(f"patch: added {descriptions} response description(s); moved {moved} parameter(s) from path to query")
    return 0


if __name__ == "__main__":
    sys.exit(main())
