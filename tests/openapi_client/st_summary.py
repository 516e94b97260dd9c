"""Group the failures of one or more `st run` reports (NDJSON events) into a to-do list.

    python st_summary.py [--base-url URL] RUN_DIR...

Each RUN_DIR holds events.ndjson and is named after the role it ran as (rider, cx, admin,
withdraw-rider, …). Failures are grouped by check, then by operation, response status and
the problem code of the response body (`code` of application/problem+json), with the roles
and phases that hit them and how many test cases did. Each group gets one reproduction curl
in which the server is $HEXRIDE_URL and the bearer token $<ROLE>_TOKEN, as printed by
`scripts/openapi.sh serve`. Errors that are not check failures (timeouts, connection
errors, schema problems) are listed too.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import sys
from dataclasses import dataclass, field


@dataclass
class Group:
    check: str
    title: str
    operation: str
    status: str
    problem: str
    count: int = 0
    roles: set[str] = field(default_factory=set)
    phases: set[str] = field(default_factory=set)
    messages: collections.Counter = field(default_factory=collections.Counter)
    sample: tuple | None = None


def decode(content) -> bytes:
    if content is None:
        return b""
    if isinstance(content, dict) and "$base64" in content:
        return base64.b64decode(content["$base64"])
    if isinstance(content, dict) and "string" in content:
        return content["string"].encode()
    if isinstance(content, str):
        return content.encode()
    return json.dumps(content).encode()


def shell_quote(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    text = data.decode("utf-8", "replace")
    printable = all(32 <= byte < 127 for byte in data) or (
        "\ufffd" not in text and all(ch.isprintable() for ch in text)
    )
    if printable:
        return "'" + text.replace("'", "'\\''") + "'"
    out = []
    for byte in data:
        ch = chr(byte)
        if ch in "\\'":
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "$'" + "".join(out) + "'"


def token_variable(role: str) -> str:
    if role.startswith("withdraw-"):
        role = "spare-" + role[len("withdraw-"):]
    return re.sub(r"[^A-Z0-9]", "_", role.upper()) + "_TOKEN"


def curl(request: dict, role: str, base_url: str | None) -> str:
    uri = request.get("uri", "")
    if base_url and uri.startswith(base_url):
        uri_text = '"$HEXRIDE_URL"' + shell_quote(uri[len(base_url):])
    else:
        uri_text = shell_quote(uri)
    parts = ["curl -sS -i -X", request.get("method", "GET")]
    for name, values in (request.get("headers") or {}).items():
        if name.lower() in {"user-agent", "accept-encoding", "accept", "connection", "content-length"}:
            continue
        if name.lower().startswith("x-schemathesis"):
            continue
        for value in values if isinstance(values, list) else [values]:
            if name.lower() == "authorization" and (
                value == "[Filtered]" or re.fullmatch(r"Bearer eyJ[\w-]+\.[\w-]+\.[\w-]+", value)
            ):
                # The run's own token: a fresh `serve` prints the one to use instead.
                parts.append(f'-H "Authorization: Bearer ${token_variable(role)}"')
            elif value == "":
                # `-H 'Name:'` would make curl drop the header; `Name;` sends it empty.
                parts.append("-H " + shell_quote(f"{name};"))
            else:
                parts.append("-H " + shell_quote(f"{name}: {value}"))
    body = request.get("body")
    if body is not None:
        parts.append("--data-binary " + shell_quote(decode(body)))
    parts.append(uri_text)
    return " ".join(parts)


def problem_of(response: dict | None) -> tuple[str, str]:
    """The `code` and `detail` of a problem+json body, or a short description of the body."""
    if not response:
        return "-", ""
    body = decode(response.get("content"))
    try:
        data = json.loads(body)
    except ValueError:
        return ("(empty)" if not body else "(not JSON)"), body[:120].decode("utf-8", "replace")
    if isinstance(data, dict) and "code" in data:
        detail = str(data.get("detail", ""))
        if isinstance(data.get("errors"), dict) and data["errors"]:
            fields = "; ".join(f"{name}: {', '.join(map(str, why))}" for name, why in data["errors"].items())
            if fields not in detail:
                detail = f"{detail} ({fields})"
        return str(data["code"]), detail[:300]
    return "(2xx body)" if str(response.get("status_code", "")).startswith("2") else "(JSON)", ""


def one_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " | ".join(lines)[:220]


def scenarios(path: str):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            yield event


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url")
    parser.add_argument("--max-messages", type=int, default=3)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    base_url = args.base_url.rstrip("/") if args.base_url else None

    groups: dict[tuple, Group] = {}
    errors: collections.Counter = collections.Counter()
    per_role: dict[str, collections.Counter] = {}
    for run in args.runs:
        role = os.path.basename(run.rstrip("/"))
        counter = per_role.setdefault(role, collections.Counter())
        path = os.path.join(run, "events.ndjson")
        if not os.path.exists(path):
            errors[(role, "no events.ndjson (did st run start?)")] += 1
            continue
        for event in scenarios(path):
            (kind, data), = event.items()
            if kind in {"NonFatalError", "FatalError"}:
                info = data.get("info") or data.get("value") or {}
                label = data.get("label") or info.get("title") or kind
                message = info.get("message") or data.get("message") or json.dumps(data)[:200]
                errors[(role, f"{kind}: {label}: {one_line(str(message))}")] += 1
                continue
            if kind != "ScenarioFinished":
                continue
            counter["scenarios"] += 1
            recorder = data.get("recorder") or {}
            interactions = recorder.get("interactions") or {}
            for case_id, checks in (recorder.get("checks") or {}).items():
                counter["cases"] += 1
                interaction = interactions.get(case_id) or {}
                response = interaction.get("response")
                status = str(response["status_code"]) if response else "no response"
                problem, detail = problem_of(response)
                for check in checks:
                    if check.get("status") != "failure":
                        continue
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    code = failure.get("code", "")
                    operation = failure.get("operation") or recorder.get("label", "?")
                    key = (check["name"], operation, status, problem)
                    group = groups.get(key)
                    if group is None:
                        group = groups[key] = Group(
                            check=check["name"],
                            title=f"{code} {failure.get('title', '')}".strip(),
                            operation=operation,
                            status=status,
                            problem=problem,
                        )
                    group.count += 1
                    group.roles.add(role)
                    group.phases.add(data.get("phase", "?"))
                    group.messages[one_line(failure.get("message", ""))] += 1
                    if group.sample is None and interaction.get("request"):
                        group.sample = (role, interaction["request"], detail)
                    counter["failures"] += 1

    print("schemathesis summary")
    for role, counter in per_role.items():
        print(
            f"  {role:16} {counter['scenarios']:5} scenarios, {counter['cases']:6} test cases, "
            f"{counter['failures']:6} failed checks"
        )
    by_check: dict[str, list[Group]] = collections.defaultdict(list)
    for group in groups.values():
        by_check[group.title or group.check].append(group)
    print(f"\n{len(groups)} distinct failures (check × operation × status × problem code)")
    for title, items in sorted(by_check.items(), key=lambda item: item[0]):
        print(f"\n## {title} [{items[0].check}]: {len(items)} distinct, {sum(g.count for g in items)} test cases")
        for group in sorted(items, key=lambda g: (g.operation.split(" ", 1)[-1], g.operation, g.status)):
            print(
                f"- {group.operation} -> {group.status} {group.problem}  "
                f"[{','.join(sorted(group.roles))}; {','.join(sorted(group.phases))}; {group.count}x]"
            )
            for message, _ in group.messages.most_common(args.max_messages):
                if message:
                    print(f"    why: {message}")
            if group.sample:
                role, request, detail = group.sample
                if detail:
                    print(f"    detail: {detail}")
                print(f"    repro: {curl(request, role, base_url)}")
    if errors:
        print(f"\n## errors (not check failures): {len(errors)}")
        for (role, message), count in sorted(errors.items()):
            print(f"- [{role}] {count}x {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
