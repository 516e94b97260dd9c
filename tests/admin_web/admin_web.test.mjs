// The CX admin web in a real browser: Debian's Chromium driven by playwright-core, against a
// real app-server (embedded SQLite, in-process events) that this file starts and stops.
//
// Run by scripts/admin-web-test.sh (which builds the server and installs what this needs):
//   HEXRIDE_BIN     the server binary (default ../../target/debug/app-server)
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where the pages' screenshots go (default ../../target/admin-web)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const BIN = resolve(root, process.env.HEXRIDE_BIN ?? 'target/debug/app-server');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = resolve(root, process.env.SCREENSHOT_DIR ?? 'target/admin-web');

const PASSWORD = `web-${randomBytes(8).toString('hex')}`;
const ADMIN = 'admin@hexride.test';
const CX = 'cx@hexride.test';
const WEBHOOK_SECRET = randomBytes(32).toString('hex');
const HOUR = 3600 * 1000;
const MINUTE = 60 * 1000;
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

let server; // the app-server child process
let base; // http://127.0.0.1:<port>
let runDir;
let browser;
let serverLog = '';

/** A free TCP port on loopback. */
async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

function serverEnv(port, adminPort) {
  return {
    ...process.env,
    APP__SERVER__LISTEN: `127.0.0.1:${port}`,
    APP__SERVER__ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    APP__SERVER__ROLE: 'all',
    APP__SERVER__SHUTDOWN_GRACE_SECS: '5',
    APP__SERVER__DRAIN_SECS: '0',
    APP__DATABASE__URL: `sqlite://${join(runDir, 'hexride.db')}`,
    APP__KAFKA__BROKERS: '',
    APP__REDIS__URL: '',
    APP__DATA_PLATFORM__URL: '',
    APP__AUTH__JWT_SECRET: randomBytes(32).toString('hex'),
    APP__INSURER__WEBHOOK_SECRET: WEBHOOK_SECRET,
    APP__AUTH__ARGON2_MEMORY_KIB: '1024',
    APP__AUTH__ARGON2_ITERATIONS: '1',
    APP__LOG__FORMAT: 'json',
    APP__LOG__LEVEL: 'warn',
  };
}

/** One JSON API call; returns [status, body]. */
async function api(method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return [res.status, text ? JSON.parse(text) : null];
}

async function ok(expected, method, path, body, token) {
  const [status, json] = await api(method, path, body, token);
  assert.equal(status, expected, `${method} ${path}: ${JSON.stringify(json)}`);
  return json;
}

async function login(email) {
  return (await ok(200, 'POST', '/auth/login', { email, password: PASSWORD })).access_token;
}

/** Backdates a fixture's rows by what would otherwise take hours of real time. */
function sql(statements) {
  const script = `import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=10)\nc.executescript(sys.argv[2])\nc.commit()`;
  const run = spawnSync('python3', ['-c', script, join(runDir, 'hexride.db'), statements], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
}

const MICROS_PER_HOUR = 3600n * 1000000n;

/**
 * A rider with a policy on the plan who drove for two hours, ending an hour ago (the policy
 * covers the last three hours): 120 insured minutes at 6,000 KRW/hour.
 */
async function riderWhoDrove(email, phone, name, planId) {
  await ok(201, 'POST', '/members', { email, password: PASSWORD, name, phone });
  const token = await login(email);
  await ok(200, 'PUT', '/members/me/licence', { number: '11-22-333333-44', expires_on: '2035-05-31' }, token);
  const policy = await ok(201, 'POST', '/insurance/policies', { plan_id: planId }, token);
  const session = await ok(201, 'POST', '/driving/sessions', undefined, token);
  await ok(200, 'POST', `/driving/sessions/${session.id}/end`, undefined, token);
  const h = MICROS_PER_HOUR;
  sql(`update policies set coverage_start = coverage_start - ${3n * h + 60000000n}, created_at = created_at - ${3n * h + 60000000n} where id = '${policy.id}';
       update driving_sessions set started_at = started_at - ${3n * h}, ended_at = ended_at - ${h} where id = '${session.id}';`);
  return { token, policy };
}

/** A `datetime-local` value in Korea time for `ms` since the epoch, to the second. */
function kst(ms) {
  return new Date(ms + 9 * HOUR).toISOString().slice(0, 19);
}

async function newPage() {
  const context = await browser.newContext({ locale: 'ko-KR', viewport: { width: 1280, height: 900 } });
  return context.newPage();
}

async function staffLogin(page, email) {
  await page.goto(`${base}/admin/login`);
  await page.getByLabel('이메일').fill(email);
  await page.getByLabel('비밀번호').fill(PASSWORD);
  await page.getByRole('button', { name: '로그인' }).click();
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/**
 * axe-core's WCAG 2 A and AA rules on the page as it is: labels and accessible names,
 * contrast, landmarks, table headers, language. Playwright evaluates the script over the
 * DevTools protocol, which the page's CSP (no scripts at all) does not govern.
 */
async function assertAccessible(page, what) {
  await page.evaluate(AXE);
  const { violations } = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const found = violations.map((v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => n.target.join(' ')).join('\n    ')}`);
  assert.deepEqual(found, [], `${what} (${page.url()}) has accessibility violations`);
}

/** Presses Tab until the focused element matches `selector`. */
async function tabTo(page, selector, max = 80) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
  }
  throw new Error(`Tab never reached ${selector}`);
}

let planId;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  runDir = mkdtempSync(join(tmpdir(), 'hexride-web-'));
  const [port, adminPort] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${port}`;
  const env = serverEnv(port, adminPort);
  writeFileSync(join(runDir, 'password'), `${PASSWORD}\n`, { mode: 0o600 });
  for (const [role, email] of [['admin', ADMIN]]) {
    const made = spawnSync(BIN, ['admin', 'create-user', '--role', role, '--email', email, '--name', `Web ${role}`,
      '--password-file', join(runDir, 'password')], { env, encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
  }
  server = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/health/ready`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) break;
    } catch { /* not up yet */ }
    assert.ok(Date.now() < deadline, `the server did not become ready:\n${serverLog}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => { server.once('exit', r); setTimeout(r, 8_000); });
  }
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

test('an admin creates a plan, a product, a campaign and a CX account in the browser', async () => {
  const page = await newPage();
  await staffLogin(page, ADMIN);
  await page.getByRole('navigation', { name: '주 메뉴' }).getByRole('link', { name: '보험 상품' }).click();
  await page.getByLabel('이름').fill('시간제 기본');
  await page.getByLabel('시간당 보험료').fill('6000');
  await page.getByRole('button', { name: '만들기' }).click();
  await assert.doesNotReject(page.getByTestId('saved').waitFor());
  assert.match(await page.getByTestId('saved').innerText(), /시간제 기본/);
  await shot(page, 'plans');
  const plans = await ok(200, 'GET', '/insurance/plans');
  assert.deepEqual(plans.items.map((p) => [p.name, p.hourly_premium]), [['시간제 기본', 6000]]);
  planId = plans.items[0].id;

  await page.getByRole('link', { name: '상품', exact: true }).click();
  await page.getByLabel('이름').fill('헬멧');
  await page.getByLabel('가격', { exact: true }).fill('30000');
  await page.getByLabel('재고', { exact: true }).fill('100');
  await page.getByRole('button', { name: '만들기' }).click();
  await page.getByTestId('saved').waitFor();
  const products = await ok(200, 'GET', '/products');
  assert.deepEqual(products.items.map((p) => [p.name, p.price, p.stock]), [['헬멧', 30000, 100]]);

  await page.getByRole('link', { name: '쿠폰 캠페인' }).click();
  await page.getByLabel('이름').fill('봄 맞이');
  await page.getByLabel('할인 값').fill('5000');
  await page.getByLabel('총 수량').fill('50');
  await page.getByRole('button', { name: '만들기' }).click();
  assert.match(await page.getByTestId('saved').innerText(), /봄 맞이 \([0-9a-f-]{36}\) — 50/);
  // The list shows it with nothing issued yet.
  const listed = page.getByTestId('campaigns').getByRole('row', { name: /봄 맞이/ });
  assert.equal(await listed.count(), 1);
  assert.match(await listed.innerText(), /5,000원\s+0 \/ 50/);

  await page.getByRole('link', { name: '직원 계정' }).click();
  await page.getByLabel('이메일').fill(CX);
  await page.getByLabel('이름').fill('상담원 박');
  await page.getByLabel('전화번호').fill('010-9999-0000');
  await page.getByLabel('비밀번호').fill(PASSWORD);
  await page.getByRole('button', { name: '만들기' }).click();
  assert.match(await page.getByTestId('saved').innerText(), /cx@hexride\.test/);
  // The account it made is a CX account: it logs in to the API as cx.
  const cx = await login(CX);
  const [status] = await api('POST', '/admin/insurance/plans', { name: 'x', hourly_premium: 1 }, cx);
  assert.equal(status, 403, 'a CX account cannot create plans');
  await page.context().close();
});

test('a rider account is refused by the admin web', async () => {
  await ok(201, 'POST', '/members', { email: 'only-rider@hexride.test', password: PASSWORD, name: '라이더', phone: '010-1111-2222' });
  const page = await newPage();
  await staffLogin(page, 'only-rider@hexride.test');
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /not a staff account/);
  assert.equal((await page.context().cookies()).filter((c) => c.name === 'hexride_admin').length, 0);
  const res = await page.goto(`${base}/admin/members`);
  assert.equal(new URL(res.url()).pathname, '/admin/login', 'no session: back to the login page');
  await page.context().close();
});

test('CX finds a rider by part of the phone, expires the policy with a note, sees the statement shrink and the audit entry', async () => {
  const { policy } = await riderWhoDrove('kim@hexride.test', '010-4821-7788', '김민수', planId);
  const page = await newPage();
  await staffLogin(page, CX);
  await page.waitForURL(`${base}/admin/members`);
  await shot(page, 'search');
  await page.getByLabel('이메일, 전화번호 또는 이름 (일부)').fill('4821-77');
  await page.getByRole('button', { name: '찾기' }).click();
  const rows = page.getByRole('row', { name: /김민수/ });
  assert.equal(await rows.count(), 1);
  await shot(page, 'search-results');
  await rows.getByRole('link', { name: '김민수' }).click();
  assert.match(await page.getByTestId('member-status').innerText(), /활성/);
  // The licence the rider registered, valid, and its one check: the rider's own, at
  // registration (the provider accepted it).
  assert.match(await page.getByTestId('licence-status').innerText(), /^유효$/);
  const checks = page.getByTestId('licence-checks').locator('tbody tr');
  assert.equal(await checks.count(), 1);
  assert.match(await checks.first().innerText(), /11-22-333333-44\s+유효\s+member:[0-9a-f-]{36}$/);
  // Times in Korea time, with UTC beside.
  assert.match(await page.locator('main').innerText(), /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d KST \(\d\d-\d\d \d\d:\d\d:\d\d UTC\)/);
  await shot(page, 'rider');
  await page.getByRole('link', { name: policy.policy_number }).click();

  // The statement of the last 30 days: one two-hour session, 12,000 KRW.
  assert.equal(await page.getByTestId('insured-minutes').innerText(), '120');
  assert.equal(await page.getByTestId('premium').innerText(), '12,000원');
  await shot(page, 'policy');

  // The rider cancelled with the insurer two hours ago.
  // To the second, as the form takes it.
  const effective = Math.floor((Date.now() - 2 * HOUR) / 1000) * 1000;
  await page.getByLabel('만료 적용 시각 (KST)').fill(kst(effective));
  await page.getByLabel('사유').selectOption('insurer_cancellation');
  await page.getByLabel('메모 (필수)').fill('라이더가 2시간 전에 보험사에 해지 요청함 (상담 #1234)');
  await page.getByRole('button', { name: '변경 내용 미리 보기' }).click();

  // The preview: before and after, and what is no longer billed. Nothing is written yet.
  await page.getByTestId('no-longer-billed').waitFor();
  assert.equal(await page.getByTestId('no-longer-billed').innerText(), '6,000원');
  const after = page.getByTestId('after');
  assert.equal(await after.getByTestId('insured-minutes').innerText(), '60');
  assert.equal(await after.getByTestId('premium').innerText(), '6,000원');
  assert.equal(await after.getByTestId('policy-status').innerText(), 'expired');
  assert.match(await after.getByTestId('policy-reason').innerText(), /insurer_cancellation/);
  await shot(page, 'expiry-preview');
  const cxToken = await login(CX);
  const still = await ok(200, 'GET', `/admin/members/${policy.member_id}/policies`, undefined, cxToken);
  assert.equal(still.items[0].status, 'active', 'the preview writes nothing');

  await page.getByRole('button', { name: '만료 처리 확정' }).click();
  await page.getByTestId('done').waitFor();
  assert.match(await page.getByTestId('done').innerText(), /만료 처리했습니다/);
  assert.equal(await page.getByTestId('premium').innerText(), '6,000원');
  assert.equal(await page.getByTestId('insured-minutes').innerText(), '60');
  assert.equal(await page.getByTestId('policy-status').innerText(), 'expired');
  const audit = page.getByTestId('audit-trail').getByRole('row', { name: /상담 #1234/ });
  assert.equal(await audit.count(), 1);
  const entry = await audit.innerText();
  assert.match(entry, /expired/);
  assert.match(entry, /insurer_cancellation/);
  assert.match(entry, /staff:/);
  await shot(page, 'policy-expired');

  const expired = await ok(200, 'GET', `/admin/members/${policy.member_id}/policies`, undefined, cxToken);
  assert.equal(expired.items[0].status, 'expired');
  assert.equal(Date.parse(expired.items[0].expired_at), effective);

  // Expiring twice is harmless: the same expiry again changes nothing, and says so first.
  await page.getByLabel('만료 적용 시각 (KST)').fill(kst(effective));
  await page.getByLabel('메모 (필수)').fill('같은 요청 두 번째');
  await page.getByRole('button', { name: '변경 내용 미리 보기' }).click();
  await page.getByTestId('nothing-changes').waitFor();
  assert.equal(await page.getByTestId('no-longer-billed').innerText(), '0원');
  await page.getByRole('button', { name: '만료 처리 확정' }).click();
  await page.getByTestId('done').waitFor();
  assert.match(await page.getByTestId('done').innerText(), /바뀐 것이 없습니다/);
  assert.equal(await page.getByTestId('audit-trail').getByRole('row', { name: /두 번째/ }).count(), 0);
  assert.equal(await page.getByTestId('audit-trail').getByRole('row', { name: /상담 #1234/ }).count(), 1);

  // The insurer's own callback arrives later, dated ten minutes earlier still.
  const body = JSON.stringify({ event_id: 'ins-evt-42', policy_number: policy.policy_number,
    cancelled_at: new Date(effective - 10 * 60 * 1000).toISOString() });
  const at = Math.floor(Date.now() / 1000).toString();
  const signature = createHmac('sha256', WEBHOOK_SECRET).update(`${at}.${body}`).digest('hex');
  const res = await fetch(`${base}/api/v1/insurance/insurer/cancellations`, {
    method: 'POST', body,
    headers: { 'content-type': 'application/json', 'x-insurer-timestamp': at, 'x-insurer-signature': `sha256=${signature}` },
  });
  assert.equal(res.status, 200, await res.text());
  await page.reload();
  const callback = page.getByRole('row', { name: /ins-evt-42/ });
  assert.equal(await callback.count(), 1);
  assert.match(await callback.innerText(), /expiry_moved_earlier/);
  const moved = page.getByTestId('audit-trail').getByRole('row', { name: /expiry_moved_earlier/ });
  assert.equal(await moved.count(), 1);
  assert.match(await moved.innerText(), /insurer/);
  await page.context().close();
});

test("a withdrawn rider's policy shows member_withdrawn with the event trail", async () => {
  await ok(201, 'POST', '/members', { email: 'lee@hexride.test', password: PASSWORD, name: '이서연', phone: '010-3030-4040' });
  const token = await login('lee@hexride.test');
  const policy = await ok(201, 'POST', '/insurance/policies', { plan_id: planId }, token);
  const [status] = await api('DELETE', '/members/me', undefined, token);
  assert.equal(status, 204);

  const page = await newPage();
  await staffLogin(page, CX);
  // A search needs at least 3 characters (a trigram): the whole of this 3-syllable name.
  await page.getByLabel('이메일, 전화번호 또는 이름 (일부)').fill('이서연');
  await page.getByRole('button', { name: '찾기' }).click();
  await page.getByRole('link', { name: '이서연' }).click();
  assert.match(await page.getByTestId('member-status').innerText(), /탈퇴/);
  // The insurance-expiry consumer runs after the relay: wait for its effect to show.
  const trail = page.getByTestId('event-trail');
  const deadline = Date.now() + 20_000;
  while (!(await page.getByRole('row', { name: /member_withdrawn/ }).count())) {
    assert.ok(Date.now() < deadline, 'the policy was not expired for the withdrawal');
    await new Promise((r) => setTimeout(r, 300));
    await page.reload();
  }
  const policyRow = page.getByRole('row', { name: new RegExp(policy.policy_number) });
  assert.match(await policyRow.innerText(), /회원 탈퇴 member_withdrawn/);
  assert.match(await policyRow.innerText(), /system:insurance-expiry/);
  const withdrawn = trail.getByRole('row', { name: /member\.withdrawn/ });
  assert.equal(await withdrawn.count(), 1);
  const text = await withdrawn.innerText();
  assert.match(text, /전송됨/, 'the relay delivered it');
  assert.match(text, /insurance-expiry/, 'the insurance-expiry consumer applied it');
  assert.equal(await trail.getByRole('row', { name: /insurance\.policy_expired/ }).count(), 1);
  await shot(page, 'withdrawn-rider');
  await page.context().close();
});

test('a cross-site POST without the CSRF token is refused', async () => {
  const { policy } = await riderWhoDrove('park@hexride.test', '010-5656-7878', '박지훈', planId);
  // Another origin's page with a form that posts to the expiry action, as an attacker's would.
  const evil = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><form method="post" action="${base}/admin/policies/${policy.id}/expire">
      <input name="effective_at" value="${kst(Date.now() - HOUR)}"><input name="reason" value="admin_request">
      <input name="note" value="forged"><button>win a prize</button></form>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  const page = await newPage();
  await staffLogin(page, CX);
  await page.waitForURL(`${base}/admin/members`);
  await page.goto(`http://127.0.0.1:${evil.address().port}/`);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().includes('/expire')),
    page.getByRole('button', { name: 'win a prize' }).click(),
  ]);
  assert.equal(response.status(), 403);
  assert.match(await page.getByRole('alert').innerText(), /다른 사이트에서 보낸 요청/);
  // A same-origin post with the session but without the token is refused too.
  const direct = await page.request.post(`${base}/admin/policies/${policy.id}/expire`, {
    form: { effective_at: kst(Date.now() - HOUR), reason: 'admin_request', note: 'forged' },
    maxRedirects: 0,
  });
  assert.equal(direct.status(), 403);
  const cx = await login(CX);
  const policies = await ok(200, 'GET', `/admin/members/${policy.member_id}/policies`, undefined, cx);
  assert.equal(policies.items[0].status, 'active', 'nothing was expired');
  // Every page carries the CSP that allows no script, and no framing.
  const csp = direct.headers()['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /script-src/);
  assert.match(csp, /frame-ancestors 'none'/);
  evil.close();
  await page.context().close();
});

test('the expiry flow with the keyboard alone', async () => {
  await riderWhoDrove('choi@hexride.test', '010-7171-2323', '최유나', planId);
  const page = await newPage();
  await staffLogin(page, CX);
  await page.waitForURL(`${base}/admin/members`);
  // The search field has the focus on arrival (autofocus lands once the page has loaded).
  await page.waitForFunction(() => document.activeElement?.id === 'q');
  await page.keyboard.type('7171');
  await page.keyboard.press('Enter');
  await page.waitForURL(/q=7171/);
  await tabTo(page, 'a[href^="/admin/members/"]');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/admin\/members\/[0-9a-f-]{36}$/);
  await tabTo(page, 'a[href^="/admin/policies/"]');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/admin\/policies\/[0-9a-f-]{36}$/);
  // Effective time: the default (now); reason: the default; the note typed.
  await tabTo(page, '#note');
  await page.keyboard.type('키보드로만 처리');
  await tabTo(page, 'button[type=submit]');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), '변경 내용 미리 보기');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/preview$/);
  // The confirmation button has the focus.
  assert.equal(await page.evaluate(() => document.activeElement.textContent), '만료 처리 확정');
  await page.keyboard.press('Enter');
  await page.getByTestId('done').waitFor();
  assert.equal(await page.getByTestId('policy-status').innerText(), 'expired');
  assert.equal(await page.getByTestId('audit-trail').getByRole('row', { name: /키보드로만 처리/ }).count(), 1);
  await page.context().close();
});

test('English is one link away, and logging out ends the session', async () => {
  const page = await newPage();
  await staffLogin(page, CX);
  await page.waitForURL(`${base}/admin/members`);
  await page.getByRole('link', { name: '언어 바꾸기' }).click();
  await page.getByRole('button', { name: 'Search' }).waitFor();
  assert.equal(await page.locator('html').getAttribute('lang'), 'en');
  const [session] = (await page.context().cookies()).filter((c) => c.name === 'hexride_admin');
  assert.ok(session.httpOnly, 'the session cookie is HttpOnly');
  assert.equal(session.sameSite, 'Strict');
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL(/\/admin\/login\?bye=1$/);
  assert.match(await page.getByRole('status').innerText(), /logged out/);
  let res = await page.goto(`${base}/admin/members`);
  assert.equal(new URL(res.url()).pathname, '/admin/login');
  // The old cookie, kept by someone, no longer opens anything: the server ended the session.
  await page.context().addCookies([session]);
  res = await page.goto(`${base}/admin/members`);
  assert.equal(new URL(res.url()).pathname, '/admin/login');
  assert.match(await page.getByRole('status').innerText(), /session has ended/);
  await page.context().close();
});

test('an idle session ends after the idle timeout (30 minutes by default), a used one lives on', async () => {
  const page = await newPage();
  await staffLogin(page, CX);
  await page.waitForURL(`${base}/admin/members`);
  const [session] = (await page.context().cookies()).filter((c) => c.name === 'hexride_admin');
  const idleFor = (ms) => sql(`update staff_sessions set last_seen_at = last_seen_at - ${BigInt(ms) * 1000n}`);
  // 29 minutes without a request: still in, and the request counts as use.
  idleFor(29 * MINUTE);
  let res = await page.goto(`${base}/admin/members`);
  assert.equal(new URL(res.url()).pathname, '/admin/members');
  idleFor(29 * MINUTE);
  res = await page.goto(`${base}/admin/members`);
  assert.equal(new URL(res.url()).pathname, '/admin/members', 'the request 29 minutes ago kept it alive');
  // 31 minutes without one: ended, on the server.
  idleFor(31 * MINUTE);
  res = await page.goto(`${base}/admin/members`);
  assert.equal(new URL(res.url()).pathname, '/admin/login');
  assert.match(await page.getByRole('status').innerText(), /세션이 끝났습니다|session has ended/);
  await page.context().addCookies([session]);
  res = await page.goto(`${base}/admin/members`);
  assert.equal(new URL(res.url()).pathname, '/admin/login', 'the ended session does not come back');
  await page.context().close();
});

test('every page passes the axe-core WCAG 2.1 A/AA checks, in both languages', async () => {
  const { policy } = await riderWhoDrove('axe@hexride.test', '010-2468-1357', '정하늘', planId);
  // A page that bounced to the login page would be checked as the login page: refuse that.
  const visit = async (page, path) => {
    const res = await page.goto(`${base}${path}`);
    assert.equal(res.status(), 200, path);
    assert.equal(new URL(res.url()).pathname, path.split('?')[0]);
  };
  for (const lang of ['ko', 'en']) {
    const page = await newPage();
    await page.context().addCookies([{ name: 'hexride_lang', value: lang, url: base }]);
    await page.goto(`${base}/admin/login`);
    await assertAccessible(page, 'the login page');
    await page.locator('input[name=email]').fill(ADMIN);
    await page.locator('input[name=password]').fill(PASSWORD);
    await page.locator('input[name=password]').press('Enter');
    await page.waitForURL(`${base}/admin/members`);
    await visit(page, '/admin/members?q=2468');
    await assertAccessible(page, 'the search results');
    await visit(page, `/admin/members/${policy.member_id}`);
    await assertAccessible(page, 'the rider page');
    await visit(page, `/admin/policies/${policy.id}`);
    await assertAccessible(page, 'the policy page');
    await page.locator('#note').fill('axe');
    await page.locator('form[action$="/preview"] button[type=submit]').click();
    await page.getByTestId('no-longer-billed').waitFor();
    await assertAccessible(page, 'the expiry preview');
    for (const path of ['products', 'plans', 'campaigns', 'staff']) {
      await visit(page, `/admin/${path}`);
      await assertAccessible(page, `/admin/${path}`);
    }
    await page.context().close();
  }
});
