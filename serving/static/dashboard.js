/* leadscore shared dashboard: KPIs, sales queue and model card from the API's JSON.
 * Data: GET /v1/dashboard/{kpis,model,queue} with X-API-Key (kept in sessionStorage).
 * Plain DOM building (textContent only: CRM values are never parsed as HTML).
 */
"use strict";

(function () {
  const C = window.LeadCharts;
  const KEY_STORAGE = "leadscore.apiKey";
  const state = { key: sessionStorage.getItem(KEY_STORAGE) || "", auth: "on", kpis: null, model: null, queue: null };

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
    for (const child of children.flat()) {
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
    note.textContent = "";
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
      note.textContent = "Recent months look worse partly because their leads have had less time to be accepted or won.";
      return;
    }
    if (group === "by_campaign") {
      rows = [...rows].sort((a, b) => (b.leads || 0) - (a.leads || 0)).slice(0, 20);
      note.textContent = "The 20 campaigns with the most leads.";
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
    const select = $("owner-filter");
    const current = data.owner || "";
    if (select.options.length <= 2) {
      select.replaceChildren(h("option", { value: "" }, "everyone"), h("option", { value: "(none)" }, "unassigned"));
      for (const owner of data.owners || []) select.appendChild(h("option", { value: owner }, owner));
    }
    select.value = current;
    $("queue-count").textContent = `${int(data.total)} open lead${data.total === 1 ? "" : "s"}${data.total > data.rows.length ? `, first ${data.rows.length} shown` : ""}`;
    const rankedBy = (data.ranked_by || []).map((m) => `${m.name} version ${m.version}`).join(", ");
    $("queue-model").textContent = rankedBy ? `Ranked by ${rankedBy}` : "Ranking model not recorded (re-run the queue stage)";
    table.appendChild(
      h("thead", {}, h("tr", {},
        h("th", { class: "num" }, "#"), h("th", {}, "Lead"), h("th", {}, "Owner"), h("th", {}, "Source"),
        h("th", {}, `P(${primary})`), h("th", { class: "num" }, "Score"), h("th", {}, "Grade"),
        h("th", {}, "Why higher"), h("th", {}, "Why lower")))
    );
    const body = h("tbody");
    data.rows.forEach((row, i) => {
      const p = row[pKey];
      body.appendChild(
        h("tr", { "data-p": isNum(p) ? p : "", "data-owner": row.owner_id || "", "data-lead": row.lead_id },
          h("td", { class: "num muted" }, String(data.offset + i + 1)),
          h("td", {}, h("strong", {}, row.lead_id), row.last_stage ? h("div", { class: "small muted" }, row.last_stage) : null),
          h("td", {}, row.owner_id || h("span", { class: "muted" }, "unassigned")),
          h("td", {}, row.channel || "—", row.campaign_name ? h("div", { class: "small muted" }, row.campaign_name) : null),
          h("td", { class: "pcell" },
            h("div", { class: "pbar" }, h("span", { style: `width:${isNum(p) ? Math.round(p * 100) : 0}%` })),
            h("span", { class: "small" }, pct(p))),
          h("td", { class: "num" }, isNum(row.score) ? String(row.score) : "—"),
          h("td", {}, gradeBadge(row.grade), row.handoff ? h("span", { class: "handoff", title: "hand to sales" }, " ✓") : null),
          h("td", {}, reasonList(row.reasons_positive, "up")),
          h("td", {}, reasonList(row.reasons_negative, "down"))
        )
      );
    });
    table.appendChild(body);
    const more = $("queue-more");
    more.hidden = !(data.total > data.rows.length);
  }

  const QUEUE_PAGE = 100;
  let queueLimit = QUEUE_PAGE;

  async function loadQueue() {
    const owner = $("owner-filter").value;
    const query = new URLSearchParams({ limit: String(queueLimit) });
    if (owner) query.set("owner", owner);
    state.queue = await api(`/v1/dashboard/queue?${query}`);
    renderQueue();
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
    $("model-card-text").textContent = data.card || "No model card yet (artifacts/model_card.md).";
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

  // --------------------------------------------------------------------- load
  async function loadAll() {
    setStatus("loading…");
    try {
      const [kpis, model] = await Promise.all([api("/v1/dashboard/kpis"), api("/v1/dashboard/model")]);
      state.kpis = kpis.available ? kpis.kpis : null;
      if (!kpis.available) $("kpi-note").textContent = kpis.reason || "";
      state.model = model;
      renderKpis();
      renderModel();
      await loadQueue();
      setStatus(`updated ${new Date().toLocaleTimeString("en-GB")}`);
      document.body.dataset.ready = "true";
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
    const reloadQueue = () => loadQueue().catch((e) => { if (!(e instanceof AuthNeeded)) setStatus(e.message); });
    $("owner-filter").addEventListener("change", () => { queueLimit = QUEUE_PAGE; reloadQueue(); });
    $("queue-more").addEventListener("click", () => { queueLimit += QUEUE_PAGE * 4; reloadQueue(); });
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
