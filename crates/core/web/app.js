// DynamoWave Chat web client. Vanilla JS, no build step, no external resources.
// Everything received from the network is rendered with textContent only (never innerHTML).
(function () {
  'use strict';

  // ---------------------------------------------------------------- config
  const PLACEHOLDER = '{{' + 'STAGE}}';
  const stageMeta = document.querySelector('meta[name="dynamowave-stage"]');
  let stage = stageMeta ? (stageMeta.getAttribute('content') || '').trim() : '';
  if (!stage || stage === PLACEHOLDER || stage.indexOf('{{') !== -1) stage = 'production';
  const token = new URLSearchParams(location.search).get('token');

  const PING_EVERY_MS = 10000;
  const PONG_TIMEOUT_MS = 5000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const HISTORY_PAGE = 50;
  const ROOM_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;
  const NAME_KEY = 'dynamowave.name';

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url = proto + '//' + location.host + '/' + encodeURIComponent(stage);
    if (token) url += '?token=' + encodeURIComponent(token);
    return url;
  }

  // ---------------------------------------------------------------- state
  const state = {
    ws: null,
    conn: 'connecting', // connecting | online | reconnecting | offline
    attempt: 0,
    reconnectTimer: null,
    reconnectAt: 0,
    pingTimer: null,
    pongTimer: null,
    countdownTimer: null,
    connectionId: null,
    myName: null,
    desiredName: loadName(),
    wantRoom: 'lobby', // room we want to be in (null after leave)
    currentRoom: null, // room the server confirmed with `joined`
    rooms: new Map(), // room -> {epoch, lastSeq, contig, msgs: Map seq->msg, more, oldest}
    roomList: [],
    members: new Map(), // connectionId -> name (current room)
    pending: new Map(), // id -> {room, text}
    privPending: new Map(), // id -> {to, text}
    dmTarget: null, // {name, connectionId}
  };

  function loadName() {
    try { return localStorage.getItem(NAME_KEY) || null; } catch (_) { return null; }
  }
  function saveName(n) {
    try { if (n) localStorage.setItem(NAME_KEY, n); else localStorage.removeItem(NAME_KEY); } catch (_) { /* ignore */ }
  }

  function roomState(room) {
    let r = state.rooms.get(room);
    if (!r) {
      r = { epoch: null, lastSeq: 0, contig: null, msgs: new Map(), more: false };
      state.rooms.set(room, r);
    }
    return r;
  }

  function newId() {
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return 'web-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  // ---------------------------------------------------------------- dom helpers
  const $ = (id) => document.getElementById(id);
  const el = {
    connText: $('conn-text'), reconnectNow: $('reconnect-now'),
    panelToggle: $('panel-toggle'), sidebar: $('sidebar'),
    nameForm: $('name-form'), nameInput: $('name-input'), nameError: $('name-error'), myName: $('my-name'),
    roomList: $('room-list'), roomsRefresh: $('rooms-refresh'),
    joinForm: $('join-form'), joinInput: $('join-input'), joinError: $('join-error'),
    memberList: $('member-list'), memberCount: $('member-count'),
    roomTitle: $('room-title'), leaveBtn: $('leave-btn'),
    logWrap: $('log-wrap'), log: $('log'), outbox: $('outbox'), empty: $('empty'), older: $('older-btn'),
    notice: $('notice'), composer: $('composer'), input: $('composer-input'), send: $('send-btn'),
    dmChip: $('dm-chip'), dmName: $('dm-name'), dmCancel: $('dm-cancel'),
  };

  function h(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmtTime(ts) {
    const d = new Date(typeof ts === 'number' ? ts : Date.now());
    const t = h('time', 'ts', d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    return t;
  }

  function showFieldError(p, text) {
    const input = p === el.nameError ? el.nameInput : p === el.joinError ? el.joinInput : null;
    if (text) {
      p.textContent = text;
      p.hidden = false;
      if (input) input.setAttribute('aria-invalid', 'true');
    } else {
      p.textContent = '';
      p.hidden = true;
      if (input) input.removeAttribute('aria-invalid');
    }
  }

  let noticeTimer = null;
  function notice(text) {
    el.notice.textContent = text;
    el.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.notice.hidden = true; }, 6000);
  }

  function nearBottom() {
    const w = el.logWrap;
    return w.scrollHeight - w.scrollTop - w.clientHeight < 80;
  }
  function scrollToBottom() { el.logWrap.scrollTop = el.logWrap.scrollHeight; }

  // ---------------------------------------------------------------- connection status
  function setConn(s, detail) {
    state.conn = s;
    document.body.dataset.connState = s;
    const labels = {
      connecting: 'Connecting…',
      online: 'Connected',
      reconnecting: 'Reconnecting…',
      offline: 'Offline — waiting for network',
    };
    el.connText.textContent = detail || labels[s] || s;
    el.reconnectNow.hidden = !(s === 'reconnecting' || s === 'offline');
    updateComposer();
  }

  function updateComposer() {
    const room = state.currentRoom;
    el.leaveBtn.disabled = !room || state.conn !== 'online';
    el.roomTitle.textContent = room ? '#' + room : 'No room';
    el.input.placeholder = state.dmTarget
      ? 'Private message to ' + state.dmTarget.name
      : room ? 'Message #' + room : 'Join a room to chat';
  }

  // ---------------------------------------------------------------- socket
  function send(obj) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try { ws.send(JSON.stringify(obj)); return true; } catch (_) { return false; }
  }

  function connect(evenOffline) {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    state.reconnectTimer = null;
    if (navigator.onLine === false && !evenOffline) { waitOffline(); return; }
    setConn(state.attempt === 0 && !state.currentRoom ? 'connecting' : 'reconnecting', 'Connecting…');
    let ws;
    try {
      ws = new WebSocket(wsUrl(), 'dynamowave.v1');
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    ws.onopen = () => { if (state.ws === ws) onOpen(); };
    ws.onmessage = (ev) => { if (state.ws === ws) onFrame(ev.data); };
    ws.onclose = () => { if (state.ws === ws) dropConnection('closed'); };
    ws.onerror = () => { /* onclose follows */ };
  }

  // Forget the current socket (without waiting for a close handshake that may never finish on a
  // dead network) and plan the next attempt.
  function dropConnection(why) {
    const ws = state.ws;
    state.ws = null;
    stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (_) { /* ignore */ }
    }
    state.connectionId = null;
    document.body.dataset.connectionId = '';
    renderOutbox();
    if (navigator.onLine === false) { waitOffline(); return; }
    scheduleReconnect(why);
  }

  // The browser says it is offline: wait for its `online` event, but also try now and then in
  // case it is wrong.
  function waitOffline() {
    setConn('offline');
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(() => { state.reconnectTimer = null; connect(true); }, BACKOFF_MAX_MS);
  }

  function scheduleReconnect() {
    if (state.reconnectTimer) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempt));
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    state.attempt += 1;
    state.reconnectAt = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000));
      setConn('reconnecting', left > 0 ? 'Disconnected — retrying in ' + left + ' s' : 'Reconnecting…');
    };
    tick();
    clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(tick, 1000);
    state.reconnectTimer = setTimeout(() => {
      clearInterval(state.countdownTimer);
      state.reconnectTimer = null;
      connect();
    }, delay);
  }

  function reconnectNow() {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = null;
    state.attempt = 0;
    clearInterval(state.countdownTimer);
    if (state.ws) {
      const ws = state.ws;
      state.ws = null;
      stopHeartbeat();
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (_) { /* ignore */ }
    }
    connect(true);
  }

  function onOpen() {
    setConn('online');
    renderOutbox();
    // Learn our own connection id (to mark ourselves in the member list).
    send({ action: 'whoami' });
    if (state.desiredName && !token) send({ action: 'setname', name: state.desiredName });
    if (state.wantRoom) {
      joinRoom(state.wantRoom, true);
    } else {
      send({ action: 'leave' });
    }
    send({ action: 'rooms' });
    // Retry whatever was never acknowledged; the server dedupes by id.
    for (const [id, p] of state.pending) resend(id, p);
    startHeartbeat();
  }

  function resend(id, p) {
    p.sentAt = Date.now();
    send({ action: 'sendmessage', room: p.room, message: p.text, id: id });
  }

  // A message still unacknowledged after a while (say, it was throttled) is sent again with the
  // same id: the server publishes it at most once.
  function retryStale() {
    const now = Date.now();
    for (const [id, p] of state.pending) if (now - (p.sentAt || 0) > 8000) resend(id, p);
  }

  function joinRoom(room, resume) {
    const r = state.rooms.get(room);
    const msg = { action: 'join', room: room };
    if (r && r.contig !== null && r.epoch) {
      msg.since = r.contig;
      msg.epoch = r.epoch;
    }
    state.wantRoom = room;
    if (!resume) state.dmTarget = null;
    send(msg);
  }

  // ---------------------------------------------------------------- heartbeat
  function startHeartbeat() {
    stopHeartbeat();
    state.pingTimer = setInterval(() => {
      if (!send({ action: 'ping' })) return;
      if (!state.pongTimer) {
        state.pongTimer = setTimeout(() => {
          state.pongTimer = null;
          dropConnection('heartbeat');
        }, PONG_TIMEOUT_MS);
      }
    }, PING_EVERY_MS);
  }
  function stopHeartbeat() {
    clearInterval(state.pingTimer);
    clearTimeout(state.pongTimer);
    state.pingTimer = state.pongTimer = null;
  }

  window.addEventListener('offline', () => { dropConnection('offline'); });
  window.addEventListener('online', () => { state.attempt = 0; if (!state.ws) reconnectNow(); });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.ws && state.ws.readyState === WebSocket.OPEN) {
      send({ action: 'ping' });
    }
  });

  // ---------------------------------------------------------------- incoming
  function onFrame(data) {
    let ev;
    try { ev = JSON.parse(data); } catch (_) { return; }
    if (!ev || typeof ev !== 'object') return;
    // Any frame proves the connection is alive.
    clearTimeout(state.pongTimer);
    state.pongTimer = null;
    switch (ev.type) {
      case 'message': onMessage(ev); break;
      case 'ack': onAck(ev); break;
      case 'joined': onJoined(ev); break;
      case 'left': onLeft(ev); break;
      case 'named': onNamed(ev); break;
      case 'presence': onPresence(ev); break;
      case 'members': onMembers(ev); break;
      case 'history': onHistory(ev); break;
      case 'private': onPrivate(ev); break;
      case 'privateack': onPrivateAck(ev); break;
      case 'pong': state.attempt = 0; retryStale(); break;
      case 'identity':
        if (typeof ev.connectionId === 'string') {
          state.connectionId = ev.connectionId;
          document.body.dataset.connectionId = ev.connectionId;
          renderMembers();
        }
        break;
      case 'rooms': onRooms(ev); break;
      case 'error': onError(ev); break;
      default: break;
    }
  }

  function validMsg(m) {
    return m && typeof m.room === 'string' && Number.isSafeInteger(m.seq) && m.seq > 0;
  }

  function advanceContig(r) {
    if (r.contig === null) return;
    while (r.msgs.has(r.contig + 1)) r.contig += 1;
  }

  // Store one message; returns true if it was new.
  function storeMessage(m) {
    const r = roomState(m.room);
    if (r.msgs.has(m.seq)) return false;
    // Discard what we already hold: a seq at or below our contiguous position.
    if (r.contig !== null && m.seq <= r.contig) return false;
    r.msgs.set(m.seq, m);
    if (m.seq > r.lastSeq) r.lastSeq = m.seq;
    advanceContig(r);
    return true;
  }

  function onMessage(m) {
    if (!validMsg(m)) return;
    if (!storeMessage(m)) return;
    if (m.id && state.pending.has(m.id) && m.from === state.myName) {
      state.pending.delete(m.id);
      renderOutbox();
    }
    if (m.room === state.currentRoom) insertMessage(m, true);
    bumpRoomList(m.room, m.seq);
  }

  function onAck(a) {
    if (a.id != null && state.pending.delete(String(a.id))) renderOutbox();
    state.attempt = 0;
  }

  function onJoined(j) {
    if (typeof j.room !== 'string') return;
    const r = roomState(j.room);
    const changed = state.currentRoom !== j.room;
    if (r.epoch && j.epoch && r.epoch !== j.epoch) {
      r.msgs.clear(); r.contig = null; r.lastSeq = 0;
    }
    r.epoch = j.epoch || r.epoch;
    const lastSeq = Number.isSafeInteger(j.lastSeq) ? j.lastSeq : 0;
    let needHistory = false;
    if (j.recovered === true) {
      // Everything up to lastSeq was replayed before this event.
      r.contig = Math.max(r.contig || 0, lastSeq);
      advanceContig(r);
    } else if (j.recovered === false) {
      r.msgs.clear();
      r.contig = lastSeq;
      r.lastSeq = lastSeq;
      needHistory = true;
      if (!changed) notice('Missed too much while away; reloaded recent history.');
    } else {
      // A plain join: what came before comes from history.
      if (r.contig === null || r.contig < lastSeq) {
        if (r.contig !== null && r.contig < lastSeq) r.msgs.clear();
        r.contig = lastSeq;
        needHistory = true;
      }
      advanceContig(r);
    }
    if (r.lastSeq < lastSeq) r.lastSeq = lastSeq;
    state.currentRoom = j.room;
    state.wantRoom = j.room;
    state.attempt = 0;
    if (needHistory) send({ action: 'history', room: j.room, limit: HISTORY_PAGE });
    if (changed) state.members.clear();
    send({ action: 'who', room: j.room });
    renderLog();
    renderMembers();
    renderRooms();
    updateComposer();
    bumpRoomList(j.room, lastSeq);
  }

  function onLeft(l) {
    if (state.currentRoom === l.room || !l.room) {
      state.currentRoom = null;
      state.wantRoom = null;
      state.members.clear();
      renderLog();
      renderMembers();
      renderRooms();
      updateComposer();
    }
  }

  function onNamed(n) {
    if (typeof n.name !== 'string') return;
    state.myName = n.name;
    el.myName.textContent = n.name;
    showFieldError(el.nameError, null);
    if (state.connectionId && state.members.has(state.connectionId)) {
      state.members.set(state.connectionId, n.name);
      renderMembers();
    }
  }

  function onPresence(p) {
    if (p.room !== state.currentRoom || typeof p.connectionId !== 'string') return;
    if (p.event === 'join') state.members.set(p.connectionId, String(p.name));
    else if (p.event === 'leave') state.members.delete(p.connectionId);
    renderMembers();
  }

  function onMembers(m) {
    if (m.room !== state.currentRoom || !Array.isArray(m.members)) return;
    state.members.clear();
    for (const x of m.members) {
      if (x && typeof x.connectionId === 'string') state.members.set(x.connectionId, String(x.name));
    }
    if (state.connectionId && state.members.has(state.connectionId) && !state.myName) {
      state.myName = state.members.get(state.connectionId);
      el.myName.textContent = state.myName;
    }
    renderMembers(m.truncated === true);
  }

  function onHistory(hv) {
    if (typeof hv.room !== 'string' || !Array.isArray(hv.messages)) return;
    const r = roomState(hv.room);
    for (const m of hv.messages) {
      if (!validMsg(m) || r.msgs.has(m.seq)) continue;
      r.msgs.set(m.seq, m);
      if (m.seq > r.lastSeq) r.lastSeq = m.seq;
    }
    advanceContig(r);
    r.more = hv.more === true;
    if (hv.room === state.currentRoom) renderLog();
  }

  function onPrivate(p) {
    appendPrivate({ incoming: true, who: String(p.from), text: String(p.text), ts: p.ts, cid: p.fromConnectionId });
  }

  function onPrivateAck(a) {
    const id = a.id != null ? String(a.id) : null;
    const p = id && state.privPending.get(id);
    if (!p) return;
    state.privPending.delete(id);
    appendPrivate({ incoming: false, who: p.to, text: p.text, ts: Date.now() });
  }

  function onRooms(r) {
    if (!Array.isArray(r.rooms)) return;
    state.roomList = r.rooms
      .filter((x) => x && typeof x.room === 'string')
      .map((x) => ({ room: x.room, lastSeq: Number(x.lastSeq) || 0 }));
    renderRooms();
  }

  function onError(e) {
    const code = String(e.code || 'error');
    const message = String(e.message || code);
    if (e.action === 'setname') {
      showFieldError(el.nameError, message);
      if (code === 'invalid_name' && state.desiredName && state.desiredName !== el.nameInput.value) {
        state.desiredName = null; saveName(null);
      }
      return;
    }
    if (e.action === 'join') {
      showFieldError(el.joinError, message);
      if (state.wantRoom !== state.currentRoom) state.wantRoom = state.currentRoom;
      return;
    }
    const id = e.id != null ? String(e.id) : null;
    if (id && state.pending.has(id)) {
      if (/rate|throttl|limit|busy|unavailable/.test(code)) {
        notice('Sending too fast (' + message + '); will retry.');
        setTimeout(() => {
          const p = state.pending.get(id);
          if (p) resend(id, p);
        }, 2000);
        return;
      }
      const p = state.pending.get(id);
      state.pending.delete(id);
      renderOutbox();
      notice('Not sent: ' + message);
      if (p && !el.input.value) el.input.value = p.text;
      return;
    }
    if (id && state.privPending.has(id)) state.privPending.delete(id);
    if (e.action === 'sendprivate' && !id) state.privPending.clear();
    notice(message);
  }

  // ---------------------------------------------------------------- rendering
  function messageNode(m) {
    const li = h('li', 'msg');
    li.dataset.seq = String(m.seq);
    if (m.from === state.myName) li.classList.add('mine');
    const meta = h('div', 'meta');
    meta.appendChild(h('span', 'from', m.from));
    meta.appendChild(fmtTime(m.ts));
    li.appendChild(meta);
    li.appendChild(h('div', 'text', m.text));
    return li;
  }

  function insertMessage(m, live) {
    const stick = nearBottom();
    const node = messageNode(m);
    let before = null;
    const items = el.log.children;
    for (let i = items.length - 1; i >= 0; i--) {
      const s = Number(items[i].dataset.seq);
      if (!items[i].dataset.seq) continue;
      if (s < m.seq) break;
      before = items[i];
    }
    el.log.insertBefore(node, before);
    el.empty.hidden = true;
    if (live && stick) scrollToBottom();
  }

  function renderLog() {
    el.log.replaceChildren();
    const room = state.currentRoom;
    if (room) {
      const r = roomState(room);
      const seqs = Array.from(r.msgs.keys()).sort((a, b) => a - b);
      const frag = document.createDocumentFragment();
      for (const s of seqs) frag.appendChild(messageNode(r.msgs.get(s)));
      el.log.appendChild(frag);
      el.older.hidden = !r.more;
      el.empty.hidden = seqs.length > 0;
      el.empty.textContent = 'No messages yet. Say hello!';
    } else {
      el.older.hidden = true;
      el.empty.hidden = false;
      el.empty.textContent = 'You are not in a room. Pick one from the list or join a new one.';
    }
    renderOutbox();
    scrollToBottom();
  }

  function renderOutbox() {
    el.outbox.replaceChildren();
    for (const [id, p] of state.pending) {
      if (p.room !== state.currentRoom) continue;
      const li = h('li', 'msg mine pending');
      li.dataset.id = id;
      const meta = h('div', 'meta');
      meta.appendChild(h('span', 'from', state.myName || 'you'));
      meta.appendChild(h('span', 'ts', state.conn === 'online' ? 'sending…' : 'waiting for connection…'));
      li.appendChild(meta);
      li.appendChild(h('div', 'text', p.text));
      el.outbox.appendChild(li);
    }
  }

  function appendPrivate(p) {
    const stick = nearBottom();
    const li = h('li', 'msg private' + (p.incoming ? '' : ' mine'));
    const meta = h('div', 'meta');
    meta.appendChild(h('span', 'badge', 'private'));
    meta.appendChild(h('span', 'from', p.incoming ? p.who + ' → you' : 'you → ' + p.who));
    meta.appendChild(fmtTime(p.ts));
    li.appendChild(meta);
    li.appendChild(h('div', 'text', p.text));
    if (p.incoming && p.cid) {
      const reply = h('button', 'linkish reply', 'Reply');
      reply.type = 'button';
      reply.setAttribute('aria-label', 'Reply privately to ' + p.who);
      reply.addEventListener('click', () => setDmTarget({ name: p.who, connectionId: p.cid }));
      meta.appendChild(reply);
    }
    // Private messages are not part of a room's sequence: keep them at the end of the log.
    li.dataset.private = '1';
    el.log.appendChild(li);
    el.empty.hidden = true;
    if (stick || !p.incoming) scrollToBottom();
  }

  function renderMembers(truncated) {
    el.memberList.replaceChildren();
    const list = Array.from(state.members, ([cid, name]) => ({ cid, name }))
      .sort((a, b) => a.name.localeCompare(b.name) || a.cid.localeCompare(b.cid));
    for (const m of list) {
      const li = h('li');
      const me = m.cid === state.connectionId;
      if (me) {
        const span = h('span', 'member me', m.name);
        span.appendChild(h('span', 'you', ' (you)'));
        li.appendChild(span);
      } else {
        const b = h('button', 'member', m.name);
        b.type = 'button';
        b.dataset.connectionId = m.cid;
        b.setAttribute('aria-label', 'Send a private message to ' + m.name);
        b.addEventListener('click', () => setDmTarget({ name: m.name, connectionId: m.cid }));
        li.appendChild(b);
      }
      el.memberList.appendChild(li);
    }
    if (truncated) el.memberList.appendChild(h('li', 'hint', 'and more…'));
    el.memberCount.textContent = list.length ? '(' + list.length + (truncated ? '+' : '') + ')' : '';
  }

  function bumpRoomList(room, seq) {
    const x = state.roomList.find((r) => r.room === room);
    if (x) { if (seq > x.lastSeq) x.lastSeq = seq; } else { state.roomList.push({ room, lastSeq: seq }); renderRooms(); }
  }

  function renderRooms() {
    el.roomList.replaceChildren();
    const names = new Set(state.roomList.map((r) => r.room));
    if (state.currentRoom) names.add(state.currentRoom);
    names.add('lobby');
    for (const room of Array.from(names).sort()) {
      const li = h('li');
      const b = h('button', 'room', '#' + room);
      b.type = 'button';
      b.dataset.room = room;
      if (room === state.currentRoom) {
        b.classList.add('current');
        b.setAttribute('aria-current', 'true');
      }
      b.setAttribute('aria-label', 'Join room ' + room);
      b.addEventListener('click', () => { requestJoin(room); closePanelOnMobile(); });
      li.appendChild(b);
      el.roomList.appendChild(li);
    }
  }

  // ---------------------------------------------------------------- actions
  function setDmTarget(t) {
    state.dmTarget = t;
    el.dmChip.hidden = !t;
    el.dmName.textContent = t ? t.name : '';
    updateComposer();
    closePanelOnMobile();
    el.input.focus();
  }

  function requestJoin(room) {
    showFieldError(el.joinError, null);
    if (!ROOM_RE.test(room)) {
      showFieldError(el.joinError, 'A room name is 1 to 64 of A-Z a-z 0-9 - _ . and does not start with “.”');
      return false;
    }
    if (state.conn !== 'online') {
      state.wantRoom = room;
      notice('Will join #' + room + ' once connected.');
      return true;
    }
    joinRoom(room, false);
    return true;
  }

  function requestName(name) {
    showFieldError(el.nameError, null);
    if (!name) { showFieldError(el.nameError, 'Type a name first.'); return; }
    state.desiredName = name;
    saveName(name);
    if (!send({ action: 'setname', name: name })) notice('Your name will be set once connected.');
  }

  function sendChat(text) {
    if (!state.currentRoom && !state.wantRoom) { notice('Join a room first.'); return false; }
    const id = newId();
    const p = { room: state.currentRoom || state.wantRoom, text: text, sentAt: 0 };
    state.pending.set(id, p);
    renderOutbox();
    scrollToBottom();
    resend(id, p);
    return true;
  }

  function sendPrivate(target, text) {
    if (state.conn !== 'online') { notice('Private messages need a connection; try again when connected.'); return false; }
    const id = newId();
    const msg = { action: 'sendprivate', message: text, id: id };
    if (target.connectionId) msg.connectionId = target.connectionId; else msg.to = target.name;
    state.privPending.set(id, { to: target.name, text: text });
    send(msg);
    return true;
  }

  // `/msg name text`: the name is the longest prefix of the words that names someone here, so
  // names with spaces work; otherwise the first word. A name may also be quoted: /msg "a b" hi
  function parseMsgCommand(rest) {
    rest = rest.replace(/^\s+/, '');
    const q = /^"([^"]+)"\s+([\s\S]+)$/.exec(rest);
    if (q) return { name: q[1], text: q[2] };
    const names = Array.from(new Set(state.members.values())).sort((a, b) => b.length - a.length);
    for (const n of names) {
      if (rest.startsWith(n + ' ') && rest.length > n.length + 1) return { name: n, text: rest.slice(n.length + 1) };
    }
    const m = /^(\S+)\s+([\s\S]+)$/.exec(rest);
    return m ? { name: m[1], text: m[2] } : null;
  }

  function submitComposer() {
    const raw = el.input.value;
    const text = raw.replace(/\s+$/, '');
    if (!text.trim()) return;
    let ok = false;
    const cmd = /^\/(\w+)(?:\s+([\s\S]*))?$/.exec(text);
    if (cmd && !text.startsWith('//')) {
      const arg = (cmd[2] || '').trim();
      switch (cmd[1].toLowerCase()) {
        case 'msg': case 'w': case 'whisper': {
          const p = parseMsgCommand(cmd[2] || '');
          if (!p) { notice('Usage: /msg name text'); return; }
          const byName = Array.from(state.members).find(([, n]) => n === p.name);
          ok = sendPrivate(byName && byName[0] !== state.connectionId ? { name: p.name, connectionId: byName[0] } : { name: p.name }, p.text);
          break;
        }
        case 'join': ok = arg ? requestJoin(arg.replace(/^#/, '')) : (notice('Usage: /join room'), false); break;
        case 'leave': ok = true; send({ action: 'leave' }); break;
        case 'nick': case 'name': ok = true; requestName(arg); break;
        case 'help': ok = true; notice('Commands: /msg name text, /join room, /leave, /nick name'); break;
        default: notice('Unknown command /' + cmd[1] + ' — try /help'); return;
      }
    } else if (state.dmTarget) {
      ok = sendPrivate(state.dmTarget, text);
    } else {
      ok = sendChat(text.startsWith('//') ? text.slice(1) : text);
    }
    if (ok) { el.input.value = ''; autoGrow(); }
  }

  function autoGrow() {
    el.input.style.height = 'auto';
    el.input.style.height = Math.min(el.input.scrollHeight, 160) + 'px';
  }

  function closePanelOnMobile() {
    if (el.panelToggle.getAttribute('aria-expanded') === 'true') togglePanel(false);
  }
  function togglePanel(open) {
    el.panelToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    el.sidebar.classList.toggle('open', open);
  }

  // ---------------------------------------------------------------- wiring
  el.composer.addEventListener('submit', (e) => { e.preventDefault(); submitComposer(); });
  el.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitComposer(); }
    if (e.key === 'Escape' && state.dmTarget) { e.preventDefault(); setDmTarget(null); }
  });
  el.input.addEventListener('input', autoGrow);
  el.nameForm.addEventListener('submit', (e) => { e.preventDefault(); requestName(el.nameInput.value.trim()); });
  el.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (requestJoin(el.joinInput.value.trim().replace(/^#/, ''))) { el.joinInput.value = ''; closePanelOnMobile(); }
  });
  el.leaveBtn.addEventListener('click', () => { send({ action: 'leave' }); });
  el.roomsRefresh.addEventListener('click', () => { send({ action: 'rooms' }); });
  el.older.addEventListener('click', () => {
    const r = state.currentRoom && roomState(state.currentRoom);
    if (!r) return;
    const seqs = Array.from(r.msgs.keys());
    const oldest = seqs.length ? Math.min.apply(null, seqs) : undefined;
    const q = { action: 'history', room: state.currentRoom, limit: HISTORY_PAGE };
    if (oldest !== undefined) q.before = oldest;
    send(q);
  });
  el.dmCancel.addEventListener('click', () => setDmTarget(null));
  el.reconnectNow.addEventListener('click', reconnectNow);
  el.panelToggle.addEventListener('click', () => togglePanel(el.panelToggle.getAttribute('aria-expanded') !== 'true'));
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') closePanelOnMobile(); });

  if (state.desiredName) el.nameInput.value = state.desiredName;
  renderRooms();
  renderLog();
  updateComposer();
  connect();

  // A read-only view for diagnostics and tests.
  window.dynamowave = {
    get state() {
      return {
        conn: state.conn, connectionId: state.connectionId, name: state.myName, room: state.currentRoom,
        pending: state.pending.size,
        lastSeq: state.currentRoom ? roomState(state.currentRoom).lastSeq : null,
      };
    },
  };
})();
