// Browser tests of the web client served by the real `dynamowave` binary.
// Run through ./run (which starts the server and sets DYNAMOWAVE_HTTP), or by hand with
// DYNAMOWAVE_HTTP=http://127.0.0.1:PORT node --test tests/browser/
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const artifacts = path.join(root, 'artifacts', 'browser');
const BASE = process.env.DYNAMOWAVE_HTTP;
const STAGE = process.env.DYNAMOWAVE_STAGE || 'production';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const XSS = '<img src=x onerror=alert(1)>';

let browser;
const contexts = [];
const pageErrors = [];
const dialogs = [];

before(async () => {
  assert.ok(BASE, 'DYNAMOWAVE_HTTP must be set (http://127.0.0.1:PORT of a running dynamowave); use tests/browser/run');
  fs.mkdirSync(artifacts, { recursive: true });
  // Playwright refuses --user-data-dir with launch(); it starts the browser with a fresh
  // temporary profile of its own (removed on close), and each user below gets its own context.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
});

function uniq(prefix) {
  return `${prefix}${Math.random().toString(36).slice(2, 7)}`;
}

async function newUser(name, opts = {}) {
  const context = await browser.newContext(opts.viewport ? { viewport: opts.viewport } : {});
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on('dialog', async (d) => { dialogs.push(`${name}: ${d.type()} ${d.message()}`); await d.dismiss().catch(() => {}); });
  await page.goto(`${BASE}/`);
  await waitOnline(page);
  if (name) await setName(page, name);
  return { context, page, name };
}

async function waitOnline(page, timeout = 15000) {
  await page.waitForSelector('body[data-conn-state="online"]', { timeout });
}

async function setName(page, name) {
  await page.fill('#name-input', name);
  await page.press('#name-input', 'Enter');
  await page.waitForFunction((n) => document.getElementById('my-name').textContent === n, name, { timeout: 10000 });
}

async function joinRoom(page, room) {
  await page.fill('#join-input', room);
  await page.press('#join-input', 'Enter');
  await page.waitForFunction((r) => document.getElementById('room-title').textContent === '#' + r, room, { timeout: 10000 });
}

// New users named from `names` (made unique), all joined to a new room named from `prefix`.
async function usersInRoom(prefix, ...names) {
  const room = uniq(prefix);
  const users = [];
  for (const name of names) users.push(await newUser(uniq(name)));
  for (const u of users) await joinRoom(u.page, room);
  return { room, users };
}

async function say(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

// Waits until the log shows a message with this text (from `from`, if given) and returns its sender.
async function waitMessage(page, text, from, timeout = 15000) {
  await page.waitForFunction(
    ([t, f]) => Array.from(document.querySelectorAll('#log li.msg')).some(
      (li) => li.querySelector('.text')?.textContent === t && (!f || li.querySelector('.from')?.textContent === f)),
    [text, from], { timeout });
}

async function logTexts(page) {
  return page.$$eval('#log li.msg .text', (els) => els.map((e) => e.textContent));
}

async function memberNames(page) {
  return page.$$eval('#member-list li', (els) => els.map((e) => e.textContent));
}

function assertNoPageProblems() {
  assert.deepEqual(pageErrors, [], 'the page threw errors');
  assert.deepEqual(dialogs, [], 'a dialog fired');
}

test('the page loads, connects and uses the stage from its meta tag', async () => {
  const u = await newUser(null);
  const meta = await u.page.getAttribute('meta[name="dynamowave-stage"]', 'content');
  assert.ok(meta === STAGE || meta === '{{STAGE}}', `unexpected stage meta ${meta}`);
  assert.equal(await u.page.textContent('#conn-text'), 'Connected');
  // A fresh connection is in the lobby and learns its (anonymous) name.
  await u.page.waitForFunction(() => document.getElementById('room-title').textContent === '#lobby');
  await u.page.waitForFunction(() => /^anon-/.test(document.getElementById('my-name').textContent), null, { timeout: 10000 });
  await u.context.close();
  assertNoPageProblems();
});

test('two pages chat, each sees the other with the right sender; presence lists both', async () => {
  const { room, users: [alice, bob] } = await usersInRoom('chat-', 'alice', 'bob');

  await say(alice.page, 'hello from alice');
  await waitMessage(bob.page, 'hello from alice', alice.name);
  await waitMessage(alice.page, 'hello from alice', alice.name);
  await say(bob.page, 'hi alice, bob here');
  await waitMessage(alice.page, 'hi alice, bob here', bob.name);
  await waitMessage(bob.page, 'hi alice, bob here', bob.name);
  // Acked: nothing left in the outbox.
  await alice.page.waitForFunction(() => document.querySelectorAll('#outbox li').length === 0);
  await bob.page.waitForFunction(() => document.querySelectorAll('#outbox li').length === 0);
  // Each message appears exactly once.
  const texts = await alice.page.$$eval('#log li.msg .text', (els) => els.map((e) => e.textContent));
  assert.deepEqual(texts, ['hello from alice', 'hi alice, bob here']);

  // Presence: both lists show both names (alice learned of bob by a presence event or `who`).
  for (const u of [alice, bob]) {
    await u.page.waitForFunction(
      ([a, b]) => {
        const names = Array.from(document.querySelectorAll('#member-list li')).map((li) => li.textContent);
        return names.some((n) => n.startsWith(a)) && names.some((n) => n.startsWith(b)) && names.length === 2;
      }, [alice.name, bob.name], { timeout: 10000 });
  }
  // Bob leaves the room: alice's list drops him.
  await bob.page.click('#leave-btn');
  await bob.page.waitForFunction(() => document.getElementById('room-title').textContent === 'No room');
  await alice.page.waitForFunction((b) => !Array.from(document.querySelectorAll('#member-list li')).some((li) => li.textContent.startsWith(b)), bob.name, { timeout: 10000 });
  // The room list offers the room; joining from it brings bob back with the history.
  await bob.page.click(`#room-list button[data-room="${room}"]`);
  await waitMessage(bob.page, 'hello from alice', alice.name);

  await alice.page.screenshot({ path: path.join(artifacts, 'chat.png'), fullPage: true });
  assertNoPageProblems();
});

test('phone-width layout (390px) has no horizontal overflow and still chats', async () => {
  const room = uniq('phone-');
  const phone = await newUser(null, { viewport: { width: 390, height: 844 } });
  phone.name = uniq('phone');
  const other = await newUser(uniq('desk'));
  await joinRoom(other.page, room);
  // The sidebar (name, rooms, people) is behind a toggle on a phone.
  assert.equal(await phone.page.isVisible('#sidebar'), false);
  await phone.page.click('#panel-toggle');
  assert.equal(await phone.page.getAttribute('#panel-toggle', 'aria-expanded'), 'true');
  assert.equal(await phone.page.isVisible('#join-input'), true);
  await setName(phone.page, phone.name);
  await joinRoom(phone.page, room);
  // Joining closes the panel again, back to the conversation.
  assert.equal(await phone.page.isVisible('#sidebar'), false);
  await say(other.page, 'a rather long message to see how the bubbles wrap on a narrow phone screen');
  await waitMessage(phone.page, 'a rather long message to see how the bubbles wrap on a narrow phone screen', other.name);
  await say(phone.page, 'typed on a phone');
  await waitMessage(other.page, 'typed on a phone', phone.name);
  const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `page is ${overflow}px wider than the phone`);
  await phone.page.screenshot({ path: path.join(artifacts, 'chat-phone.png'), fullPage: true });
  assertNoPageProblems();
});

test('markup in names and messages renders as text (no XSS)', async () => {
  const { room, users: [mallory, victim] } = await usersInRoom('xss-', 'mallory', 'victim');

  // The server refuses the name; the page shows its error, as text.
  await mallory.page.fill('#name-input', XSS);
  await mallory.page.press('#name-input', 'Enter');
  await mallory.page.waitForSelector('#name-error:not([hidden])', { timeout: 10000 });
  const err = await mallory.page.textContent('#name-error');
  assert.ok(err.length > 0, 'setname error shown');
  assert.equal(await mallory.page.getAttribute('#name-input', 'aria-invalid'), 'true');
  assert.equal(await mallory.page.textContent('#my-name'), mallory.name);

  // The same text as a message reaches the other page as text.
  const payload = `${XSS} <script>alert(2)</script> <b>bold</b>`;
  await say(mallory.page, payload);
  await waitMessage(victim.page, payload, mallory.name);
  await waitMessage(mallory.page, payload, mallory.name);
  // A private message with markup too.
  await mallory.page.click(`#member-list button[aria-label="Send a private message to ${victim.name}"]`);
  await say(mallory.page, XSS);
  await victim.page.waitForFunction((t) => Array.from(document.querySelectorAll('#log li.private .text')).some((e) => e.textContent === t), XSS, { timeout: 10000 });
  // Give any injected handler a chance to run.
  await victim.page.waitForTimeout(500);
  for (const u of [mallory, victim]) {
    assert.equal(await u.page.$$eval('img, script:not([src]), b', (els) => els.length), 0, `${u.name}: injected elements exist`);
  }
  assertNoPageProblems();
});

test('a private message reaches only its recipient', async () => {
  const { room, users: [carol, dave, erin] } = await usersInRoom('dm-', 'carol', 'dave', 'erin');
  await carol.page.waitForSelector(`#member-list button[aria-label="Send a private message to ${dave.name}"]`, { timeout: 10000 });

  // By clicking the member.
  await carol.page.click(`#member-list button[aria-label="Send a private message to ${dave.name}"]`);
  assert.equal(await carol.page.isVisible('#dm-chip'), true);
  await say(carol.page, 'psst dave (click)');
  // By command.
  await carol.page.press('#composer-input', 'Escape');
  await say(carol.page, `/msg ${dave.name} psst dave (command)`);
  for (const t of ['psst dave (click)', 'psst dave (command)']) {
    await dave.page.waitForFunction(
      ([text, from]) => Array.from(document.querySelectorAll('#log li.private')).some(
        (li) => li.querySelector('.text').textContent === text && li.querySelector('.from').textContent === `${from} → you`),
      [t, carol.name], { timeout: 10000 });
    // The sender sees it acknowledged.
    await carol.page.waitForFunction((text) => Array.from(document.querySelectorAll('#log li.private .text')).some((e) => e.textContent === text), t, { timeout: 10000 });
  }
  // A public message after the private ones: once erin has it, she would have had the private ones.
  await say(carol.page, 'public after private');
  await waitMessage(erin.page, 'public after private', carol.name);
  await waitMessage(dave.page, 'public after private', carol.name);
  const erinTexts = await logTexts(erin.page);
  assert.ok(!erinTexts.some((t) => t.startsWith('psst dave')), `erin saw a private message: ${erinTexts}`);
  assert.equal(await erin.page.$$eval('#log li.private', (els) => els.length), 0);
  assertNoPageProblems();
});

test('a page that goes offline and back recovers what it missed and sends what it queued', async () => {
  const { room, users: [alice, bob] } = await usersInRoom('offline-', 'alice', 'bob');
  await say(alice.page, 'before offline');
  await waitMessage(bob.page, 'before offline', alice.name);

  await bob.context.setOffline(true);
  // The page notices (navigator offline event, or its heartbeat) and shows it.
  await bob.page.waitForSelector('body:not([data-conn-state="online"])', { timeout: 20000 });
  const shown = await bob.page.textContent('#conn-text');
  assert.notEqual(shown, 'Connected');
  // Alice's list drops bob once his socket is closed.
  await alice.page.waitForFunction((b) => !Array.from(document.querySelectorAll('#member-list li')).some((li) => li.textContent.startsWith(b)), bob.name, { timeout: 20000 });

  for (let i = 1; i <= 3; i++) await say(alice.page, `missed ${i}`);
  await waitMessage(alice.page, 'missed 3', alice.name);
  // Bob writes while offline: queued, shown as pending.
  await say(bob.page, 'written while offline');
  await bob.page.waitForSelector('#outbox li.pending', { timeout: 5000 });
  assert.ok(!(await logTexts(bob.page)).includes('missed 1'));

  // Watch what the page sends on its next connection.
  const sent = [];
  bob.page.on('websocket', (ws) => ws.on('framesent', (f) => { try { sent.push(JSON.parse(f.payload)); } catch (_) { /* not JSON */ } }));
  await bob.context.setOffline(false);
  await waitOnline(bob.page, 30000);
  for (let i = 1; i <= 3; i++) await waitMessage(bob.page, `missed ${i}`, alice.name);
  // It resumed with `join` + `since` (its last seq) + `epoch`, and retried the unacked message.
  const join = sent.find((f) => f.action === 'join' && f.room === room);
  assert.ok(join, `no join sent after reconnecting: ${JSON.stringify(sent)}`);
  assert.ok(Number.isInteger(join.since) && join.since >= 1, `join without since: ${JSON.stringify(join)}`);
  assert.equal(typeof join.epoch, 'string');
  assert.ok(sent.some((f) => f.action === 'sendmessage' && f.message === 'written while offline' && typeof f.id === 'string'));
  await waitMessage(alice.page, 'written while offline', bob.name);
  await bob.page.waitForFunction(() => document.querySelectorAll('#outbox li').length === 0, null, { timeout: 10000 });
  // In order, each once.
  const texts = await logTexts(bob.page);
  const want = ['before offline', 'missed 1', 'missed 2', 'missed 3', 'written while offline'];
  assert.deepEqual(texts.filter((t) => want.includes(t)), want);
  const aliceTexts = await logTexts(alice.page);
  assert.equal(aliceTexts.filter((t) => t === 'written while offline').length, 1);
  assertNoPageProblems();
});

test('a connection cut by the server (DELETE @connections) is re-established and recovers', async () => {
  const { room, users: [alice, bob] } = await usersInRoom('cut-', 'alice', 'bob');
  await say(alice.page, 'before cut');
  await waitMessage(bob.page, 'before cut', alice.name);
  // Bob's connection id: from the page, else from alice's member list.
  let id = await bob.page.evaluate(() => document.body.dataset.connectionId || '');
  if (!id) {
    id = await alice.page.$eval(`#member-list button[aria-label="Send a private message to ${bob.name}"]`, (b) => b.dataset.connectionId);
  }
  assert.ok(id, 'found bob\'s connection id');
  const res = await fetch(`${BASE}/${STAGE}/@connections/${encodeURIComponent(id)}`, { method: 'DELETE' });
  assert.ok(res.status === 204 || res.status === 200, `DELETE answered ${res.status}`);
  await bob.page.waitForSelector('body:not([data-conn-state="online"])', { timeout: 15000 });
  await say(alice.page, 'during cut');
  await waitOnline(bob.page, 30000);
  await waitMessage(bob.page, 'during cut', alice.name);
  await say(alice.page, 'after cut');
  await waitMessage(bob.page, 'after cut', alice.name);
  const texts = (await logTexts(bob.page)).filter((t) => ['before cut', 'during cut', 'after cut'].includes(t));
  assert.deepEqual(texts, ['before cut', 'during cut', 'after cut']);
  // The name survived the reconnect.
  assert.equal(await bob.page.textContent('#my-name'), bob.name);
  assertNoPageProblems();
});

test('the heartbeat notices a dead connection even without the browser\'s offline event', async () => {
  // Chromium's offline emulation leaves an open WebSocket "open" but passes no frames; the page
  // normally reacts to the `offline` event. Hide that event here so only the ping/pong heartbeat
  // (ping every 10 s, 5 s to answer) can notice.
  const room = uniq('hb-');
  const alice = await newUser(uniq('alice'));
  const context = await browser.newContext();
  contexts.push(context);
  await context.addInitScript(() => {
    const add = window.addEventListener.bind(window);
    window.addEventListener = (type, fn, opts) => (type === 'offline' || type === 'online' ? undefined : add(type, fn, opts));
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`bob: ${e.message}`));
  const bob = { context, page, name: uniq('bob') };
  await page.goto(`${BASE}/`);
  await waitOnline(page);
  await setName(page, bob.name);
  await joinRoom(alice.page, room);
  await joinRoom(bob.page, room);
  await say(alice.page, 'hb before');
  await waitMessage(bob.page, 'hb before', alice.name);

  const t0 = Date.now();
  await bob.context.setOffline(true);
  await bob.page.waitForSelector('body:not([data-conn-state="online"])', { timeout: 20000 });
  const noticedMs = Date.now() - t0;
  assert.ok(noticedMs <= 16500, `heartbeat took ${noticedMs} ms`);
  await say(alice.page, 'hb missed');
  await bob.context.setOffline(false);
  // Without the `online` event the page retries on its own (at most every 15 s).
  await waitOnline(bob.page, 40000);
  await waitMessage(bob.page, 'hb missed', alice.name);
  assertNoPageProblems();
});
