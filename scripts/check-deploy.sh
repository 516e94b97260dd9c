#!/usr/bin/env bash
# Checks the deployment files under deploy/ with the tools that use them, installed from
# Debian's packages when missing (root):
#   - Prometheus alert rules: `promtool check rules`, then their unit tests
#     (`promtool test rules`: each alert fires on the series it should, and only then);
#   - the Grafana dashboard: valid JSON, every panel query valid PromQL (checked by promtool
#     as recording rules), every metric it or the alerts name one the code exports;
#   - the nginx site: `nginx -t` inside a minimal main configuration.
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
