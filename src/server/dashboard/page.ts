// The dashboard page served at `/`. Static markup only; the script (client.ts) fills it from
// /api/stats and /api/nodes. Assets are plain strings compiled into the binary: no CDN, no build.
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pilot Protocol — Rendezvous</title>
<link rel="stylesheet" href="/assets/dashboard.css">
<script src="/assets/dashboard.js" defer></script>
</head>
<body data-state="loading">
<header>
  <div class="brand"><span class="logo" aria-hidden="true">◈</span><h1>Pilot Protocol <span class="sub">rendezvous</span></h1></div>
  <div class="meta"><span>up <b id="uptime">–</b></span><span id="updated" class="muted">loading…</span></div>
</header>
<main>
  <p id="error" class="error" hidden></p>
  <section class="cards" aria-label="Totals">
    <div class="card"><div class="label">Online nodes</div><div class="value" id="c-online">–</div><div class="foot">of <span id="c-total">–</span> registered</div></div>
    <div class="card"><div class="label">Trust links</div><div class="value" id="c-trust">–</div></div>
    <div class="card"><div class="label">Requests</div><div class="value" id="c-requests">–</div></div>
    <div class="card"><div class="label">Tags</div><div class="value" id="c-tags">–</div></div>
    <div class="card"><div class="label">Task executors</div><div class="value" id="c-tasks">–</div></div>
  </section>
  <section>
    <h2>Networks</h2>
    <div class="scroll"><table id="networks">
      <thead><tr><th>ID</th><th>Name</th><th class="num">Members</th><th class="num">Online</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>
  <section>
    <div class="bar">
      <h2>Nodes <span class="muted" id="nodes-count"></span></h2>
      <form id="filter" class="filter" role="search">
        <input id="tag-filter" type="search" placeholder="Filter by tag" list="tag-list" maxlength="64" autocomplete="off" aria-label="Filter by tag">
        <datalist id="tag-list"></datalist>
        <button type="submit">Filter</button>
        <button type="button" id="clear" class="ghost">Clear</button>
      </form>
    </div>
    <div class="scroll"><table id="nodes">
      <thead><tr><th>Address</th><th>Status</th><th class="num">POLO</th><th class="num">Trust</th><th>Tags</th><th>Tasks</th></tr></thead>
      <tbody></tbody>
    </table></div>
    <nav class="pager" aria-label="Pages">
      <button type="button" id="prev">‹ Prev</button>
      <span id="page-info">–</span>
      <button type="button" id="next">Next ›</button>
      <label class="per">per page <select id="per"><option>25</option><option selected>50</option><option>100</option><option>200</option></select></label>
    </nav>
  </section>
</main>
<footer class="muted">Public view: addresses, tags, online status, POLO score, trust counts, task flag. No endpoints, keys, owners or hostnames. <a href="/api/stats">/api/stats</a></footer>
</body>
</html>
`;
