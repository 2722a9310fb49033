// Drives headless Debian chromium through examples/browser: opens the page,
// signs in at oidc-provider's development login form, consents, and waits
// for the page's result. Prints one JSON line: the page's result and the
// access token the page received (read from the token endpoint's
// response, so the Rust test can present the same token over plain NATS).
// Usage: node drive.mjs PAGE_URL LOGIN
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [pageUrl, login] = process.argv.slice(2);
if (!pageUrl || !login) {
  console.error('usage: node drive.mjs PAGE_URL LOGIN');
  process.exit(2);
}
const STEP_MS = 15_000;
const pageOrigin = new URL(pageUrl).origin;

const profile = mkdtempSync(join(tmpdir(), 'nats-oidc-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const problems = [];
// Loopback only: anything else (oidc-provider's login page asks for Google
// Fonts) is refused before it leaves the machine, DNS included.
await context.route('**/*', (route) => {
  const host = new URL(route.request().url()).hostname;
  return host === '127.0.0.1' ? route.continue() : route.abort('blockedbyclient');
});
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('requestfailed', (r) => problems.push(`failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  let token = null;
  page.on('response', async (resp) => {
    if (resp.request().method() !== 'POST' || new URL(resp.url()).origin === pageOrigin) return;
    const body = await resp.json().catch(() => null);
    if (body?.access_token) token = body.access_token;
  });

  await page.goto(pageUrl);
  await page.click('#sign-in');
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any password: the development login accepts every one');
  await page.click('button[type=submit]');
  await page.waitForSelector('input[name=login]', { state: 'detached' });
  // oidc-provider asks once for consent to the client's scopes.
  if (new URL(page.url()).origin !== pageOrigin) {
    await page.click('button[type=submit]');
    await page.waitForURL((u) => u.origin === pageOrigin);
  }
  await page.waitForSelector('#result[data-state]', { state: 'attached' });
  const result = JSON.parse(await page.$eval('#result', (el) => el.value));
  const log = await page.$eval('#log', (el) => el.textContent);
  console.log(JSON.stringify({ result, token, log, problems }));
} catch (e) {
  console.error(`driver: ${e.message}\n${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
