#!/usr/bin/env bash
# The admin web in a real browser: Debian's Chromium (installed with apt when missing)
# driven by playwright-core (npm ci from tests/admin_web/package-lock.json; no browser
# download), against a debug app-server on SQLite that the test starts itself.
#
#   scripts/admin-web-test.sh                 run it; screenshots go to target/admin-web
#   SCREENSHOT_DIR=docs/admin-web scripts/admin-web-test.sh
#                                             refresh the README's screenshots
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'admin-web: %s\n' "$*" >&2; }

# Chromium, and a Korean font so the pages (and their screenshots) show Hangul.
if [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then
    say "installing Debian's chromium and fonts-noto-cjk"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y -q chromium fonts-noto-cjk >/dev/null 2>&1 || {
        "${sudo_cmd[@]}" apt-get update -q >/dev/null
        "${sudo_cmd[@]}" apt-get install -y -q chromium fonts-noto-cjk >/dev/null
    }
fi
command -v node >/dev/null || { say "node is missing (Debian: apt-get install nodejs npm)"; exit 1; }

(cd tests/admin_web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
cargo build --locked -q -p app-server

export HEXRIDE_BIN=${HEXRIDE_BIN:-target/debug/app-server}
export SCREENSHOT_DIR=${SCREENSHOT_DIR:-target/admin-web}
cd tests/admin_web
exec node --test --test-concurrency=1 --test-reporter=spec admin_web.test.mjs
