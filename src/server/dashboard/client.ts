// Dashboard script (served at /assets/dashboard.js). Plain ES2017, no framework. Data is written
// with textContent only (tags come from nodes and must never be parsed as HTML). The node table
// shows one server-side page (/api/nodes); the totals come from /api/stats?nodes=0.
export const PAGE_JS = String.raw`(function () {
  "use strict";
  var REFRESH_MS = 10000;
  var qs = new URLSearchParams(location.search);
  var state = { page: Math.max(1, parseInt(qs.get("page") || "1", 10) || 1), per: [25, 50, 100, 200].indexOf(parseInt(qs.get("per") || "", 10)) >= 0 ? parseInt(qs.get("per"), 10) : 50, tag: qs.get("tag") || "", pages: 1 };
  var loads = 0, timer = null, inflight = 0, seq = 0;
  function $(id) { return document.getElementById(id); }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }
  function uptime(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? d + "d " + h + "h " + m + "m" : h ? h + "h " + m + "m" : m + "m " + (s % 60) + "s";
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function getJSON(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error((j && j.error) || ("HTTP " + r.status));
        return j;
      });
    });
  }
  function renderStats(s) {
    $("c-online").textContent = fmt(s.active_nodes);
    $("c-total").textContent = fmt(s.total_nodes);
    $("c-trust").textContent = fmt(s.total_trust_links);
    $("c-requests").textContent = fmt(s.total_requests);
    $("c-tags").textContent = fmt(s.unique_tags);
    $("c-tasks").textContent = fmt(s.task_executors);
    $("uptime").textContent = uptime(s.uptime_secs);
    var tb = $("networks").tBodies[0];
    tb.textContent = "";
    (s.networks || []).forEach(function (n) {
      var tr = el("tr");
      tr.appendChild(el("td", "num-id", n.id));
      tr.appendChild(el("td", "", n.name));
      tr.appendChild(el("td", "num", fmt(n.members)));
      tr.appendChild(el("td", "num", fmt(n.online_members)));
      tb.appendChild(tr);
    });
    var dl = $("tag-list");
    dl.textContent = "";
    (s.top_tags || []).forEach(function (t) { var o = el("option"); o.value = t.tag; dl.appendChild(o); });
  }
  function renderNodes(p) {
    state.pages = p.pages;
    state.page = p.page;
    var tb = $("nodes").tBodies[0];
    tb.textContent = "";
    if (!p.nodes.length) {
      var tr0 = el("tr"), td0 = el("td", "empty", p.tag ? "No node has a tag matching \u201c" + p.tag + "\u201d." : "No nodes registered yet.");
      td0.colSpan = 6;
      tr0.appendChild(td0);
      tb.appendChild(tr0);
    }
    p.nodes.forEach(function (n) {
      var tr = el("tr");
      tr.appendChild(el("td", "addr", n.address));
      var st = el("td", "status");
      st.appendChild(el("span", n.online ? "dot on" : "dot"));
      st.appendChild(el("span", "st-text", n.online ? "online" : "offline"));
      tr.appendChild(st);
      tr.appendChild(el("td", "num", fmt(n.polo_score)));
      tr.appendChild(el("td", "num", fmt(n.trust_links)));
      var tg = el("td", "tags");
      (n.tags || []).forEach(function (t) {
        var b = el("button", "tag", "#" + t);
        b.type = "button";
        b.title = "Show nodes tagged " + t;
        b.addEventListener("click", function () { setFilter(t); });
        tg.appendChild(b);
      });
      tr.appendChild(tg);
      tr.appendChild(el("td", n.task_exec ? "task" : "muted", n.task_exec ? "executor" : "–"));
      tb.appendChild(tr);
    });
    $("nodes-count").textContent = p.tag ? "(" + fmt(p.total) + " matching)" : "(" + fmt(p.total) + ")";
    $("page-info").textContent = "Page " + fmt(p.page) + " of " + fmt(p.pages);
    $("prev").disabled = p.page <= 1;
    $("next").disabled = p.page >= p.pages;
  }
  function syncUrl() {
    var q = new URLSearchParams();
    if (state.tag) q.set("tag", state.tag);
    if (state.page > 1) q.set("page", String(state.page));
    if (state.per !== 50) q.set("per", String(state.per));
    var s = q.toString();
    history.replaceState(null, "", s ? "?" + s : location.pathname);
  }
  function load() {
    if (timer) { clearTimeout(timer); timer = null; }
    inflight++;
    var my = ++seq;
    document.body.setAttribute("data-state", "loading");
    var nodesUrl = "/api/nodes?page=" + state.page + "&per=" + state.per + (state.tag ? "&tag=" + encodeURIComponent(state.tag) : "");
    return Promise.all([getJSON("/api/stats?nodes=0"), getJSON(nodesUrl)]).then(function (r) {
      if (my !== seq) { inflight--; return; } // a newer load (filter, page) superseded this one
      renderStats(r[0]);
      if (r[1].page > r[1].pages && r[1].total > 0) { state.page = r[1].pages; inflight--; return load(); }
      renderNodes(r[1]);
      syncUrl();
      $("error").hidden = true;
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      inflight--;
      loads++;
      document.body.setAttribute("data-loads", String(loads));
      if (!inflight) document.body.setAttribute("data-state", "ready");
    }).catch(function (e) {
      inflight--;
      if (my !== seq) return;
      $("error").textContent = "Could not load data: " + e.message;
      $("error").hidden = false;
      document.body.setAttribute("data-state", "error");
    }).then(function () {
      if (my === seq && !timer) timer = setTimeout(load, REFRESH_MS);
    });
  }
  function setFilter(t) {
    state.tag = t.trim().replace(/^#/, "");
    $("tag-filter").value = state.tag;
    state.page = 1;
    load();
  }
  document.addEventListener("DOMContentLoaded", function () {
    $("tag-filter").value = state.tag;
    var per = $("per");
    per.value = String(state.per);
    $("filter").addEventListener("submit", function (e) { e.preventDefault(); setFilter($("tag-filter").value); });
    $("clear").addEventListener("click", function () { setFilter(""); });
    $("prev").addEventListener("click", function () { if (state.page > 1) { state.page--; load(); } });
    $("next").addEventListener("click", function () { if (state.page < state.pages) { state.page++; load(); } });
    per.addEventListener("change", function () { state.per = parseInt(per.value, 10); state.page = 1; load(); });
    load();
  });
})();
`;
