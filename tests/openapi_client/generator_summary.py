"""Condense openapi-python-client's output: its pydantic validation errors grouped by message
and field (with a count and example locations), every other line once.

    python generator_summary.py GENERATE_OUTPUT.txt [--max-locations N]
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

# A pydantic error: "<location>\n  <message> [type=<type>, input_value=…, input_type=…]".
ERROR = re.compile(r"^  (?P<message>.*?) \[type=(?P<type>[^,\]]+)")
BOILERPLATE = ("For further information visit", "If you believe this was a mistake")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--max-locations", type=int, default=6)
    args = parser.parse_args()
    with open(args.output, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()

    groups: dict[tuple[str, str, str], list[str]] = collections.defaultdict(list)
    other: list[str] = []
    previous = ""
    for line in lines:
        match = ERROR.match(line)
        if match and previous and not previous.startswith(" "):
            location = previous
            field = location.rsplit(".", 1)[-1]
            groups[(match["message"], match["type"], field)].append(location)
            if other and other[-1] == location:
                other.pop()
        elif line.strip() and not line.strip().startswith(BOILERPLATE):
            if line not in other:
                other.append(line)
        previous = line

    for line in other:
        print(f"  {line}")
    for (message, kind, field), locations in sorted(groups.items(), key=lambda item: -len(item[1])):
        print(f"  [{len(locations)}x] {field}: {message} ({kind})")
        for location in locations[: args.max_locations]:
            print(f"      at {location}")
        if len(locations) > args.max_locations:
            print(f"      … and {len(locations) - args.max_locations} more")
    if not other and not groups:
        print("  (no warnings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
