"""Validate an OpenAPI document with openapi-spec-validator and print the errors compactly.

    python validate_spec.py URL_OR_FILE [--max-groups N] [--max-paths N]

The validator is chosen from the document's `openapi` field (3.1 → OpenAPIV31SpecValidator).
Errors are grouped by message, with the message's quoted names and numbers folded into `…`
so that "Path parameter 'a' …" and "Path parameter 'b' …" form one group: for each group
the count, the distinct messages (up to --max-paths) and example JSON paths. Exit status:
0 valid, 1 invalid, 2 the document could not be read.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import urllib.request

from openapi_spec_validator import (
    OpenAPIV30SpecValidator,
    OpenAPIV31SpecValidator,
    OpenAPIV32SpecValidator,
)

VALIDATORS = {
    "3.0": OpenAPIV30SpecValidator,
    "3.1": OpenAPIV31SpecValidator,
    "3.2": OpenAPIV32SpecValidator,
}


def load(location: str) -> dict:
    if re.match(r"^https?://", location):
        with urllib.request.urlopen(location, timeout=30) as response:
            return json.load(response)
    with open(location, encoding="utf-8") as handle:
        return json.load(handle)


def json_path(error) -> str:
    """The error's location in the document, as a JSONPath."""
    path = getattr(error, "json_path", None)
    if path and path != "$":
        return path
    # Keyword errors (unresolved parameters, bad defaults, …) carry no path: use their message.
    match = re.search(r"for '(\w+)' operation in '([^']+)'", str(error))
    if match:
        return f"$.paths['{match.group(2)}'].{match.group(1)}"
    return "$"


def shape(message: str) -> str:
    folded = re.sub(r"'[^']*'", "'…'", message)
    return re.sub(r"\b\d+\b", "…", folded)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("location")
    parser.add_argument("--max-groups", type=int, default=20)
    parser.add_argument("--max-paths", type=int, default=5)
    args = parser.parse_args()

    try:
        document = load(args.location)
    except Exception as error:  # noqa: BLE001 - any failure to read is reported the same way
        print(f"validate: cannot read {args.location}: {error}", file=sys.stderr)
        return 2
    version = str(document.get("openapi", ""))
    validator_class = VALIDATORS.get(version[:3])
    if validator_class is None:
        print(f"validate: unsupported or missing `openapi` version {version!r}", file=sys.stderr)
        return 1

    groups: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    kinds: dict[str, str] = {}
    total = 0
    for error in validator_class(document).iter_errors():
        total += 1
        message = error.message.split("\n", 1)[0]
        key = shape(message)
        groups[key].append((message, json_path(error)))
        kinds.setdefault(key, type(error).__name__)

    if total == 0:
        print(f"validate: OpenAPI {version} document is valid ({len(document.get('paths', {}))} paths)")
        return 0

    print(f"validate: OpenAPI {version} document has {total} error(s) in {len(groups)} group(s)")
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    for key, items in ordered[: args.max_groups]:
        print(f"\n  [{len(items)}x] {key}   ({kinds[key]})")
        messages = list(dict.fromkeys(message for message, _ in items))
        if len(messages) > 1:
            for message in messages[: args.max_paths]:
                print(f"      - {message}")
            if len(messages) > args.max_paths:
                print(f"      - … {len(messages) - args.max_paths} more")
        paths = list(dict.fromkeys(path for _, path in items))
        for path in paths[: args.max_paths]:
            print(f"      at {path}")
        if len(paths) > args.max_paths:
            print(f"      … and {len(paths) - args.max_paths} more paths")
    if len(ordered) > args.max_groups:
        print(f"\n  … {len(ordered) - args.max_groups} more group(s)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
