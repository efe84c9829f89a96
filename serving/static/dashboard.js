/* leadscore shared dashboard: KPIs, sales queue and model card from the API's JSON.
 * Data: GET /v1/dashboard/{kpis,model,queue} with X-API-Key (kept in sessionStorage).
 * Plain DOM building (textContent only: CRM values are never parsed as HTML).
 */
"use strict";

(function () {
  const C = window.LeadCharts;
  const KEY_STORAGE = "leadscore.apiKey";
  const state = { key: sessionStorage.getItem(KEY_STORAGE) || "", auth: "on", kpis: null, model: null, queue: null, lead: null };

  class AuthNeeded extends Error {}

  // ------------------------------------------------------------------ helpers
  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else if (key === "title") node.title = String(value);
      else if (key === "style") node.style.cssText = String(value); // CSSOM: allowed by the CSP
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const pct = (v, digits = 1) => (isNum(v) ? (v * 100).toFixed(digits) + " %" : "—");
  const int = (v) => (isNum(v) ? Math.round(v).toLocaleString("en") : "—");
  const days = (v) => (isNum(v) ? v.toFixed(0) + " d" : "—");
  const num = (v, digits = 3) => (isNum(v) ? v.toFixed(digits) : "—");
  let currency = "EUR";
  const money = (v) => {
    if (!isNum(v)) return "—";
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency, maximumFractionDigits: 0 }).format(v);
    } catch (e) {
      return v.toFixed(0) + " " + currency;
    }
  };

  function setStatus(text) {
    $("status").textContent = text;
  }

  // ---------------------------------------------------------------------- api
  async function api(path) {
    const headers = { Accept: "application/json" };
    if (state.key) headers["X-API-Key"] = state.key;
    const response = await fetch(path, { headers });
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      showAuth(body.detail || "This key cannot read the dashboard.");
      throw new AuthNeeded(path);
    }
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function showAuth(message) {
    $("auth").hidden = false;
    $("auth-error").textContent = message || "";
    $("api-key").focus();
  }

  function setupAuth() {
    $("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("api-key").value.trim();
      sessionStorage.setItem(KEY_STORAGE, state.key);
      $("auth").hidden = true;
      loadAll();
    });
  }

  // --------------------------------------------------------------------- KPIs
  const KPI_MEASURES = [
    { key: "conversion", label: "Lead → customer conversion", format: pct },
    { key: "accepted_share", label: "Accepted by sales", format: pct },
    { key: "cycle_days_median", label: "Sales cycle, median days", format: days },
    { key: "cycle_days_p75", label: "Sales cycle, 75th percentile days", format: days },
    { key: "cost_per_lead", label: "Cost per lead", format: (v) => money(v) },
    { key: "cost_per_accepted", label: "Cost per accepted lead", format: (v) => money(v) },
    { key: "cost_per_customer", label: "Cost per customer", format: (v) => money(v) },
    { key: "leads", label: "Leads", format: int },
    { key: "predicted_vs_actual", label: "Predicted vs actual conversion", format: pct },
  ];
  const GROUP_KEYS = { by_channel: "channel", by_campaign: "campaign_id", by_month: "month" };

  function groupRows(group) {
    const rows = (state.kpis && Array.isArray(state.kpis[group]) ? state.kpis[group] : []).filter(
      (r) => r && typeof r === "object"
    );
    const key = GROUP_KEYS[group];
    return {
      key,
      rows: rows.filter((r) => r[key] !== "all"),
      all: rows.find((r) => r[key] === "all") || null,
    };
  }

  function overall() {
    if (state.kpis && state.kpis.all && typeof state.kpis.all === "object") return state.kpis.all;
    for (const group of Object.keys(GROUP_KEYS)) {
      const found = groupRows(group).all;
      if (found) return found;
    }
    return null;
  }

  function renderKpiCards() {
    const box = $("kpi-cards");
    box.replaceChildren();
    const all = overall();
    if (!all) {
      box.appendChild(h("p", { class: "muted" }, "No KPI report yet (artifacts/kpis.json)."));
      return;
    }
    const cards = [
      ["Leads", int(all.leads)],
      ["Accepted by sales", pct(all.accepted_share)],
      ["Lead → customer", pct(all.conversion, 2)],
      ["Sales cycle (median)", days(all.cycle_days_median)],
      ["Cost per lead", money(all.cost_per_lead)],
      ["Cost per accepted lead", money(all.cost_per_accepted)],
      ["Cost per customer", money(all.cost_per_customer)],
    ];
    for (const [label, value] of cards) {
      box.appendChild(h("div", { class: "kpi" }, h("div", { class: "kpi-value" }, value), h("div", { class: "kpi-label" }, label)));
    }
  }

  function measureAvailable(measure, rows) {
    const unavailable = (state.kpis && state.kpis.unavailable) || {};
    if (measure.key === "predicted_vs_actual") {
      return rows.some((r) => isNum(r.predicted_conversion) && isNum(r.actual_conversion));
    }
    if (unavailable[measure.key]) return false;
    return rows.some((r) => isNum(r[measure.key]));
  }

  function fillMeasures() {
    const select = $("kpi-metric");
    const before = select.value;
    const { rows } = groupRows($("kpi-group").value);
    select.replaceChildren();
    for (const m of KPI_MEASURES) {
      if (measureAvailable(m, rows)) select.appendChild(h("option", { value: m.key }, m.label));
    }
    if ([...select.options].some((o) => o.value === before)) select.value = before;
  }

  function label(group, row) {
    if (group === "by_campaign") return row.name ? `${row.name}` : String(row.campaign_id);
    return String(row[GROUP_KEYS[group]]);
  }

  function renderKpiChart() {
    const group = $("kpi-group").value;
    const measure = KPI_MEASURES.find((m) => m.key === $("kpi-metric").value);
    const chart = $("kpi-chart");
    $("kpi-group-name").textContent = GROUP_KEYS[group] === "campaign_id" ? "campaign" : GROUP_KEYS[group];
    let { rows } = groupRows(group);
    const note = $("kpi-note");
    note.textContent = state.kpiNote || "";
    if (!measure || !rows.length) {
      C.empty(chart, state.kpis ? "This KPI is not available for this data." : "No KPI report yet.");
      return;
    }
    if (group === "by_month") {
      rows = rows.filter((r) => isNum(r.leads) && r.leads > 0);
      const months = rows.map((r) => String(r.month));
      const series =
        measure.key === "predicted_vs_actual"
          ? [
              { name: "predicted", points: rows.map((r, i) => ({ x: i, y: r.predicted_conversion })) },
              { name: "actual", points: rows.map((r, i) => ({ x: i, y: r.actual_conversion })) },
            ]
          : [{ name: measure.label, points: rows.map((r, i) => ({ x: i, y: r[measure.key] })) }];
      C.lineChart(chart, series, { xLabels: months, yFormat: measure.format, label: `${measure.label} by month` });
      note.textContent = [state.kpiNote, "Recent months look worse partly because their leads have had less time to be accepted or won."].filter(Boolean).join(" ");
      return;
    }
    if (group === "by_campaign") {
      rows = [...rows].sort((a, b) => (b.leads || 0) - (a.leads || 0)).slice(0, 20);
      note.textContent = [state.kpiNote, "The 20 campaigns with the most leads."].filter(Boolean).join(" ");
    }
    if (measure.key === "predicted_vs_actual") {
      C.columnChart(
        chart,
        rows.map((r) => ({
          label: label(group, r),
          values: [
            { name: "predicted", value: r.predicted_conversion },
            { name: "actual", value: r.actual_conversion },
          ],
        })),
        { yFormat: pct, label: "predicted vs actual conversion" }
      );
      return;
    }
    const data = rows
      .map((r) => ({ label: label(group, r), value: r[measure.key], extra: `${int(r.leads)} leads` }))
      .filter((d) => isNum(d.value))
      .sort((a, b) => b.value - a.value);
    C.barChart(chart, data, { format: measure.format, label: `${measure.label} by ${GROUP_KEYS[group]}` });
  }

  const KPI_COLUMNS = [
    ["leads", "Leads", int],
    ["accepted_share", "Accepted", pct],
    ["conversion", "Converted", (v) => pct(v, 2)],
    ["cycle_days_median", "Cycle median", days],
    ["cycle_days_p75", "Cycle p75", days],
    ["spend", "Spend", (v) => money(v)],
    ["cost_per_lead", "Per lead", (v) => money(v)],
    ["cost_per_accepted", "Per accepted", (v) => money(v)],
    ["cost_per_customer", "Per customer", (v) => money(v)],
    ["predicted_conversion", "Predicted conv.", (v) => pct(v, 2)],
    ["actual_conversion", "Actual conv.", (v) => pct(v, 2)],
  ];
  let kpiSort = { column: null, descending: true };

  function renderKpiTable() {
    const group = $("kpi-group").value;
    const { key, rows, all } = groupRows(group);
    const table = $("kpi-table");
    table.replaceChildren();
    const columns = KPI_COLUMNS.filter(([k]) => rows.some((r) => r[k] !== undefined));
    if (!rows.length) return;
    const headRow = h("tr", {}, h("th", {}, key === "campaign_id" ? "campaign" : key));
    for (const [k, title] of columns) {
      const th = h("th", { class: "num sortable", "data-column": k, title: "sort" }, title,
        kpiSort.column === k ? (kpiSort.descending ? " ▾" : " ▴") : "");
      th.addEventListener("click", () => {
        kpiSort = { column: k, descending: kpiSort.column === k ? !kpiSort.descending : true };
        renderKpiTable();
      });
      headRow.appendChild(th);
    }
    table.appendChild(h("thead", {}, headRow));
    let sorted = [...rows];
    if (kpiSort.column) {
      const k = kpiSort.column;
      sorted.sort((a, b) => {
        const x = isNum(a[k]) ? a[k] : -Infinity, y = isNum(b[k]) ? b[k] : -Infinity;
        return kpiSort.descending ? y - x : x - y;
      });
    }
    const body = h("tbody");
    const line = (r, cls) => {
      const tr = h("tr", { class: cls }, h("td", {}, group === "by_campaign" && r.name ? `${r.name} (${r.campaign_id})` : String(r[key])));
      for (const [k, , fmt] of columns) tr.appendChild(h("td", { class: "num" }, fmt(r[k])));
      return tr;
    };
    for (const r of sorted) body.appendChild(line(r));
    table.appendChild(body);
    if (all) table.appendChild(h("tfoot", {}, line(all, "total")));
  }

  function renderKpis() {
    currency = (state.kpis && state.kpis.currency) || "EUR";
    renderKpiCards();
    fillMeasures();
    renderKpiChart();
    renderKpiTable();
    renderGrid();
    renderForecast();
  }

  // Expected wins per month: the open leads' forecast, and the test period's beside the actual.
  function renderForecast() {
    const note = $("forecast-note");
    const table = $("forecast-table");
    table.replaceChildren();
    const forecast = state.kpis && state.kpis.forecast;
    if (!forecast) {
      C.empty($("forecast-open"), "No forecast: the model has no conversion-timing part.");
      C.empty($("forecast-backtest"), "No backtest.");
      note.textContent = "A forecast needs sales events with times (not a flat export) and timing.enabled.";
      return;
    }
    const open = Array.isArray(forecast.by_month) ? forecast.by_month : [];
    const back = Array.isArray(forecast.backtest_by_month) ? forecast.backtest_by_month : [];
    C.columnChart($("forecast-open"), open.map((r) => ({
      label: String(r.month), values: [{ name: "expected wins", value: r.expected_wins }],
    })), { yFormat: (v) => num(v, 1), label: "expected wins per month from the open leads" });
    C.columnChart($("forecast-backtest"), back.map((r) => ({
      label: String(r.month),
      values: [{ name: "forecast", value: r.expected_wins }, { name: "actual", value: r.actual_wins }],
    })), { yFormat: (v) => num(v, 0), label: "forecast vs actual wins per month on the test period" });
    const head = h("tr", {}, ["month", "expected wins", "expected revenue", "actual wins", "actual revenue"].map(
      (t, i) => h("th", { class: i ? "num" : "" }, t)));
    table.appendChild(h("thead", {}, head));
    const body = h("tbody");
    for (const [kind, rows] of [["open", open], ["backtest", back]]) {
      for (const r of rows) {
        body.appendChild(h("tr", { "data-kind": kind },
          h("td", {}, `${r.month}${kind === "backtest" ? " (test)" : ""}`),
          h("td", { class: "num" }, num(r.expected_wins, 1)),
          h("td", { class: "num" }, money(r.expected_revenue)),
          h("td", { class: "num" }, kind === "backtest" ? int(r.actual_wins) : "—"),
          h("td", { class: "num" }, kind === "backtest" ? money(r.actual_revenue) : "—")));
      }
    }
    table.appendChild(body);
    const sum = (rows, key) => rows.reduce((a, r) => a + (isNum(r[key]) ? r[key] : 0), 0);
    note.textContent = `${int(forecast.open_leads)} open leads: ${num(sum(open, "expected_wins"), 1)} expected wins, ` +
      `${money(sum(open, "expected_revenue"))}. Test period: ${num(sum(back, "expected_wins"), 1)} forecast vs ` +
      `${int(sum(back, "actual_wins"))} actual wins.`;
  }

  // A heat map: each cell's shade follows its observed rate against the highest cell's.
  function renderGrid() {
    const table = $("grid-map");
    const note = $("grid-note");
    table.replaceChildren();
    const grid = state.kpis && state.kpis.grid;
    if (!grid || !grid.available) {
      note.textContent = (grid && grid.reason) || "No grid in the KPI report yet (re-run the evaluate stage).";
      return;
    }
    const cells = new Map((grid.cells || []).map((c) => [c.cell, c]));
    const rates = (grid.cells || []).filter((c) => isNum(c.rate) && c.scores > 0).map((c) => c.rate);
    const top = rates.length ? Math.max(...rates) : 0;
    const head = h("tr", {}, h("th", {}, "fit ↓ · engagement →"));
    for (const digit of grid.engagement) head.appendChild(h("th", { class: "num" }, digit));
    table.appendChild(h("thead", {}, head));
    const body = h("tbody");
    for (const letter of grid.fit) {
      const tr = h("tr", {}, h("th", {}, letter));
      for (const digit of grid.engagement) {
        const cell = cells.get(`${letter}${digit}`) || { scores: 0, leads: 0, rate: null };
        const share = top > 0 && isNum(cell.rate) ? cell.rate / top : 0;
        tr.appendChild(
          h("td", {
            class: "num grid-cell", "data-cell": `${letter}${digit}`, "data-scores": String(cell.scores),
            style: `background: rgba(22, 101, 52, ${(0.08 + 0.72 * share).toFixed(3)}); color: ${share > 0.55 ? "#fff" : "inherit"}`,
            title: `${letter}${digit}: ${int(cell.scores)} scores of ${int(cell.leads)} leads, ${pct(cell.rate, 1)} reached ${grid.target} (predicted ${pct(cell.predicted, 1)})`,
          },
          h("div", { class: "grid-rate" }, cell.scores ? pct(cell.rate, 1) : "—"),
          h("div", { class: "small" }, `${int(cell.scores)} score${cell.scores === 1 ? "" : "s"}`))
        );
      }
      body.appendChild(tr);
    }
    table.appendChild(body);
    note.textContent = `${int(grid.scores)} test scores of ${int(grid.leads)} leads (each lead at every age it was scored); rate: share that reached '${grid.target}' within the window.`;
  }

  // -------------------------------------------------------------------- queue
  function reasonList(items, cls) {
    const list = h("ul", { class: `reasons ${cls}` });
    for (const item of Array.isArray(items) ? items : []) {
      const text = typeof item === "string" ? item : item && item.text;
      if (text) list.appendChild(h("li", {}, text));
    }
    return list;
  }

  function gradeBadge(grade) {
    return h("span", { class: `grade grade-${String(grade || "D").toLowerCase()}` }, grade || "—");
  }

  const queueState = { view: "new", sort: "rank", order: "asc" };
  const SORT_COLUMNS = [
    ["rank", "#", "num"], ["last_name", "Lead", ""], ["owner_id", "Owner", ""], ["channel", "Source", ""],
    ["score", null, ""], ["grade", "Grade", ""], ["grid", "Fit × eng.", ""], ["priority", "Priority", "num"],
    ["last_stage", "Status", ""],
  ];

  function fullName(row) {
    const name = [row.first_name, row.last_name].filter(Boolean).join(" ");
    return name || row.lead_id;
  }

  function fillSelect(select, values, labelOf) {
    const current = select.value;
    const first = select.options[0];
    select.replaceChildren(first);
    for (const value of values) {
      const v = typeof value === "object" ? value.id : value;
      select.appendChild(h("option", { value: v }, labelOf ? labelOf(value) : v));
    }
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }

  function queueParams() {
    const query = new URLSearchParams({ view: queueState.view, sort: queueState.sort, order: queueState.order });
    const search = $("queue-search").value.trim();
    if (search) query.set("q", search);
    const pairs = [["owner", "owner-filter"], ["channel", "channel-filter"], ["campaign", "campaign-filter"],
      ["created_from", "created-from"], ["created_to", "created-to"], ["capacity", "capacity"]];
    for (const [name, id] of pairs) if ($(id).value) query.set(name, $(id).value);
    const grades = [...document.querySelectorAll('input[name="grade"]:checked')].map((i) => i.value);
    if (grades.length) query.set("grade", grades.join(","));
    return query;
  }

  const TRENDS = { improving: ["▲", "up", "score improving"], declining: ["▼", "down", "score declining"], steady: ["▶", "steady", "score steady"] };

  function trendMark(trend) {
    const mark = TRENDS[trend];
    if (!mark) return null;
    return h("span", { class: `trend trend-${mark[1]}`, title: mark[2], "data-trend": trend }, ` ${mark[0]}`);
  }

  function statusCell(row) {
    const parts = [];
    if (row.verdict) parts.push(h("span", { class: `verdict verdict-${row.verdict}` }, row.verdict));
    else if (row.last_stage) parts.push(h("span", { class: "stage" }, row.last_stage));
    else parts.push(h("span", { class: "muted" }, "new"));
    if (row.verdict_reason) parts.push(h("div", { class: "small muted" }, row.verdict_reason));
    return parts;
  }

  function renderQueue() {
    const data = state.queue;
    const table = $("queue-table");
    table.replaceChildren();
    if (!data || !data.available) {
      $("queue-count").textContent = "";
      table.appendChild(h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, (data && data.reason) || "No queue yet (leadscore queue)."))));
      return;
    }
    const primary = data.primary_target || "converted";
    const pKey = `p_${primary}`;
    const owners = $("owner-filter");
    if (owners.options.length < 2) owners.appendChild(h("option", { value: "(none)" }, "unassigned"));
    const unassigned = owners.options[1];
    fillSelect(owners, data.owners || []);
    owners.insertBefore(unassigned, owners.options[1] || null);
    fillSelect($("channel-filter"), data.channels || []);
    fillSelect($("campaign-filter"), data.campaigns || [], (c) => (c.name ? `${c.name} (${c.id})` : c.id));
    $("queue-count").textContent = `${int(data.total)} lead${data.total === 1 ? "" : "s"} in this view of ${int(data.queued)} queued` +
      `${data.total > data.rows.length ? `, first ${data.rows.length} shown` : ""}`;
    const rankedBy = (data.ranked_by || []).map((m) => `${m.name} version ${m.version}`).join(", ");
    $("queue-model").textContent = rankedBy ? `Ranked by ${rankedBy}` : "Ranking model not recorded (re-run the queue stage)";
    const head = h("tr", {});
    for (const [key, title, cls] of SORT_COLUMNS) {
      const label = title || `P(${primary})`;
      const active = queueState.sort === key;
      const th = h("th", { class: `sortable ${cls}`, "data-sort": key, "aria-sort": active ? (queueState.order === "asc" ? "ascending" : "descending") : "none", tabindex: "0" },
        label, active ? (queueState.order === "asc" ? " ▴" : " ▾") : "");
      const sortBy = () => {
        queueState.order = active ? (queueState.order === "asc" ? "desc" : "asc") : key === "score" || key === "priority" ? "desc" : "asc";
        queueState.sort = key;
        queueLimit = QUEUE_PAGE;
        reloadQueue();
      };
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(); });
      head.appendChild(th);
    }
    head.append(h("th", {}, "Why higher"), h("th", {}, "Why lower"));
    table.appendChild(h("thead", {}, head));
    const body = h("tbody");
    for (const row of data.rows) {
      const p = row[pKey];
      const link = h("a", { href: `#lead/${encodeURIComponent(row.lead_id)}`, class: "lead-link" }, fullName(row));
      body.appendChild(
        h("tr", { "data-p": isNum(p) ? p : "", "data-owner": row.owner_id || "", "data-lead": row.lead_id },
          h("td", { class: "num muted", "data-label": "#" }, String(row.rank)),
          h("td", { "data-label": "Lead" }, h("strong", {}, link),
            h("div", { class: "small" }, [row.job_title, row.company_name].filter(Boolean).join(" · ") || null),
            h("div", { class: "small muted" }, row.lead_id)),
          h("td", { "data-label": "Owner" }, row.owner_id || h("span", { class: "muted" }, "unassigned")),
          h("td", { "data-label": "Source" }, row.channel || "—", row.campaign_name ? h("div", { class: "small muted" }, row.campaign_name) : null),
          h("td", { class: "pcell", "data-label": `P(${primary})` },
            h("div", { class: "pbar" }, h("span", { style: `width:${isNum(p) ? Math.round(p * 100) : 0}%` })),
            h("span", { class: "small" }, pct(p)), isNum(row.score) ? h("span", { class: "small muted" }, ` · score ${row.score}`) : null,
            trendMark(row.trend)),
          h("td", { "data-label": "Grade" }, gradeBadge(row.grade), row.handoff ? h("span", { class: "handoff", title: "hand to sales" }, " ✓") : null),
          h("td", { "data-label": "Fit × eng.", class: "grid-of-lead" }, row.grid ? h("strong", { title: `fit ${row.fit_score} / 100, engagement ${row.engagement_score} / 100` }, row.grid) : "—",
            isNum(row.fit_score) ? h("div", { class: "small muted" }, `fit ${row.fit_score} · eng. ${isNum(row.engagement_score) ? row.engagement_score : "—"}`) : null),
          h("td", { class: "num", "data-label": "Priority", title: "percentile among the open leads queued: 100 = the best of them" }, isNum(row.priority) ? `${row.priority}` : "—"),
          h("td", { "data-label": "Status" }, statusCell(row)),
          h("td", { "data-label": "Why higher" }, reasonList(row.reasons_positive, "up")),
          h("td", { "data-label": "Why lower" }, reasonList(row.reasons_negative, "down"))
        )
      );
    }
    if (!data.rows.length) body.appendChild(h("tr", {}, h("td", { class: "muted", colspan: "11" }, "No lead matches.")));
    table.appendChild(body);
    $("queue-more").hidden = !(data.total > data.rows.length);
  }

  const QUEUE_PAGE = 100;
  let queueLimit = QUEUE_PAGE;

  let queueRequest = 0;

  async function loadQueue() {
    const query = queueParams();
    query.set("limit", String(queueLimit));
    const mine = ++queueRequest;
    const answer = await api(`/v1/dashboard/queue?${query}`);
    if (mine !== queueRequest) return; // a later filter or sort was asked meanwhile: it wins
    state.queue = answer;
    renderQueue();
  }

  function reloadQueue() {
    return loadQueue().catch((e) => { if (!(e instanceof AuthNeeded)) setStatus(e.message); });
  }

  async function exportQueue() {
    const headers = {};
    if (state.key) headers["X-API-Key"] = state.key;
    const response = await fetch(`/v1/dashboard/queue.csv?${queueParams()}`, { headers });
    if (!response.ok) { setStatus(`export failed: HTTP ${response.status}`); return; }
    const url = URL.createObjectURL(await response.blob());
    const a = h("a", { href: url, download: `leads-${queueState.view}.csv` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    setStatus(`exported ${int(state.queue && state.queue.total)} leads`);
  }

  // ---------------------------------------------------------------- lead page
  let feedbackReasons = { rejected: [], accepted: [] };

  function fillReasons() {
    const verdict = (document.querySelector('input[name="verdict"]:checked') || {}).value;
    const reasons = feedbackReasons[verdict] || [];
    const select = $("feedback-reason");
    select.replaceChildren(...(verdict === "accepted" ? [h("option", { value: "" }, "(none)")] : []),
      ...reasons.map((r) => h("option", { value: r }, r)));
    $("feedback-reason-label").hidden = !reasons.length;
  }

  // When and how much (the timing model), and which model scored the lead.
  function whenText(row) {
    const parts = [];
    if (row.expected_conversion_date) parts.push(`expected to convert by ${row.expected_conversion_date}`);
    else if (Object.keys(row).some((k) => k.startsWith("p_converted_by_"))) parts.push("under 50 % to convert within the forecast horizon");
    if (isNum(row.expected_value)) parts.push(`expected value ${money(row.expected_value)}`);
    parts.push(row.segment && row.segment !== "pooled" ? `scored by the ${row.segment} model` : "scored by the pooled model");
    return parts.join(" · ");
  }

  function renderLead(page) {
    const lead = page.lead || {};
    const row = page.queue || {};
    const head = $("lead-head");
    const contact = [];
    if (lead.email) contact.push(h("a", { href: `mailto:${lead.email}` }, lead.email));
    if (lead.phone) contact.push(h("a", { href: `tel:${String(lead.phone).replace(/[^+0-9]/g, "")}` }, lead.phone));
    head.replaceChildren(
      h("div", {}, h("h2", { id: "lead-name" }, fullName({ ...lead, lead_id: page.lead_id })),
        h("div", {}, [lead.job_title, lead.company_name].filter(Boolean).join(" · ")),
        h("div", { class: "small contact" }, contact.map((c, i) => [i ? " · " : "", c])),
        h("div", { class: "small muted" }, `${page.lead_id}${row.owner_id ? ` · owner ${row.owner_id}` : ""}${row.channel ? ` · ${row.channel}` : ""}${row.campaign_name ? ` · ${row.campaign_name}` : ""}`)),
      page.queue
        ? h("div", { class: "lead-score" }, gradeBadge(row.grade), h("div", { class: "kpi-value" }, isNum(row.score) ? String(row.score) : "—"),
          h("div", { class: "small muted" }, `rank ${row.rank}`), h("div", { class: "small" }, statusCell(row)),
          h("div", { class: "small", id: "lead-when", "data-testid": "lead-when" }, whenText(row)))
        : h("div", { class: "muted small" }, "not in the queue (closed, or not scored yet)")
    );
    const history = (page.scores || []).slice().reverse();
    const box = $("lead-history");
    if (history.length > 1) {
      C.lineChart(box, [{ name: "score", points: history.map((s, i) => ({ x: i, y: s.score, label: `${s.score} (${s.grade}) ${s.scored_at}` })) }],
        { height: 180, xLabels: history.map((s) => String(s.scored_at).slice(0, 10)), yMax: 100, yFormat: (v) => String(Math.round(v)), label: "score history" });
    } else {
      box.replaceChildren(h("p", { class: "muted small" }, history.length ? `Scored once: ${history[0].score} (${history[0].grade}).` : "No stored scores yet."));
    }
    $("lead-up").replaceChildren(reasonList(row.reasons_positive, "up"));
    $("lead-down").replaceChildren(reasonList(row.reasons_negative, "down"));
    feedbackReasons = page.feedback_reasons || feedbackReasons;
    fillReasons();
    $("feedback-status").textContent = "";
    const items = (page.timeline || []).map((e) =>
      h("li", { class: `event event-${e.kind}` },
        h("time", { datetime: e.at }, e.at ? new Date(e.at).toLocaleString("en-GB") : "—"),
        h("span", { class: "kind" }, e.kind), h("strong", {}, e.what), e.detail ? h("span", { class: "muted" }, ` — ${e.detail}`) : null));
    $("lead-timeline").replaceChildren(...(items.length ? items : [h("li", { class: "muted" }, "No events.")]));
  }

  async function openLead(leadId) {
    state.lead = leadId;
    document.querySelector("main").classList.add("on-lead");
    $("lead").hidden = false;
    $("lead-head").replaceChildren(h("p", { class: "muted" }, "loading…"));
    try {
      renderLead(await api(`/v1/dashboard/leads/${encodeURIComponent(leadId)}`));
      document.body.dataset.lead = leadId;
    } catch (error) {
      if (!(error instanceof AuthNeeded)) $("lead-head").replaceChildren(h("p", { class: "error" }, `Lead ${leadId}: ${error.message}`));
    }
    window.scrollTo(0, 0);
  }

  function closeLead() {
    state.lead = null;
    delete document.body.dataset.lead;
    document.querySelector("main").classList.remove("on-lead");
    $("lead").hidden = true;
  }

  async function sendFeedback(event) {
    event.preventDefault();
    const verdict = (document.querySelector('input[name="verdict"]:checked') || {}).value;
    const body = { verdict };
    const reason = $("feedback-reason").value;
    if (reason && !$("feedback-reason-label").hidden) body.reason = reason;
    const note = $("feedback-note").value.trim();
    if (note) body.note = note;
    const actor = $("feedback-actor").value.trim();
    if (actor) body.actor = actor;
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (state.key) headers["X-API-Key"] = state.key;
    const status = $("feedback-status");
    status.textContent = "saving…";
    const response = await fetch(`/v1/leads/${encodeURIComponent(state.lead)}/feedback`, { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = Array.isArray(answer.detail) ? answer.detail.map((d) => d.msg).join("; ") : answer.detail;
      status.textContent = `not saved: ${detail || `HTTP ${response.status}`}`;
      status.className = "small error";
      return;
    }
    status.className = "small ok";
    $("feedback-note").value = "";
    await openLead(state.lead);
    status.textContent = `saved: ${answer.verdict}${answer.reason ? ` (${answer.reason})` : ""}`;
    status.className = "small ok";
    document.body.dataset.feedback = answer.verdict;
    reloadQueue();
  }

  function route() {
    const match = /^#lead\/(.+)$/.exec(location.hash);
    if (match) openLead(decodeURIComponent(match[1]));
    else if (state.lead) closeLead();
  }

  // -------------------------------------------------------------------- model
  const METRIC_ROWS = [
    ["roc_auc", "ROC AUC", true],
    ["pr_auc", "PR AUC (average precision)", true],
    ["lift_top_decile", "Lift in the top 10 %", true],
    ["capture_top_10", "Converters found in top 10 %", true],
    ["capture_top_20", "… in top 20 %", true],
    ["capture_top_30", "… in top 30 %", true],
    ["brier", "Brier score", false],
    ["log_loss", "Log loss", false],
    ["ece", "Calibration error (ECE)", false],
  ];
  const MODEL_NAMES = { model: "this model", rules: "points score (today)", logistic: "logistic regression", truth: "simulator truth" };

  function metricsDoc() {
    const m = state.model;
    if (!m) return null;
    if (m.model && m.model.metrics) return m.model.metrics;
    return m.metrics || null;
  }

  function renderMetrics() {
    const metrics = metricsDoc();
    const table = $("metrics-table");
    table.replaceChildren();
    const select = $("metric-target");
    const target = select.value;
    if (!metrics || !target || !metrics[target]) {
      table.appendChild(h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, "No test metrics yet (artifacts/metrics.json)."))));
      return;
    }
    const entry = metrics[target];
    const models = ["model", "rules", "logistic", "truth"].filter((k) => entry[k] && typeof entry[k] === "object");
    table.appendChild(h("thead", {}, h("tr", {}, h("th", {}, "metric"), models.map((k) => h("th", { class: "num" }, MODEL_NAMES[k] || k)))));
    const body = h("tbody");
    for (const [key, title, higher] of METRIC_ROWS) {
      const values = models.map((k) => entry[k][key]);
      if (!values.some(isNum)) continue;
      const compared = models.map((k, i) => (k === "truth" ? null : values[i])).filter(isNum);
      const best = compared.length ? (higher ? Math.max(...compared) : Math.min(...compared)) : null;
      body.appendChild(h("tr", {}, h("td", {}, title),
        models.map((k, i) => h("td", { class: `num${k !== "truth" && values[i] === best ? " best" : ""}` }, num(values[i])))));
    }
    table.appendChild(body);
    const n = entry.n_test, pos = entry.positives_test;
    $("metrics-source").textContent = `${isNum(n) ? int(n) + " labelled test snapshots" : ""}${isNum(pos) ? `, ${int(pos)} positive` : ""}. ` +
      `Source: ${(state.model.model && state.model.model.metrics_source) || "artifacts/metrics.json"}. Best of model and baselines in bold.`;
  }

  function renderModel() {
    const data = state.model || {};
    const doc = data.model;
    const facts = $("model-facts");
    facts.replaceChildren();
    const badge = $("model-badge");
    if (doc) {
      const info = doc.model || {};
      badge.textContent = `${info.name} · version ${String(info.version).slice(0, 12)}`;
      badge.className = "badge";
      $("definition").textContent = (doc.definition && doc.definition.text) || "";
      const pairs = [
        ["Name", info.name], ["Version", info.version], ["Source", `${info.source} (${info.uri})`],
        ["Loaded", info.loaded_at], ["Primary target", doc.primary_target],
        ["Targets", (doc.targets || []).join(", ")],
        ["Outcome window", doc.definition ? `${doc.definition.window_days} days` : "—"],
        ["Features", String((doc.features || []).length)],
      ];
      for (const [k, v] of pairs) facts.append(h("dt", {}, k), h("dd", {}, v === undefined || v === null ? "—" : String(v)));
    } else {
      badge.textContent = "no model loaded";
      badge.className = "badge warn";
      facts.append(h("dt", {}, "Model"), h("dd", {}, data.model_reason || "not loaded"));
    }
    // target selector
    const metrics = metricsDoc();
    const select = $("metric-target");
    const targets = metrics ? Object.keys(metrics).filter((k) => metrics[k] && typeof metrics[k] === "object" && metrics[k].model) : [];
    const primary = (doc && doc.primary_target) || (metrics && metrics.primary_target) || targets[0];
    select.replaceChildren(...targets.map((t) => h("option", { value: t }, t)));
    if (primary && targets.includes(primary)) select.value = primary;
    renderMetrics();
    // calibration
    const calibration = (data.plots && data.plots.calibration) || {};
    const series = Object.entries(calibration).map(([name, rows]) => ({
      name: MODEL_NAMES[name] || name,
      dashed: name !== "model",
      points: (rows || []).map((r) => ({
        x: r.mean_predicted, y: r.observed,
        r: isNum(r.count) ? Math.max(2.5, Math.min(9, Math.sqrt(r.count) / 3)) : 3.5,
        label: `${int(r.count)} snapshots, predicted ${pct(r.mean_predicted)}`,
      })),
    }));
    series.sort((a, b) => (a.dashed === b.dashed ? 0 : a.dashed ? 1 : -1));
    C.lineChart($("calibration-chart"), series, {
      xMin: 0, xMax: 1, yMax: 1, diagonal: true, xFormat: (v) => pct(v, 0), yFormat: (v) => pct(v, 0),
      xLabel: "predicted probability", yLabel: "observed rate", label: "calibration", emptyText: "No calibration data yet (artifacts/plots).",
    });
    // features
    const fields = (doc && doc.top_fields) || [];
    C.barChart($("features-chart"), fields.map((f) => ({ label: f.field, value: f.share })), {
      format: (v) => pct(v, 0), label: "top features", emptyText: "No model loaded.",
    });
    // grades
    const grades = (data.plots && data.plots.grades) || [];
    C.columnChart($("grades-chart"), grades.map((g) => ({
      label: `${g.grade} (${pct(g.share, 0)})`,
      values: [{ name: "predicted", value: g.mean_predicted }, { name: "observed", value: g.observed }],
    })), { yFormat: (v) => pct(v, 0), label: "grades", emptyText: "No grade table yet (artifacts/plots/grades.csv)." });
    // exclusions
    const exclusions = (doc && doc.post_outcome_exclusions) || [];
    $("exclusions").replaceChildren(...(exclusions.length ? exclusions.map((e) => h("li", {}, h("code", {}, e))) : [h("li", { class: "muted" }, "none")]));
    renderLeakage(data.leakage || {}, metricsDoc());
    $("model-card-text").textContent = data.card || data.reports_note || "No model card yet (artifacts/model_card.md).";
    let note = $("reports-note");
    if (!note) {
      note = h("p", { id: "reports-note", class: "warn small" });
      $("model").querySelector(".section-title").after(note);
    }
    note.textContent = data.reports_note || "";
    note.hidden = !data.reports_note;
  }

  // The leakage guard: which columns were flagged and why, and the top columns' figures. Its
  // box is added under the exclusions (the page template has no slot for it).
  function renderLeakage(guards, metrics) {
    let box = $("leakage");
    if (!box) {
      box = h("div", { id: "leakage" });
      $("exclusions").after(h("h3", {}, "Leakage check"), box);
    }
    const targets = Object.keys(guards);
    const suspected = metrics && metrics.leakage_suspected;
    const flagged = [];
    for (const t of targets) {
      for (const c of guards[t].columns || []) {
        if (c.flagged) flagged.push(h("li", {}, h("code", {}, c.column), ` (${t}): ${(c.reasons || []).join("; ")}`));
      }
    }
    const parts = [];
    if (!targets.length) {
      parts.push(h("p", { class: "muted small" }, "No per-column leakage figures for this model."));
    } else if (flagged.length) {
      parts.push(h("p", { class: "warn" }, h("strong", {}, "Leakage suspected: "),
        "these columns predict the outcome too well; check whether sales fills them after talking to the lead."));
      parts.push(h("ul", { class: "flagged" }, flagged));
    } else {
      parts.push(h("p", { class: suspected ? "warn" : "muted small" },
        suspected ? "Leakage suspected: a test ROC AUC is above the threshold, though no single column is flagged."
          : "No column flagged."));
    }
    const first = targets[0] && guards[targets[0]];
    for (const t of targets) {
      const rows = (guards[t].columns || []).map((c) => h("tr", { class: c.flagged ? "flagged" : "" },
        h("td", {}, h("code", {}, c.column)), h("td", { class: "num" }, num(c.univariate_roc_auc)),
        h("td", { class: "num" }, pct(c.shap_share)), h("td", { class: "num" }, num(c.drop_auc_delta)),
        h("td", {}, c.flagged ? "flagged" : "")));
      parts.push(h("div", { class: "table-wrap" }, h("table", { class: "data leakage", "data-target": t },
        h("caption", { class: "small" }, `${t}: flagged and top columns by |SHAP|`),
        h("thead", {}, h("tr", {}, h("th", {}, "column"), h("th", { class: "num" }, "AUC alone"),
          h("th", { class: "num" }, "|SHAP| share"), h("th", { class: "num" }, "AUC lost without"), h("th", {}, ""))),
        h("tbody", {}, rows))));
    }
    const names = (first && first.name_warnings) || [];
    if (names.length) {
      parts.push(h("p", { class: "small" }, "Names that sound post-outcome (a warning): ",
        names.map((w, i) => [i ? ", " : "", h("code", {}, w.column), ` (${(w.words || []).join(", ")})`])));
    }
    box.replaceChildren(...parts);
  }

  // ------------------------------------------------------------ track record
  const BAND_ORDER = { major: 0, moderate: 1, stable: 2 };

  function renderTrack(data) {
    const report = data && data.available ? data.monitoring : null;
    const grades = $("track-grades"), months = $("track-months");
    const gradeTable = $("track-grade-table"), drift = $("drift-table");
    gradeTable.replaceChildren();
    drift.replaceChildren();
    const retrain = $("retrain");
    if (!report) {
      const why = (data && data.reason) || "No monitoring report yet (leadscore monitor).";
      C.empty(grades, why);
      C.empty(months, why);
      retrain.hidden = true;
      $("track-summary").textContent = "";
      $("track-expected").textContent = "";
      return;
    }
    const backtest = report.backtest || {};
    const byGrade = (backtest.by_grade || []).filter((g) => g && g.scored > 0);
    C.columnChart(grades, byGrade.map((g) => ({
      label: `${g.grade} (${int(g.scored)})`,
      values: [{ name: "promised", value: g.predicted }, { name: "observed", value: g.observed }],
    })), { yFormat: (v) => pct(v, 0), label: "backtest by grade", emptyText: backtest.message || "No matured scores yet." });
    if (byGrade.length) {
      gradeTable.append(h("thead", {}, h("tr", {}, h("th", {}, "grade"), h("th", { class: "num" }, "scored"),
        h("th", { class: "num" }, "promised"), h("th", { class: "num" }, "observed"), h("th", { class: "num" }, "95 % interval"))));
      gradeTable.append(h("tbody", {}, byGrade.map((g) => h("tr", {}, h("td", {}, gradeBadge(g.grade)),
        h("td", { class: "num" }, int(g.scored)), h("td", { class: "num" }, pct(g.predicted)),
        h("td", { class: "num" }, pct(g.observed)), h("td", { class: "num" }, `${pct(g.observed_low)} – ${pct(g.observed_high)}`)))));
    }
    $("track-summary").textContent = backtest.matured
      ? `${int(backtest.matured)} matured scores: ROC AUC ${num(backtest.roc_auc)}, calibration error ${num(backtest.ece)}.`
      : backtest.message || "";
    const byMonth = (backtest.by_month || []).filter((m) => m && m.scored > 0);
    C.lineChart(months, [
      { name: "promised", points: byMonth.map((m, i) => ({ x: i, y: m.predicted })) },
      { name: "observed", points: byMonth.map((m, i) => ({ x: i, y: m.observed })) },
    ], { xLabels: byMonth.map((m) => String(m.month)), yFormat: (v) => pct(v, 0), label: "backtest by month", emptyText: "No matured scores yet." });
    const expected = report.expected || {};
    $("track-expected").textContent = isNum(expected.expected_conversion)
      ? `${expected.label || "estimate"}: ${pct(expected.expected_conversion)} expected conversion of the ${int(expected.leads)} recently scored leads (training: ${pct(expected.training_conversion)}).`
      : "";
    retrain.hidden = false;
    retrain.className = report.retrain_recommended ? "card notice warn" : "card notice";
    retrain.textContent = report.retrain_recommended
      ? `Retraining recommended: ${(report.retrain_reasons || []).join("; ")}`
      : "No retraining recommended by the monitoring rules.";
    const features = Object.entries((report.drift && report.drift.features) || {});
    const score = report.drift && report.drift.score;
    const rows = [...(score && isNum(score.psi) ? [["score", score]] : []), ...features]
      .sort((a, b) => (BAND_ORDER[a[1].band] ?? 3) - (BAND_ORDER[b[1].band] ?? 3) || (b[1].psi || 0) - (a[1].psi || 0));
    drift.append(h("thead", {}, h("tr", {}, h("th", {}, "feature"), h("th", { class: "num" }, "PSI"), h("th", {}, "band"),
      h("th", { class: "num" }, "KS"), h("th", { class: "num" }, "unseen"))));
    drift.append(h("tbody", {}, rows.map(([name, d]) => h("tr", { "data-band": d.band || "" },
      h("td", {}, h("code", {}, name)), h("td", { class: "num" }, num(d.psi)),
      h("td", {}, d.band ? h("span", { class: `band band-${d.band}` }, d.band) : "—"),
      h("td", { class: "num" }, num(d.ks)), h("td", { class: "num" }, isNum(d.unseen) ? pct(d.unseen) : "—")))));
  }

  // --------------------------------------------------------------------- load
  async function loadAll() {
    setStatus("loading…");
    try {
      const [kpis, model, track] = await Promise.all([
        api("/v1/dashboard/kpis"), api("/v1/dashboard/model"), api("/v1/dashboard/monitoring"),
      ]);
      state.kpis = kpis.available ? kpis.kpis : null;
      state.kpiNote = kpis.available ? kpis.note : kpis.reason;
      state.model = model;
      renderKpis();
      renderModel();
      renderTrack(track);
      await loadQueue();
      setStatus(`updated ${new Date().toLocaleTimeString("en-GB")}`);
      document.body.dataset.ready = "true";
      route();
    } catch (error) {
      if (error instanceof AuthNeeded) {
        setStatus("waiting for an API key");
        return;
      }
      setStatus(`could not load: ${error.message}`);
      console.warn(error);
    }
  }

  async function start() {
    setupAuth();
    $("kpi-group").addEventListener("change", () => { kpiSort = { column: null, descending: true }; fillMeasures(); renderKpiChart(); renderKpiTable(); });
    $("kpi-metric").addEventListener("change", renderKpiChart);
    $("metric-target").addEventListener("change", renderMetrics);
    const refilter = () => { queueLimit = QUEUE_PAGE; reloadQueue(); };
    let typing = null;
    for (const control of $("queue-filters").elements) {
      if (control.id !== "queue-search" && control.type !== "button") control.addEventListener("change", refilter);
    }
    $("queue-filters").addEventListener("submit", (e) => { e.preventDefault(); refilter(); });
    $("queue-search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 250); });
    for (const button of document.querySelectorAll("button.view")) {
      button.addEventListener("click", () => {
        queueState.view = button.dataset.view;
        for (const b of document.querySelectorAll("button.view")) b.setAttribute("aria-selected", String(b === button));
        refilter();
      });
    }
    $("queue-export").addEventListener("click", () => exportQueue().catch((e) => setStatus(e.message)));
    $("queue-more").addEventListener("click", () => { queueLimit += QUEUE_PAGE * 4; reloadQueue(); });
    $("feedback-form").addEventListener("change", (e) => { if (e.target.name === "verdict") fillReasons(); });
    $("feedback-form").addEventListener("submit", (e) => sendFeedback(e).catch((err) => { $("feedback-status").textContent = err.message; }));
    window.addEventListener("hashchange", route);
    try {
      const config = await fetch("/dashboard/config").then((r) => r.json());
      state.auth = config.auth;
    } catch (e) {
      state.auth = "on";
    }
    if (state.auth === "on" && !state.key) {
      showAuth("");
      setStatus("waiting for an API key");
      return;
    }
    loadAll();
  }

  start();
})();
