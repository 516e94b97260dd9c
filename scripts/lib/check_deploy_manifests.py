"""Cross-checks of the deployment files, run by scripts/check-deploy.sh from its pinned venv
(PyYAML, and BuildKit's Dockerfile parser from the `dockerfile` package):

    python3 scripts/lib/check_deploy_manifests.py dockerfile|compose|k8s

The schema validators (hadolint, check-jsonschema's Compose schema, kubernetes-validate) say
whether each file is well formed; these checks say whether the files agree with each other and
with the code: every APP__SECTION__KEY names a key of config/default.toml with a value of its
type, the ports, probes, roles and grace periods match the server's settings, every
reference (depends_on, volumes, Secret keys, selectors, kustomization resources) points at
something that exists, and no secret is written in. Each problem is one line on stderr; the
exit status is 1 when there is any.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "config" / "default.toml").read_text())
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_DIR = ROOT / "deploy" / "compose"
K8S_DIR = ROOT / "deploy" / "k8s"

# The Secret the manifests read; its keys are documented in deploy/README.md.
SECRET_NAME = "hexride-secrets"
SECRET_KEYS = {"jwt-secret", "insurer-webhook-secret", "database-url", "replica-urls", "redis-url"}
# Settings that must never be written into a manifest, only referenced.
SECRET_SETTINGS = {"APP__AUTH__JWT_SECRET", "APP__INSURER__WEBHOOK_SECRET"}

problems: list[str] = []


def problem(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


# --- the configuration ---------------------------------------------------------------------


def app_key(name: str) -> tuple[str, str] | None:
    """APP__SECTION__KEY → (section, key), or None when it is not of that shape."""
    m = re.fullmatch(r"APP__([A-Z0-9_]+?)__([A-Z0-9_]+)", name)
    return (m.group(1).lower(), m.group(2).lower()) if m else None


def check_setting(where: str, name: str, value: object | None) -> None:
    """`name` is an APP__ key of config/default.toml and `value` (None: taken from a Secret or
    an interpolation) has the type of its default."""
    parsed = app_key(name)
    if parsed is None:
        problem(where, f"{name} is not an APP__SECTION__KEY setting")
        return
    section, key = parsed
    if section not in CONFIG or not isinstance(CONFIG[section], dict):
        problem(where, f"{name}: config/default.toml has no section [{section}]")
        return
    if key not in CONFIG[section]:
        problem(where, f"{name}: config/default.toml has no key {section}.{key}")
        return
    if value is None or (isinstance(value, str) and "${" in value):
        return
    default, text = CONFIG[section][key], str(value)
    if isinstance(default, bool):
        if text not in ("true", "false"):
            problem(where, f"{name}={text!r}: {section}.{key} is a boolean (true or false)")
    elif isinstance(default, int):
        if not re.fullmatch(r"\d+", text):
            problem(where, f"{name}={text!r}: {section}.{key} is a whole number")
        elif (key.endswith("_secs") or key.endswith("_ms")) and int(text) == 0 and default != 0:
            # config/default.toml: timeouts and intervals must be at least 1 (drain may be 0).
            if key not in ("drain_secs",):
                problem(where, f"{name}=0: {section}.{key} must be at least 1")
    elif isinstance(default, list) and key == "trusted_proxies":
        for entry in filter(None, (e.strip() for e in text.split(","))):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                problem(where, f"{name}: `{entry}` is not a network (CIDR) or address")
    if section == "server" and key == "role" and text not in ("all", "api", "worker"):
        problem(where, f"{name}={text!r}: server.role is all, api or worker")
    if section == "server" and key in ("listen", "admin_listen") and not re.fullmatch(r".+:\d+", text):
        problem(where, f"{name}={text!r}: not an address:port")


def setting(env: dict[str, object], section: str, key: str) -> object:
    """The value an instance with environment `env` runs with: env, else the image's ENV,
    else config/default.toml."""
    name = f"APP__{section.upper()}__{key.upper()}"
    if name in env and env[name] is not None:
        return env[name]
    image_env = dockerfile_env()
    if name in image_env:
        return image_env[name]
    return CONFIG[section][key]


def port_of(address: object) -> int | None:
    m = re.fullmatch(r".+:(\d+)", str(address))
    return int(m.group(1)) if m else None


def whole(value: object) -> int:
    """A whole-number setting; a malformed one (already reported by check_setting) counts as 0."""
    return int(value) if re.fullmatch(r"\d+", str(value)) else 0


# --- the Dockerfile ------------------------------------------------------------------------

_dockerfile_cache: list | None = None


def dockerfile_commands() -> list:
    global _dockerfile_cache
    if _dockerfile_cache is None:
        import dockerfile  # BuildKit's parser (Go), from the `dockerfile` package

        _dockerfile_cache = list(dockerfile.parse_file(str(DOCKERFILE)))
    return _dockerfile_cache


def dockerfile_stages() -> list[dict]:
    stages: list[dict] = []
    for c in dockerfile_commands():
        if c.cmd == "FROM":
            value = list(c.value)
            name = value[2] if len(value) >= 3 and value[1].upper() == "AS" else None
            stages.append({"image": value[0], "name": name, "commands": [], "line": c.start_line})
        elif stages:
            stages[-1]["commands"].append(c)
    return stages


def dockerfile_env() -> dict[str, str]:
    stages = dockerfile_stages()
    env: dict[str, str] = {}
    if stages:
        for c in stages[-1]["commands"]:
            if c.cmd == "ENV":
                values = list(c.value)
                env.update(zip(values[0::2], values[1::2]))
    return env


def image_uid() -> int | None:
    stages = dockerfile_stages()
    users = [c for c in stages[-1]["commands"] if c.cmd == "USER"] if stages else []
    if not users:
        return None
    user = users[-1].value[0].split(":")[0]
    return int(user) if user.isdigit() else None


def check_dockerfile() -> None:
    where = "Dockerfile"
    stages = dockerfile_stages()
    if len(stages) < 2:
        problem(where, f"{len(stages)} stage(s): the image is built in a builder stage and run from another")
        return
    builder, final = stages[0], stages[-1]
    m = re.fullmatch(r"rust:(\d+)\.(\d+)(?:\.\d+)?-bookworm", builder["image"])
    if not m:
        problem(where, f"the builder stage is FROM {builder['image']}, not rust:<version>-bookworm")
    else:
        want = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
        have = (int(m.group(1)), int(m.group(2)))
        if have < tuple(int(p) for p in want.split(".")[:2]):
            problem(where, f"{builder['image']} is older than the workspace's rust-version {want}")
    if not builder["name"]:
        problem(where, "the builder stage has no name (FROM … AS builder) for COPY --from")
    if not final["image"].startswith("debian:bookworm-slim"):
        problem(where, f"the final stage is FROM {final['image']}, not debian:bookworm-slim")
    runs = " ".join(" ".join(c.value) for c in builder["commands"] if c.cmd == "RUN")
    if not re.search(r"cargo build --release --locked -p app-server\b", runs):
        problem(where, "the builder does not run `cargo build --release --locked -p app-server`")

    cmds = {}
    for c in final["commands"]:
        cmds.setdefault(c.cmd, []).append(c)
    copies = [c for c in cmds.get("COPY", []) if any(f.startswith("--from=") for f in c.flags)]
    if not any(f"--from={builder['name']}" in c.flags and c.value[-1] == "/usr/local/bin/app-server"
               for c in copies):
        problem(where, f"the final stage does not COPY --from={builder['name']} the binary to /usr/local/bin/app-server")
    uid = image_uid()
    if "USER" not in cmds:
        problem(where, "the final stage has no USER: the server would run as root")
    elif uid is None:
        problem(where, f"USER {cmds['USER'][-1].value[0]} is not numeric: Kubernetes' runAsNonRoot cannot verify a name")
    elif uid == 0:
        problem(where, "USER 0 is root")
    entry = cmds.get("ENTRYPOINT", [])
    if not entry or not entry[-1].json or list(entry[-1].value) != ["app-server"]:
        problem(where, 'the final stage\'s ENTRYPOINT is not ["app-server"] (exec form)')
    cmd = cmds.get("CMD", [])
    if not cmd or not cmd[-1].json or list(cmd[-1].value) != ["serve"]:
        problem(where, 'the final stage\'s CMD is not ["serve"] (exec form)')
    if [c.value[0] for c in cmds.get("STOPSIGNAL", [])] != ["SIGTERM"]:
        problem(where, "STOPSIGNAL is not SIGTERM (the server drains on SIGTERM)")
    env = dockerfile_env()
    for name, value in env.items():
        check_setting(where, name, value)
    exposed = {int(p.split("/")[0]) for c in cmds.get("EXPOSE", []) for p in c.value}
    for name in ("APP__SERVER__LISTEN", "APP__SERVER__ADMIN_LISTEN"):
        if name not in env:
            problem(where, f"no ENV {name}: the default listens on 127.0.0.1 only, unreachable from outside the container")
        elif not env[name].startswith("0.0.0.0:"):
            problem(where, f"ENV {name}={env[name]} does not listen on every interface")
        elif port_of(env[name]) not in exposed:
            problem(where, f"ENV {name}={env[name]}: port {port_of(env[name])} is not EXPOSEd ({sorted(exposed)})")
    health = cmds.get("HEALTHCHECK", [])
    if health and "APP__SERVER__ADMIN_LISTEN" not in " ".join(health[-1].value):
        problem(where, "the HEALTHCHECK does not take its port from APP__SERVER__ADMIN_LISTEN")
    check_dockerignore()
    print(f"  Dockerfile: {len(stages)} stages ({', '.join(s['image'] for s in stages)}), "
          f"user {uid}, entrypoint app-server, ports {sorted(exposed)}")


def check_dockerignore() -> None:
    where = ".dockerignore"
    path = ROOT / ".dockerignore"
    if not path.exists():
        problem(where, "missing: target/ and .git would be sent as the build context")
        return
    patterns = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern[1:] if negate else pattern
            pat = pat.strip("/")
            variants = {pat, pat[3:]} if pat.startswith("**/") else {pat}
            if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
                result = not negate
        return result

    for rel in ("target/release/app-server", ".git/HEAD", "tests/admin_web/node_modules/x"):
        if not excluded(rel):
            problem(where, f"{rel} is sent to the builder (exclude it)")
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    needed = ["Cargo.toml", "Cargo.lock", "config/default.toml"]
    # What a build reads: the members' sources, not what tools installed beside them
    # (node_modules of the browser test, build output).
    def sources(member: str, pattern: str) -> list[str]:
        return [str(p.relative_to(ROOT)) for p in (ROOT / member).rglob(pattern)
                if not {"target", "node_modules"} & set(p.relative_to(ROOT).parts)]

    for member in workspace:
        needed.append(f"{member}/Cargo.toml")
        needed += sources(member, "*.rs")[:50]
        needed += [str(p.relative_to(ROOT)) for p in (ROOT / member).glob("migrations/*")]
        needed += sources(member, "assets/*")
    for rel in needed:
        if excluded(rel):
            problem(where, f"{rel} is needed by `cargo build -p app-server` but excluded")


# --- Compose -------------------------------------------------------------------------------


def duration_secs(text: str) -> float:
    total, rest = 0.0, str(text)
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", rest):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    return total


def env_dict(env: object) -> dict[str, object]:
    if env is None:
        return {}
    if isinstance(env, list):
        return dict((e.split("=", 1) + [None])[:2] for e in env)
    return {k: (None if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}


def check_compose() -> None:
    path = COMPOSE_DIR / "compose.yaml"
    where = "deploy/compose/compose.yaml"
    doc = yaml.safe_load(path.read_text())
    services: dict = doc.get("services", {})
    volumes = set((doc.get("volumes") or {}).keys())
    networks = doc.get("networks") or {}
    image_has_healthcheck = any(c.cmd == "HEALTHCHECK" for c in dockerfile_stages()[-1]["commands"])

    def is_app(svc: dict) -> bool:
        build = svc.get("build") or {}
        context = build if isinstance(build, str) else build.get("context", "")
        return bool(context) and (COMPOSE_DIR / context).resolve() == ROOT

    # Every ${VAR} naming a secret or password must be required (${VAR:?message}).
    for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", path.read_text()):
        name, rest = m.groups()
        if re.search(r"SECRET|PASSWORD|TOKEN|KEY", name) and not rest.startswith(":?"):
            problem(where, f"${{{name}{rest}}}: a secret must be required, ${{{name}:?…}}, never defaulted")

    subnets = []
    for net_name, net in networks.items():
        for conf in ((net or {}).get("ipam") or {}).get("config") or []:
            if "subnet" in conf:
                subnets.append(ipaddress.ip_network(conf["subnet"]))
    if not subnets:
        problem(where, "no network with a fixed subnet (ipam.config.subnet) for server.trusted_proxies")

    roles: dict[str, str] = {}
    for name, svc in services.items():
        w = f"{where}: {name}"
        image = str(svc.get("image", ""))
        if not is_app(svc) and (":" not in image or image.endswith(":latest")):
            problem(w, f"image {image!r} is not pinned to a version tag")
        env = env_dict(svc.get("environment"))
        for key, value in env.items():
            if re.search(r"SECRET|PASSWORD", key) and (value is None or "${" not in value):
                problem(w, f"{key} has a literal value: take it from ${{VAR:?…}}")
        # depends_on: the target exists and can satisfy the condition.
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for target, spec in deps.items():
            condition = (spec or {}).get("condition", "service_started")
            if target not in services:
                problem(w, f"depends_on {target}, which is not a service")
                continue
            t = services[target]
            hc = t.get("healthcheck") or {}
            has_hc = not hc.get("disable") and (bool(hc.get("test")) or (is_app(t) and image_has_healthcheck))
            if condition == "service_healthy" and not has_hc:
                problem(w, f"depends_on {target} being healthy, but {target} has no healthcheck")
            if condition == "service_completed_successfully" and t.get("restart") in ("always", "unless-stopped"):
                problem(w, f"depends_on {target} completing, but {target} restarts even after success ({t.get('restart')})")
        # Volumes: named ones are declared, bind-mounted files exist.
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith((".", "/")):
                if not (COMPOSE_DIR / source).exists():
                    problem(w, f"mounts {source}, which does not exist")
            elif source and source not in volumes:
                problem(w, f"uses volume {source}, which is not declared under volumes:")
        for net in svc.get("networks") or []:
            if net not in networks:
                problem(w, f"on network {net}, which is not declared under networks:")
        if not is_app(svc):
            continue

        # The app-server containers.
        for key, value in env.items():
            check_setting(w, key, value)
        for key in SECRET_SETTINGS & env.keys():
            if not re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", str(env[key])):
                problem(w, f"{key} must be exactly one required variable, ${{VAR:?…}}")
        command = svc.get("command")
        if command in (["migrate"], "migrate"):
            roles[name] = "migrate"
            for key in ("APP__DATABASE__URL", "APP__AUTH__JWT_SECRET"):
                if key not in env:
                    problem(w, f"the migration needs {key}")
            continue
        role = str(setting(env, "server", "role"))
        roles[name] = role
        if str(setting(env, "database", "migrate_on_start")) != "false":
            problem(w, "serves with database.migrate_on_start = true: the migrate service migrates")
        migrates = [t for t, s in deps.items() if services.get(t, {}).get("command") in (["migrate"], "migrate")]
        if not migrates or (deps[migrates[0]] or {}).get("condition") != "service_completed_successfully":
            problem(w, "does not wait for the migrate service (condition: service_completed_successfully)")
        for target in ("postgres-primary", "redis", "kafka"):
            if target in services and (deps.get(target) or {}).get("condition") != "service_healthy":
                problem(w, f"does not wait for {target} to be healthy")
        proxies = [ipaddress.ip_network(e.strip(), strict=False)
                   for e in str(setting(env, "server", "trusted_proxies") or "").strip("[]").split(",") if e.strip()]
        if subnets and sorted(proxies) != sorted(subnets):
            problem(w, f"server.trusted_proxies {[str(p) for p in proxies]} is not the network's subnet {[str(s) for s in subnets]}")
        drain = whole(setting(env, "server", "drain_secs")) if role != "worker" else 0
        grace = whole(setting(env, "server", "shutdown_grace_secs"))
        stop = duration_secs(svc.get("stop_grace_period", "10s"))
        if stop <= drain + grace:
            problem(w, f"stop_grace_period {stop:g}s is not above drain ({drain}s) + shutdown grace ({grace}s)")
        if name.startswith("api") and role != "api":
            problem(w, f"runs server.role = {role}, not api")
        if name.startswith("worker") and role != "worker":
            problem(w, f"runs server.role = {role}, not worker")
        if role == "api" and drain <= 2:
            problem(w, f"server.drain_secs {drain} is not above nginx's upstream keepalive_timeout (2 s)")

    for role in ("api", "worker", "migrate"):
        if role not in roles.values():
            problem(where, f"no app-server service with role {role}")
    for needed in ("nginx", "postgres-primary", "postgres-replica", "redis", "kafka"):
        if needed not in services:
            problem(where, f"no {needed} service")
        elif needed != "nginx" and not (services[needed].get("healthcheck") or {}).get("test"):
            problem(where, f"{needed} has no healthcheck")

    # nginx: its upstream servers are the API services on their listen port.
    conf = COMPOSE_DIR / "nginx.conf"
    upstreams = re.findall(r"^\s*server\s+([\w.-]+):(\d+)\b", conf.read_text(), re.M)
    api_services = sorted(n for n, r in roles.items() if r == "api")
    if sorted(h for h, _ in upstreams) != api_services:
        problem("deploy/compose/nginx.conf", f"upstream servers {[h for h, _ in upstreams]} are not the API services {api_services}")
    for host, port in upstreams:
        if host in services:
            listen = setting(env_dict(services[host].get("environment")), "server", "listen")
            if int(port) != port_of(listen):
                problem("deploy/compose/nginx.conf", f"{host}:{port}, but {host} listens on {listen}")
    check_nginx_policy()
    print(f"  compose.yaml: {len(services)} services ({', '.join(f'{n}={r}' for n, r in roles.items())}), "
          f"depends_on, volumes, secrets, trusted proxies and grace periods consistent")


def nginx_policy(text: str, allowed_extra: bool) -> list[str]:
    """The directives of an nginx site, without comments, addresses (upstream `server`
    lines, `listen`) and, for the Compose copy, its access_log."""
    lines = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if re.match(r"server\s+\S+:\d+\b", line):
            line = "server <address>"
        elif line.startswith("listen "):
            line = "listen <address>"
        elif allowed_extra and line.startswith("access_log "):
            continue
        lines.append(line)
    # Several upstream servers count as one.
    out: list[str] = []
    for line in lines:
        if not (line == "server <address>" and out and out[-1] == line):
            out.append(line)
    return out


def check_nginx_policy() -> None:
    import difflib

    shipped = nginx_policy((ROOT / "deploy" / "nginx" / "hexride.conf").read_text(), False)
    compose = nginx_policy((COMPOSE_DIR / "nginx.conf").read_text(), True)
    if shipped != compose:
        diff = "\n    ".join(difflib.unified_diff(shipped, compose, "deploy/nginx/hexride.conf", "deploy/compose/nginx.conf", lineterm="", n=1))
        problem("deploy/compose/nginx.conf", f"its policy differs from deploy/nginx/hexride.conf beyond addresses:\n    {diff}")


# --- Kubernetes ----------------------------------------------------------------------------


def check_k8s() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    listed = kustomization.get("resources") or []
    for rel in listed:
        if not (K8S_DIR / rel).exists():
            problem("deploy/k8s/kustomization.yaml", f"lists {rel}, which does not exist")
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        if path.name != "kustomization.yaml" and path.name not in listed:
            problem("deploy/k8s/kustomization.yaml", f"does not list {path.name}")

    docs: list[tuple[str, dict]] = []
    for rel in listed:
        if (K8S_DIR / rel).exists():
            docs += [(f"deploy/k8s/{rel}", d) for d in yaml.safe_load_all((K8S_DIR / rel).read_text()) if d]
    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for where, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((where, d))

    configmaps = {d["metadata"]["name"]: d.get("data") or {} for _, d in by_kind.get("ConfigMap", [])}
    for where, d in by_kind.get("ConfigMap", []):
        for key, value in (d.get("data") or {}).items():
            if key in SECRET_SETTINGS or re.search(r"SECRET|PASSWORD", key):
                problem(where, f"{key} is a secret: it belongs in the Secret {SECRET_NAME}")
            check_setting(where, key, value)

    image_names = {i["name"] for i in kustomization.get("images") or []}
    uid = image_uid()
    workloads = by_kind.get("Deployment", []) + by_kind.get("Job", [])
    pod_labels: dict[str, dict] = {}
    for where, d in workloads:
        name = d["metadata"]["name"]
        w = f"{where}: {d['kind']} {name}"
        spec = d["spec"]["template"]["spec"]
        pod_labels[name] = d["spec"]["template"]["metadata"].get("labels") or {}
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            problem(w, "the pod does not set runAsNonRoot: true")
        if uid is not None and psc.get("runAsUser") not in (None, uid):
            problem(w, f"runAsUser {psc.get('runAsUser')} is not the image's USER {uid}")
        for c in spec.get("containers", []):
            cw = f"{w} container {c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(cw, "readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(cw, "allowPrivilegeEscalation is not false")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problem(cw, "does not drop ALL capabilities")
            res = c.get("resources") or {}
            if not (res.get("requests") and res.get("limits")):
                problem(cw, "has no resource requests and limits")
            if c.get("image", "").split(":")[0] not in image_names:
                problem(cw, f"image {c.get('image')} is not among kustomization.yaml's images {sorted(image_names)}")
            # The environment it runs with: the ConfigMaps it takes, then its own env.
            env: dict[str, object] = {}
            for ref in c.get("envFrom") or []:
                cm = (ref.get("configMapRef") or {}).get("name")
                if cm is not None and cm not in configmaps:
                    problem(cw, f"envFrom ConfigMap {cm}, which is not defined here")
                env.update(configmaps.get(cm, {}))
                if "secretRef" in ref:
                    problem(cw, "envFrom a Secret: name each key with secretKeyRef instead")
            for e in c.get("env") or []:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    if ref.get("name") != SECRET_NAME:
                        problem(cw, f"{e['name']} from Secret {ref.get('name')}, not {SECRET_NAME}")
                    if ref.get("key") not in SECRET_KEYS:
                        problem(cw, f"{e['name']} from key {ref.get('key')!r}, not one of {sorted(SECRET_KEYS)}")
                    check_setting(cw, e["name"], None)
                    env[e["name"]] = None
                else:
                    if e["name"] in SECRET_SETTINGS or re.search(r"SECRET|PASSWORD", e["name"]):
                        problem(cw, f"{e['name']} has a literal value: take it from the Secret {SECRET_NAME}")
                    check_setting(cw, e["name"], e.get("value"))
                    env[e["name"]] = e.get("value")
            check_workload(cw, d, spec, c, env)
    for kind in ("Deployment", "Job"):
        if kind not in by_kind:
            problem("deploy/k8s", f"no {kind}")

    # Selectors: the Service and the budgets select pods that exist.
    def selects(selector: dict) -> list[str]:
        return [n for n, labels in pod_labels.items() if all(labels.get(k) == v for k, v in selector.items())]

    for where, d in by_kind.get("Service", []):
        chosen = selects(d["spec"].get("selector") or {})
        if chosen != ["hexride-api"]:
            problem(where, f"the Service selects {chosen}, not the API pods only")
        api = next((x for _, x in workloads if x["metadata"]["name"] == "hexride-api"), None)
        ports = {p.get("name") for c in api["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])} if api else set()
        for p in d["spec"].get("ports", []):
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                problem(where, f"targetPort {p['targetPort']} is not a port of the API pods ({sorted(ports)})")
            if p.get("targetPort") == "admin":
                problem(where, "the Service exposes the admin listener")
    for where, d in by_kind.get("PodDisruptionBudget", []):
        if not selects((d["spec"].get("selector") or {}).get("matchLabels") or {}):
            problem(where, f"{d['metadata']['name']} selects no pods")
    if not any(selects((d["spec"].get("selector") or {}).get("matchLabels") or {}) == ["hexride-api"]
               and d["spec"].get("minAvailable") == 1 for _, d in by_kind.get("PodDisruptionBudget", [])):
        problem("deploy/k8s/pdb.yaml", "no PodDisruptionBudget keeps minAvailable: 1 of the API pods")
    print(f"  deploy/k8s: {len(docs)} resources ({', '.join(sorted(f'{k}' for k in by_kind))}), "
          f"every setting in config/default.toml, every reference resolved")


def check_workload(w: str, d: dict, spec: dict, c: dict, env: dict) -> None:
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    args = c.get("args") or c.get("command") or []
    if d["kind"] == "Job":
        if args != ["migrate"]:
            problem(w, f"runs {args}, not [migrate]")
        if spec.get("restartPolicy") not in ("Never", "OnFailure"):
            problem(w, "a Job's pods must not restart Always")
        for key in ("APP__DATABASE__URL", "APP__AUTH__JWT_SECRET"):
            if key not in env:
                problem(w, f"the migration needs {key}")
        return
    if args != ["serve"]:
        problem(w, f"runs {args}, not [serve]")
    role = str(setting(env, "server", "role"))
    expected = "api" if d["metadata"]["name"].endswith("-api") else "worker"
    if role != expected:
        problem(w, f"runs server.role = {role}, not {expected}")
    if str(setting(env, "database", "migrate_on_start")) != "false":
        problem(w, "serves with database.migrate_on_start = true: the hexride-migrate Job migrates")
    admin_port = port_of(setting(env, "server", "admin_listen"))
    if ports.get("admin") != admin_port:
        problem(w, f"port admin is {ports.get('admin')}, but the admin listener is on {admin_port}")
    annotations = d["spec"]["template"]["metadata"].get("annotations") or {}
    if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(admin_port) \
            or annotations.get("prometheus.io/path") != "/metrics":
        problem(w, f"the prometheus.io annotations do not point at /metrics on the admin port {admin_port}")
    drain = whole(setting(env, "server", "drain_secs"))
    grace = whole(setting(env, "server", "shutdown_grace_secs"))
    period = spec.get("terminationGracePeriodSeconds", 30)
    probe_port = "http" if role == "api" else "admin"
    if role == "api":
        listen = port_of(setting(env, "server", "listen"))
        if ports.get("http") != listen:
            problem(w, f"port http is {ports.get('http')}, but the server listens on {listen}")
        if period < drain + grace + 5:
            problem(w, f"terminationGracePeriodSeconds {period} is not drain ({drain}) + grace ({grace}) + 5 s or more")
    elif period < grace + 10:
        problem(w, f"terminationGracePeriodSeconds {period} is not shutdown grace ({grace}) + 10 s or more")
    if "http" in ports and role != "api":
        problem(w, "a worker has no public listener: no http port")
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live"),
                        ("startupProbe", "/health/live")):
        get = (c.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path or get.get("port") not in (probe_port, ports.get(probe_port)):
            problem(w, f"{probe} is not httpGet {path} on port {probe_port}")
    ready = c.get("readinessProbe") or {}
    if role == "api":
        if ready.get("periodSeconds") != 2 or ready.get("failureThreshold") != 1:
            problem(w, "the readiness probe is not periodSeconds 2, failureThreshold 1")
        # The pod must be found unready well within the drain.
        if ready.get("periodSeconds", 10) * ready.get("failureThreshold", 3) >= drain:
            problem(w, f"readiness takes {ready.get('periodSeconds', 10) * ready.get('failureThreshold', 3)} s to fail, not less than the drain ({drain} s)")
        pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
        if pre_stop:
            sleep = int(pre_stop[-1]) if pre_stop[0] in ("sleep", "/bin/sleep") else 0
            if period < sleep + drain + grace + 5:
                problem(w, f"terminationGracePeriodSeconds {period} does not cover the preStop sleep {sleep} + drain + grace")


def main() -> int:
    what = sys.argv[1:] or ["dockerfile", "compose", "k8s"]
    for w in what:
        {"dockerfile": check_dockerfile, "compose": check_compose, "k8s": check_k8s}[w]()
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
