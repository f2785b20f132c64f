/**
 * The web chat: one self-contained page (no build step, no CDN: nothing leaves the company).
 * It streams answers from POST /api/chat/stream (a question, or "Another answer" for an answer id)
 * and sends votes to POST /api/feedback.
 */
export const CHAT_PAGE = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>teamllm</title>
<style>
  :root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#6b7385; --accent:#3657d6; --line:#e3e6ec; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.5 system-ui, "Noto Sans CJK SC", "PingFang SC", sans-serif; background:var(--bg); color:var(--ink); }
  header { display:flex; align-items:center; justify-content:space-between; padding:12px 20px; background:var(--card); border-bottom:1px solid var(--line); }
  header h1 { font-size:17px; margin:0; }
  header small { color:var(--muted); }
  main { max-width:820px; margin:0 auto; padding:16px 16px 120px; }
  .msg { margin:12px 0; padding:12px 14px; border-radius:10px; background:var(--card); border:1px solid var(--line); white-space:pre-wrap; word-wrap:break-word; }
  .msg.user { background:#e8edff; border-color:#d3dcff; margin-left:15%; }
  .msg.notice { color:var(--muted); }
  .msg.error { border-color:#e7a3a3; background:#fff4f4; }
  .meta { color:var(--muted); font-size:12px; margin-top:6px; white-space:normal; }
  .sources { margin-top:8px; font-size:13px; white-space:normal; }
  .sources details { border-top:1px dashed var(--line); padding:4px 0; }
  .sources summary { cursor:pointer; }
  .sources p { margin:4px 0 4px 16px; color:var(--muted); white-space:pre-wrap; }
  .sections { margin-top:8px; font-size:13px; white-space:normal; }
  .sections button { margin:2px 4px 2px 0; }
  .votes { margin-top:8px; display:flex; gap:6px; align-items:center; white-space:normal; }
  .votes button { border:1px solid var(--line); background:#fff; border-radius:16px; padding:2px 10px; cursor:pointer; font-size:15px; }
  .votes button.chosen { border-color:var(--accent); background:#e8edff; }
  .votes span { color:var(--muted); font-size:12px; }
  form { position:fixed; bottom:0; left:0; right:0; background:var(--card); border-top:1px solid var(--line); padding:12px; }
  form .row { max-width:820px; margin:0 auto; display:flex; gap:8px; }
  textarea { flex:1; resize:none; height:48px; padding:10px; font:inherit; border:1px solid var(--line); border-radius:8px; }
  button.send { padding:0 18px; border:0; border-radius:8px; background:var(--accent); color:#fff; font:inherit; cursor:pointer; }
  button.send:disabled { opacity:.5; }
  .link { background:none; border:0; color:var(--accent); cursor:pointer; font:inherit; }
</style>
</head>
<body>
<header><h1>teamllm <small>— your company's own assistant</small></h1><button class="link" id="new">New conversation</button></header>
<main id="log" aria-live="polite"></main>
<form id="ask"><div class="row">
  <textarea id="q" placeholder="Ask about the company… (Enter to send, Shift+Enter for a new line)" aria-label="Question"></textarea>
  <button class="send" id="send" type="submit">Ask</button>
</div></form>
<script>
(() => {
  const log = document.getElementById('log');
  const form = document.getElementById('ask');
  const input = document.getElementById('q');
  const send = document.getElementById('send');
  const rid = () => (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
  // Who asks is the server's to say (a signed session cookie, or the single sign-on proxy's user), not the page's.
  let conversation = sessionStorage.teamllmConversation || (sessionStorage.teamllmConversation = rid());
  document.getElementById('new').onclick = () => { conversation = sessionStorage.teamllmConversation = rid(); log.innerHTML = ''; input.focus(); };

  function bubble(kind, text) {
    const el = document.createElement('div');
    el.className = 'msg ' + kind;
    const body = document.createElement('div');
    body.className = 'text';
    body.textContent = text;
    el.appendChild(body);
    log.appendChild(el);
    el.scrollIntoView({ block: 'end' });
    return el;
  }

  function render(el, u) {
    el.className = 'msg bot' + (u.phase === 'error' ? ' error' : u.phase === 'notice' ? ' notice' : '');
    el.querySelector('.text').textContent = u.text;
    if (u.phase !== 'final') return;
    if (u.sources && u.sources.length) {
      const box = document.createElement('div');
      box.className = 'sources';
      box.innerHTML = '<b>Sources</b>';
      u.sources.forEach((s, i) => {
        const d = document.createElement('details');
        const sum = document.createElement('summary');
        sum.textContent = '[' + (i + 1) + '] ' + s.title + ' — ' + s.source;
        const p = document.createElement('p');
        p.textContent = s.text;
        d.append(sum, p);
        box.appendChild(d);
      });
      el.appendChild(box);
    }
    if (u.model) {
      const m = document.createElement('div');
      m.className = 'meta';
      m.textContent = u.modelKind === 'retrieval-only' ? 'Quoted from the knowledge base (no model trained yet)' : 'Answered by ' + u.model;
      el.appendChild(m);
    }
    if (u.answerId && u.near && u.near.length) el.appendChild(sections(u.answerId, u.near));
    if (u.answerId) el.appendChild(votes(u.answerId));
  }

  // After a "don't know": the closest sections, each a button. Pointing at the one that answers
  // gets the answer from it, and a 👍 on that teaches the bot these words for that section.
  function sections(answerId, near) {
    const box = document.createElement('div');
    box.className = 'sections';
    const label = document.createElement('span');
    label.textContent = 'Is the answer in one of these? ';
    box.appendChild(label);
    near.forEach((s) => {
      const b = document.createElement('button');
      b.type = 'button'; b.textContent = (s.title || s.source).split(' > ').pop(); b.title = 'Answer from ' + (s.title || s.source) + ' (' + s.source + ')';
      b.onclick = () => { box.querySelectorAll('button').forEach((x) => (x.disabled = true)); ask(null, null, { answer: answerId, source: s.source, title: s.title }); };
      box.appendChild(b);
    });
    return box;
  }

  function votes(answerId) {
    const row = document.createElement('div');
    row.className = 'votes';
    const status = document.createElement('span');
    const make = (label, value, title) => {
      const b = document.createElement('button');
      b.type = 'button'; b.textContent = label; b.title = title; b.dataset.vote = String(value);
      b.onclick = async () => {
        const again = b.classList.contains('chosen');
        const res = await fetch('/api/feedback', { method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ answerId, value: again ? 0 : value }) });
        if (!res.ok) { status.textContent = 'Could not record the vote'; return; }
        row.querySelectorAll('button').forEach((x) => x.classList.remove('chosen'));
        if (!again) b.classList.add('chosen');
        status.textContent = again ? 'Vote withdrawn' : 'Thanks for the feedback';
      };
      return b;
    };
    const another = document.createElement('button');
    another.type = 'button'; another.textContent = '↻ Another answer'; another.title = 'Answer the same question differently';
    another.onclick = () => { another.disabled = true; ask(null, answerId); };
    row.append(make('👍', 1, 'Helpful'), make('👎', -1, 'Not helpful'), another, status);
    return row;
  }

  async function ask(text, regenerate, fromSection) {
    if (text) bubble('user', text);
    const el = bubble('bot', '…');
    send.disabled = true;
    try {
      const res = await fetch('/api/chat/stream', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify(text ? { text, conversation, messageId: rid() } : fromSection ? { fromSection, conversation, messageId: rid() } : { regenerate, conversation, messageId: rid() }) });
      if (!res.ok || !res.body) {
        const err = await res.json().catch(() => ({}));
        render(el, { phase: 'error', text: 'Error: ' + (err.error || res.status) });
        return;
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf('\\n\\n')) >= 0) {
          const frame = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          const event = (frame.match(/^event: (.*)$/m) || [])[1];
          const data = frame.split('\\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\\n');
          if (!data) continue;
          const payload = JSON.parse(data);
          if (event === 'update') render(el, payload);
          else if (event === 'done' && payload.error) render(el, { phase: 'error', text: payload.answer || payload.error });
        }
      }
    } catch (e) {
      render(el, { phase: 'error', text: 'Connection lost: ' + e.message });
    } finally {
      send.disabled = false;
      input.focus();
    }
  }

  form.onsubmit = (e) => { e.preventDefault(); const t = input.value.trim(); if (!t) return; input.value = ''; ask(t); };
  input.onkeydown = (e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } };
  input.focus();
})();
</script>
</body>
</html>`;
