// A page on another site, in Chromium, tries to use the gateway with the user's browser: open
// the WebSocket (to read rooms, presence, history) and post a forged frame to a victim through
// `@connections` with a no-cors fetch (a "simple" request: no preflight). Both must fail, and
// the victim, connected from node (not the browser), must receive nothing.
// Run through ./run (which starts the server and sets DYNAMOWAVE_HTTP).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { chromium } from 'playwright-core';

const BASE = process.env.DYNAMOWAVE_HTTP;
const STAGE = process.env.DYNAMOWAVE_STAGE || 'production';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let browser;
let attacker;

/// A minimal WebSocket client (node 20 has none built in): JSON framing, text frames only.
function connectVictim(url) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
        'Sec-WebSocket-Protocol': 'dynamowave.v1',
      },
    });
    req.on('error', reject);
    req.on('response', (res) => reject(new Error(`victim upgrade refused: ${res.statusCode}`)));
    req.on('upgrade', (_res, socket) => {
      const frames = [];
      const waiters = [];
      let buf = Buffer.alloc(0);
      socket.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        for (;;) {
          if (buf.length < 2) return;
          let len = buf[1] & 0x7f;
          let off = 2;
          if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
          else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
          if (buf.length < off + len) return;
          const opcode = buf[0] & 0x0f;
          const payload = buf.subarray(off, off + len).toString('utf8');
          buf = buf.subarray(off + len);
          if (opcode === 1) {
            frames.push(payload);
            waiters.splice(0).forEach((w) => w());
          }
        }
      });
      const send = (text) => {
        const data = Buffer.from(text);
        const mask = crypto.randomBytes(4);
        const head = data.length < 126
          ? Buffer.from([0x81, 0x80 | data.length])
          : Buffer.from([0x81, 0x80 | 126, data.length >> 8, data.length & 0xff]);
        const masked = Buffer.from(data.map((b, i) => b ^ mask[i % 4]));
        socket.write(Buffer.concat([head, mask, masked]));
      };
      const next = async (pred, timeout = 5000) => {
        const deadline = Date.now() + timeout;
        for (;;) {
          const i = frames.findIndex(pred);
          if (i >= 0) return frames.splice(i, 1)[0];
          if (Date.now() > deadline) throw new Error('timed out waiting for a frame');
          await new Promise((r) => { waiters.push(r); setTimeout(r, 100); });
        }
      };
      resolve({ frames, send, next, close: () => socket.destroy() });
    });
    req.end();
  });
}

async function rejectedForOrigin() {
  const text = await (await fetch(`${BASE}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('dynamowave_rejected_total') && l.includes('reason="origin"'));
  return line ? Number(line.trim().split(/\s+/).pop()) : 0;
}

before(async () => {
  assert.ok(BASE, 'DYNAMOWAVE_HTTP must be set; use tests/browser/run');
  // The attacker's site: another origin (127.0.0.2 is loopback on Linux, and another site
  // for the browser than 127.0.0.1).
  attacker = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>cute cats</title><p>nothing to see here</p>');
  });
  await new Promise((r) => attacker.listen(0, '127.0.0.2', r));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (attacker) attacker.close();
});

test('a page on another site can neither read over the WebSocket nor post to a connection', async () => {
  const gateway = new URL(BASE);
  const victim = await connectVictim(`ws://${gateway.host}/${STAGE}`);
  victim.send(JSON.stringify({ action: 'whoami' }));
  const id = JSON.parse(await victim.next((f) => JSON.parse(f).type === 'identity')).connectionId;
  assert.ok(id, 'the victim has a connection id');
  const refusedBefore = await rejectedForOrigin();

  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`http://127.0.0.2:${attacker.address().port}/`);
  const result = await page.evaluate(async ({ wsUrl, postUrl }) => {
    const out = { opened: false, received: [], closed: false, fetched: null };
    await new Promise((resolve) => {
      const ws = new WebSocket(wsUrl);
      ws.onopen = () => {
        out.opened = true;
        ws.send(JSON.stringify({ action: 'rooms' }));
        ws.send(JSON.stringify({ action: 'who' }));
        setTimeout(resolve, 1000);
      };
      ws.onmessage = (e) => out.received.push(String(e.data));
      ws.onclose = () => { out.closed = true; resolve(); };
      setTimeout(resolve, 5000);
    });
    try {
      const r = await fetch(postUrl, { method: 'POST', mode: 'no-cors', body: 'forged by another site' });
      out.fetched = r.type; // "opaque": the request went out, its answer is hidden from the page
    } catch (e) {
      out.fetched = `error: ${e}`;
    }
    return out;
  }, {
    wsUrl: `ws://${gateway.host}/${STAGE}`,
    postUrl: `${BASE}/${STAGE}/@connections/${encodeURIComponent(id)}`,
  });
  await context.close();

  assert.equal(result.opened, false, `the WebSocket opened and read: ${JSON.stringify(result.received)}`);
  assert.equal(result.closed, true, 'the WebSocket attempt ended');
  assert.deepEqual(result.received, []);
  assert.equal(result.fetched, 'opaque', 'the forged POST reached the server (so its refusal is the server\'s)');
  assert.ok(await rejectedForOrigin() > refusedBefore, 'the server refused the upgrade for its Origin');

  // The victim got nothing; the same post from this machine (not a page) does arrive.
  await new Promise((r) => setTimeout(r, 500));
  assert.deepEqual(victim.frames.filter((f) => f.includes('forged')), []);
  const control = await fetch(`${BASE}/${STAGE}/@connections/${encodeURIComponent(id)}`, { method: 'POST', body: 'control' });
  assert.equal(control.status, 200);
  assert.equal(await victim.next((f) => f === 'control'), 'control');
  victim.close();
});
