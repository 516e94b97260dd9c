#!/usr/bin/env bash
# Checks the deployment files under deploy/ with the tools that use them, installed from
# Debian's packages when missing (root):
#   - Prometheus alert rules: `promtool check rules`, then their unit tests
#     (`promtool test rules`: each alert fires on the series it should, and only then);
#   - the Grafana dashboard: valid JSON, every panel query valid PromQL (checked by promtool
#     as recording rules), every metric it or the alerts name one the code exports;
#   - the nginx site: `nginx -t` inside a minimal main configuration;
#   - the Dockerfile (hadolint; stages, user, entry point, ports read with BuildKit's parser),
#     the Compose file (the Compose Specification's JSON schema; its nginx site against
#     deploy/nginx/hexride.conf, and `nginx -t`; shellcheck on its scripts) and the Kubernetes
#     manifests (the API's JSON schemas, strict, for two versions; kustomize's output), then
#     scripts/lib/check_deploy_manifests.py: every APP__ setting they use is a key of
#     config/default.toml, and their ports, probes, roles, grace periods and references agree.
#     Offline: no Docker engine or cluster; the tools are pinned (scripts/requirements-deploy.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/infra-common.sh
. scripts/lib/infra-common.sh
log() { printf 'check-deploy: %s\n' "$*" >&2; }

command -v promtool >/dev/null || apt_install prometheus
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light || apt_install nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "alert rules"
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)

log "Grafana dashboard"
python3 - deploy/grafana/hexride.json "$work/dashboard_rules.yml" <<'EOF'
import json, sys
dashboard = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
assert exprs, "the dashboard has no queries"
ids = [p["id"] for p in dashboard["panels"]]
assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, expr in enumerate(exprs):
        # Grafana's variables, as Grafana would substitute them.
        expr = expr.replace("$__rate_interval", "1m").replace('"$instance"', '".*"')
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}\n")
print(f"{len(dashboard['panels'])} panels, {len(exprs)} queries")
EOF
promtool check rules "$work/dashboard_rules.yml" >/dev/null

log "every metric named exists in the code"
# Names in the queries: identifiers followed by `{`, `[` or `)`, or standing alone, that
# look like hexride's metrics; Prometheus' own (up) is skipped.
used=$(cat deploy/prometheus/alerts.yml deploy/grafana/hexride.json |
    grep -oE '\b[a-z]+(_[a-z0-9]+)+\b' |
    grep -E '_(total|seconds|backlog|dead|status|bucket)$|^outbox_' |
    sed -E 's/_bucket$//' | sort -u)
missing=0
for metric in $used; do
    if ! grep -rqE "(counter|gauge|histogram)!\(\s*\"$metric\"" --include=*.rs \
        app-server application adapters-* sql-store; then
        echo "  $metric is named in deploy/ but no code exports it" >&2
        missing=1
    fi
done
[ $missing -eq 0 ] || exit 1
echo "  $(echo "$used" | wc -w) metrics, all exported"

log "nginx site"
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
pid $work/nginx/nginx.pid;
error_log stderr warn;
events {}
http {
    include $PWD/deploy/nginx/hexride.conf;
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
}
EOF
"$NGINX" -t -q -c "$work/nginx/nginx.conf" -p "$work/nginx"
echo "  deploy/nginx/hexride.conf: accepted by $("$NGINX" -v 2>&1)"

# --- the image, the Compose stack and the Kubernetes manifests ------------------------------
# Offline, with no Docker engine and no cluster (none is used, or needed): the tools come from
# a venv with pinned versions (scripts/requirements-deploy.txt, target/py-venv-deploy), each
# shipping what it checks against, and run in a network namespace of their own when unshare
# can make one, so a tool that tried to fetch a schema would fail here rather than pass.
log "deployment tools (pinned in scripts/requirements-deploy.txt)"
# shellcheck source=lib/venv.sh
HEXRIDE_VENV_DIR=$PWD/target/py-venv-deploy HEXRIDE_REQUIREMENTS=$PWD/scripts/requirements-deploy.txt \
    source scripts/lib/venv.sh
venv_ensure
if unshare --net true 2>/dev/null; then
    offline() { unshare --net "$@"; }
    echo "  the checks below run without a network (unshare --net)"
else
    offline() { "$@"; }
fi
command -v shellcheck >/dev/null || apt_install shellcheck

log "Dockerfile: hadolint, then its stages, user, entry point, ports and .dockerignore"
offline hadolint --no-color Dockerfile # every finding fails (its default threshold)
echo "  hadolint $(hadolint --version | awk '{print $NF}'): no finding"
offline python3 scripts/lib/check_deploy_manifests.py dockerfile

log "Compose file: the Compose Specification's schema, then its references and settings"
offline check-jsonschema --builtin-schema vendor.compose-spec deploy/compose/compose.yaml | sed 's/^/  compose.yaml against the Compose Specification: /'
offline python3 scripts/lib/check_deploy_manifests.py compose
shellcheck deploy/compose/*.sh
echo "  deploy/compose/*.sh: shellcheck $(shellcheck --version | awk '/^version:/ {print $2}'), no finding"
# nginx resolves upstream names when it loads a configuration: the services' names become
# 127.0.0.1 for the test, and the log goes to the work directory.
mkdir -p "$work/nginx-compose"
sed -E -e 's/^(\s*server )[A-Za-z0-9_.-]+:/\1127.0.0.1:/' \
    -e "s#access_log /var/log/nginx/access.log#access_log $work/nginx-compose/access.log#" \
    deploy/compose/nginx.conf >"$work/nginx-compose/site.conf"
sed -e "s#$PWD/deploy/nginx/hexride.conf#$work/nginx-compose/site.conf#" -e "s#$work/nginx/#$work/nginx-compose/#g" \
    "$work/nginx/nginx.conf" >"$work/nginx-compose/nginx.conf"
"$NGINX" -t -q -c "$work/nginx-compose/nginx.conf" -p "$work/nginx-compose"
echo "  deploy/compose/nginx.conf: accepted by $("$NGINX" -v 2>&1)"

log "Kubernetes manifests: the API's schemas (strict: no unknown field), then references and settings"
mapfile -t manifests < <(python3 -c '
import sys, yaml
for r in yaml.safe_load(open("deploy/k8s/kustomization.yaml"))["resources"]:
    print(f"deploy/k8s/{r}")')
if command -v kubectl >/dev/null; then
    # What `kubectl apply -k` would send: kustomize's output is validated too.
    offline kubectl kustomize deploy/k8s >"$work/k8s-rendered.yaml"
    manifests+=("$work/k8s-rendered.yaml")
    echo "  kubectl kustomize deploy/k8s: $(grep -c '^kind:' "$work/k8s-rendered.yaml") resources"
else
    echo "  no kubectl here: kustomization.yaml is checked by the cross-checks only"
fi
# The oldest Kubernetes still in wide use and the newest kubernetes-validate knows. A kind it
# has no schema for is only a warning to it: here, a failure.
for version in 1.30.0 1.37.0; do
    if ! out=$(offline kubernetes-validate --strict -k "$version" "${manifests[@]}" 2>&1) ||
        grep -v '^INFO ' <<<"$out" | grep -q .; then
        grep -v '^INFO ' <<<"$out" >&2
        exit 1
    fi
    echo "  Kubernetes $version: $(grep -c '^INFO .* passed' <<<"$out") resources valid, the files' and kustomize's (kubernetes-validate $(kubernetes-validate --version | awk '{print $NF}'))"
done
offline python3 scripts/lib/check_deploy_manifests.py k8s
