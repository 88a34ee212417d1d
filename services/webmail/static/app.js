// Postern webmail: a little progressive enhancement. Everything works without it.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // Select all
  const all = $("#select-all");
  if (all) all.addEventListener("change", () => $$("#rows input[name=uid]").forEach((b) => { b.checked = all.checked; }));

  // Confirmations
  $$("form.confirm").forEach((f) => f.addEventListener("submit", (e) => {
    if (!window.confirm(f.dataset.confirm || "Are you sure?")) e.preventDefault();
  }));

  // Phone layout: the folder list slides in
  const menu = $("#menu-toggle"), folders = $("#folders");
  if (menu && folders) menu.addEventListener("click", () => {
    const open = folders.classList.toggle("open");
    menu.setAttribute("aria-expanded", open ? "true" : "false");
  });

  // New mail without reload: the server IDLEs, we get an event, we fetch the rows
  const table = $("table.list");
  if (table && table.dataset.live === "1" && window.EventSource) {
    const folder = table.dataset.folder;
    const es = new EventSource("/events?f=" + encodeURIComponent(folder) + "&since=" + encodeURIComponent(table.dataset.since || ""));
    es.addEventListener("change", async () => {
      const u = new URL(window.location.href);
      u.searchParams.set("fragment", "rows");
      const resp = await fetch(u.toString(), { credentials: "same-origin" });
      if (!resp.ok) return;
      const checked = new Set($$("#rows input[name=uid]:checked").map((b) => b.value));
      $("#rows").innerHTML = await resp.text();
      $$("#rows input[name=uid]").forEach((b) => { b.checked = checked.has(b.value); });
      const unread = $$("#rows tr.unread").length;
      document.title = (unread ? "(" + unread + ") " : "") + folder + " · Postern";
    });
    es.addEventListener("ended", () => es.close());
  }

  // Keyboard shortcuts
  let cursor = -1;
  const rows = () => $$("#rows tr.row");
  const mark = (i) => {
    const list = rows();
    if (!list.length) return;
    cursor = Math.max(0, Math.min(i, list.length - 1));
    list.forEach((r, n) => r.classList.toggle("cursor", n === cursor));
    list[cursor].scrollIntoView({ block: "nearest" });
  };
  const click = (sel) => { const el = $(sel); if (el) el.click(); };
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
      if (e.key === "Escape") t.blur();
      return;
    }
    const row = rows()[cursor];
    switch (e.key) {
      case "j": mark(cursor + 1); break;
      case "k": mark(cursor - 1); break;
      case "o": case "Enter": if (row) { const a = $("td.subject a", row); if (a) a.click(); } break;
      case "x": if (row) { const b = $("input[name=uid]", row); if (b) b.checked = !b.checked; } break;
      case "u": click("#back-link"); break;
      case "c": click("#compose-link"); break;
      case "r": click("#reply-link"); break;
      case "a": click("#replyall-link"); break;
      case "f": click("#forward-link"); break;
      case "#": click("#delete-button"); break;
      case "!": click("#spam-button"); break;
      case "/": { const q = $("#q"); if (q) { e.preventDefault(); q.focus(); } break; }
      default: return;
    }
  });
})();
