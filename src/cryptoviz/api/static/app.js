/* CryptoViz dashboard: a sortable market table, a chart of the selected coin, live updates over SSE.
   Plain JavaScript, no build step. Data comes from this server's /api; Plotly is served locally. */
(() => {
  "use strict";

  // --- token: ?token=... is kept for the tab (sessionStorage) and removed from the address bar ---------
  const params = new URLSearchParams(window.location.search);
  const TOKEN_KEY = "cryptoviz-token";
  if (params.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, params.get("token") || "");
    params.delete("token");
    const rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : "") + window.location.hash);
  }
  const token = sessionStorage.getItem(TOKEN_KEY) || "";

  const SOURCE_COLORS = ["#f59e0b", "#c084fc", "#f472b6", "#2dd4bf", "#facc15"];
  const CONSENSUS_COLOR = "#60a5fa";
  const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400];
  const DEFAULT_DIR = { rank: "asc", name: "asc" };

  const state = {
    coins: [],
    sort: { key: "market_cap", dir: "desc" },
    selected: params.get("coin"),
    range: 86400,
    interval: "auto",
    chart: null, // {coin, step, candles: [...], line: {x, y}, sources: {name: {x, y}}}
    lastObserved: null,
    sourceColors: {},
    loadingChart: 0,
    started: false,
  };

  const $ = (id) => document.getElementById(id);

  // --- HTTP ---------------------------------------------------------------------------------------------

  async function api(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const response = await fetch(path, { headers });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = await response.json();
        detail = body.detail || body.error || detail;
      } catch (_) { /* not JSON */ }
      const error = new Error(`${response.status}: ${detail}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function showBanner(message) {
    const banner = $("banner");
    if (!message) {
      banner.hidden = true;
      return;
    }
    banner.textContent = message;
    banner.hidden = false;
  }

  function reportError(error) {
    if (error && error.status === 401) {
      showBanner("This server needs a token: open the page as /?token=<CRYPTOVIZ_API_TOKEN>.");
    } else {
      showBanner("Could not load data: " + (error && error.message ? error.message : error));
    }
  }

  // --- formatting ---------------------------------------------------------------------------------------

  const formatters = {};
  function currencyFormat(currency, options) {
    const key = currency + JSON.stringify(options);
    if (!(key in formatters)) {
      try {
        formatters[key] = new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase(), ...options });
      } catch (_) {
        formatters[key] = new Intl.NumberFormat("en-US", options);
      }
    }
    return formatters[key];
  }

  function fmtPrice(value, currency = "usd") {
    if (value === null || value === undefined) return "—";
    const abs = Math.abs(value);
    if (abs !== 0 && abs < 1e-6) {
      return currencyFormat(currency, { maximumFractionDigits: 0 }).format(0).replace(/0([.,]?0*)?$/, "") + value.toExponential(3);
    }
    if (abs >= 1) return currencyFormat(currency, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(value);
    return currencyFormat(currency, { maximumSignificantDigits: 4 }).format(value);
  }

  function fmtCompact(value, currency = "usd") {
    if (value === null || value === undefined) return "—";
    return currencyFormat(currency, { notation: "compact", maximumFractionDigits: 2 }).format(value);
  }

  function fmtPct(value) {
    if (value === null || value === undefined) return { text: "—", cls: "" };
    if (Math.abs(value) < 0.005) return { text: "0.00%", cls: "" };
    const text = (value > 0 ? "+" : "") + value.toFixed(2) + "%";
    return { text, cls: value > 0 ? "pos" : "neg" };
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function fmtAgo(iso) {
    if (!iso) return "";
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (seconds < 90) return `(${seconds}s ago)`;
    if (seconds < 5400) return `(${Math.round(seconds / 60)} min ago)`;
    if (seconds < 172800) return `(${Math.round(seconds / 3600)} h ago)`;
    return `(${Math.round(seconds / 86400)} days ago)`;
  }

  // Plotly has no time zones: give it local wall-clock strings so the axis matches "last update".
  function plotTime(value) {
    const d = value instanceof Date ? value : new Date(value);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function sourceColor(name) {
    if (!(name in state.sourceColors)) {
      state.sourceColors[name] = SOURCE_COLORS[Object.keys(state.sourceColors).length % SOURCE_COLORS.length];
    }
    return state.sourceColors[name];
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  // --- market table -------------------------------------------------------------------------------------

  function sortValue(coin, key) {
    if (key === "name") return (coin.name || "").toLowerCase();
    return coin[key];
  }

  function sortedCoins() {
    const { key, dir } = state.sort;
    const sign = dir === "asc" ? 1 : -1;
    return [...state.coins].sort((a, b) => {
      const va = sortValue(a, key);
      const vb = sortValue(b, key);
      const na = va === null || va === undefined;
      const nb = vb === null || vb === undefined;
      if (na || nb) return na === nb ? a.id.localeCompare(b.id) : na ? 1 : -1; // missing values last
      if (va < vb) return -sign;
      if (va > vb) return sign;
      return a.id.localeCompare(b.id);
    });
  }

  function confidenceCell(value) {
    const pct = Math.round((value || 0) * 100);
    const level = value >= 0.8 ? "" : value >= 0.5 ? " mid" : " low";
    const fill = el("span", { class: "fill" });
    fill.style.width = pct + "%";
    return el("span", { class: "conf" + level, title: `confidence ${value}` },
      el("span", { class: "bar" }, fill), el("span", { text: pct + "%" }));
  }

  function renderTable(previous) {
    const body = $("rows");
    const rows = sortedCoins();
    body.replaceChildren();
    if (!rows.length) {
      body.append(el("tr", { class: "empty" }, el("td", { colspan: "10",
        text: "No data yet: start the job (`cryptoviz run`) or the demo (`make demo`)." })));
      return;
    }
    for (const coin of rows) {
      const tr = el("tr", { "data-testid": "coin-row", "data-id": coin.id });
      if (coin.id === state.selected) tr.classList.add("selected");
      const price = el("td", { class: "num", "data-col": "price", "data-testid": "price", text: fmtPrice(coin.price, coin.currency) });
      const old = previous && previous.get(coin.id);
      if (old && old.price !== coin.price) {
        price.classList.add(coin.price > old.price ? "flash-up" : "flash-down");
        price.addEventListener("animationend", () => price.classList.remove("flash-up", "flash-down"), { once: true });
      }
      const pct = (key) => {
        const p = fmtPct(coin[key]);
        return el("td", { class: "num " + p.cls, "data-col": key, text: p.text });
      };
      tr.append(
        el("td", { class: "num muted", "data-col": "rank", text: coin.rank ?? "—" }),
        el("td", { "data-col": "name" }, el("span", { class: "name-cell" },
          el("span", { text: coin.name }), el("span", { class: "sym", text: coin.symbol.toUpperCase() }))),
        price,
        pct("change_1h"), pct("change_24h"), pct("change_7d"),
        el("td", { class: "num", "data-col": "market_cap", text: fmtCompact(coin.market_cap, coin.currency) }),
        el("td", { class: "num", "data-col": "volume_24h", text: fmtCompact(coin.volume_24h, coin.currency) }),
        el("td", { class: "num", "data-col": "confidence" }, confidenceCell(coin.confidence)),
        el("td", { class: "num", "data-col": "n_sources", title: coin.sources.join(", "), text: String(coin.n_sources) }),
      );
      tr.addEventListener("click", () => selectCoin(coin.id));
      body.append(tr);
    }
  }

  function renderHeaders() {
    for (const th of document.querySelectorAll("th[data-sort]")) {
      const active = th.dataset.sort === state.sort.key;
      th.classList.toggle("sorted", active);
      th.classList.toggle("asc", active && state.sort.dir === "asc");
      th.setAttribute("aria-sort", active ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none");
    }
  }

  function setupSorting() {
    for (const th of document.querySelectorAll("th[data-sort]")) {
      th.addEventListener("click", () => {
        const key = th.dataset.sort;
        if (state.sort.key === key) state.sort.dir = state.sort.dir === "asc" ? "desc" : "asc";
        else state.sort = { key, dir: DEFAULT_DIR[key] || "desc" };
        renderHeaders();
        renderTable(null);
      });
    }
    renderHeaders();
  }

  function setLastUpdate(iso) {
    state.lastObserved = iso;
    const node = $("last-update");
    node.textContent = fmtTime(iso);
    if (iso) node.setAttribute("datetime", iso);
    $("last-age").textContent = fmtAgo(iso);
  }

  function applyCoins(coins, total, observedAt) {
    const previous = new Map(state.coins.map((c) => [c.id, c]));
    state.coins = coins;
    $("coin-count").textContent = `${total} coins`;
    renderTable(previous.size ? previous : null);
    setLastUpdate(observedAt);
    if (!state.started && coins.length) {
      // The first data: show ?coin=... when given, else bitcoin, else the first row.
      state.started = true;
      const bitcoin = coins.find((c) => c.id === "bitcoin");
      selectCoin(state.selected || (bitcoin || sortedCoins()[0]).id);
    }
  }

  // --- selected coin ------------------------------------------------------------------------------------

  function renderCoinHead(coin, quotes) {
    $("coin-title").textContent = coin.name;
    $("coin-symbol").textContent = coin.symbol.toUpperCase();
    $("coin-price").textContent = fmtPrice(coin.price, coin.currency);
    const change = fmtPct(coin.change_24h);
    $("coin-change").textContent = change.text;
    $("coin-change").className = "value " + change.cls;
    $("coin-cap").textContent = fmtCompact(coin.market_cap, coin.currency);
    $("coin-confidence").replaceChildren(confidenceCell(coin.confidence));
    if (quotes) {
      const box = $("source-values");
      box.replaceChildren();
      for (const q of quotes) {
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = sourceColor(q.source);
        const title = q.used ? `${q.source}: used in the consensus` : `${q.source}: dropped (${q.dropped_reason || "not used"})`;
        box.append(el("span", { class: "chip" + (q.used ? "" : " dropped"), title },
          swatch, el("span", { text: `${q.source} ${fmtPrice(q.price, coin.currency)}` })));
      }
    }
  }

  function autoStep(times) {
    if (times.length < 2) return 60;
    const span = (times[times.length - 1] - times[0]) / 1000;
    const gaps = [];
    for (let i = 1; i < times.length; i++) gaps.push((times[i] - times[i - 1]) / 1000);
    gaps.sort((a, b) => a - b);
    const gap = gaps[Math.floor(gaps.length / 2)] || 1;
    const wanted = Math.max(span / 40, gap * 2, 1);
    return STEPS.find((s) => s >= wanted) || 86400;
  }

  function historyUrl(id, start, end, extra) {
    const q = new URLSearchParams({ start: start.toISOString(), end: end.toISOString(), ...extra });
    return `api/coins/${encodeURIComponent(id)}/history?${q}`;
  }

  async function loadChart(id) {
    const ticket = ++state.loadingChart;
    const coin = state.coins.find((c) => c.id === id);
    const latest = coin ? new Date(coin.observed_at) : new Date();
    const end = new Date(Math.max(latest.getTime(), Date.now()) + 1000);
    const start = new Date(latest.getTime() - state.range * 1000);
    const raw = await api(historyUrl(id, start, end, { sources: "true" }));
    const times = raw.points.map((p) => new Date(p[0]).getTime());
    const step = state.interval === "auto" ? autoStep(times) : state.interval;
    const ohlc = await api(historyUrl(id, start, end, { interval: String(step) }));
    if (ticket !== state.loadingChart) return; // another coin was selected meanwhile
    const seconds = ohlc.interval;
    const sources = {};
    for (const [name, line] of Object.entries(raw.sources || {})) {
      sources[name] = { x: line.map((p) => p[0]), y: line.map((p) => p[1]) };
    }
    state.chart = {
      coin: id,
      step: seconds,
      candles: ohlc.candles.map((c) => ({ t: new Date(c.time).getTime(), open: c.open, high: c.high, low: c.low, close: c.close })),
      line: { x: raw.points.map((p) => p[0]), y: raw.points.map((p) => p[1]) },
      sources,
    };
    drawChart();
  }

  function drawChart() {
    const node = $("chart");
    const chart = state.chart;
    if (!window.Plotly || !chart) return;
    if (!chart.line.x.length) {
      window.Plotly.purge(node);
      node.replaceChildren(el("div", { class: "placeholder", text: "No history in this range yet." }));
      return;
    }
    const half = (chart.step * 1000) / 2;
    const traces = [{
      type: "candlestick", name: `OHLC ${labelStep(chart.step)}`,
      x: chart.candles.map((c) => plotTime(c.t + half)),
      open: chart.candles.map((c) => c.open), high: chart.candles.map((c) => c.high),
      low: chart.candles.map((c) => c.low), close: chart.candles.map((c) => c.close),
      increasing: { line: { color: "#22c55e" }, fillcolor: "rgba(34,197,94,.55)" },
      decreasing: { line: { color: "#ef4444" }, fillcolor: "rgba(239,68,68,.55)" },
      whiskerwidth: 0.4, opacity: 0.9,
    }, {
      type: "scatter", mode: "lines", name: "consensus",
      x: chart.line.x.map(plotTime), y: chart.line.y,
      line: { color: CONSENSUS_COLOR, width: 2.5 },
    }];
    for (const name of Object.keys(chart.sources).sort()) {
      const line = chart.sources[name];
      traces.push({
        type: "scatter", mode: "lines", name, x: line.x.map(plotTime), y: line.y,
        line: { color: sourceColor(name), width: 1.5, dash: "dot" }, opacity: 0.9,
      });
    }
    const layout = {
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: "#cbd5e1", size: 12 },
      margin: { l: 70, r: 20, t: 10, b: 40 },
      showlegend: true, legend: { orientation: "h", x: 0, y: 1.08, bgcolor: "rgba(0,0,0,0)" },
      xaxis: { type: "date", gridcolor: "#1f2a40", rangeslider: { visible: false }, showspikes: true, spikecolor: "#475569" },
      yaxis: { gridcolor: "#1f2a40", tickformat: ".4~s", zeroline: false, fixedrange: false },
      hovermode: "x unified", hoverlabel: { bgcolor: "#16213a", bordercolor: "#22304d" },
      uirevision: chart.coin + ":" + state.range + ":" + state.interval,
    };
    if (node.querySelector(".placeholder")) node.replaceChildren();
    window.Plotly.react(node, traces, layout, { displaylogo: false, responsive: true,
      modeBarButtonsToRemove: ["lasso2d", "select2d", "toggleSpikelines"] });
  }

  function labelStep(seconds) {
    if (seconds % 86400 === 0) return `${seconds / 86400}d`;
    if (seconds % 3600 === 0) return `${seconds / 3600}h`;
    if (seconds % 60 === 0) return `${seconds / 60}m`;
    return `${seconds}s`;
  }

  // A new consensus value for the selected coin: extend the line, update or open a candle.
  function appendToChart(coin, quotes) {
    const chart = state.chart;
    if (!chart || chart.coin !== coin.id) return;
    const last = chart.line.x[chart.line.x.length - 1];
    const t = new Date(coin.observed_at).getTime();
    if (last && new Date(last).getTime() >= t) return;
    chart.line.x.push(coin.observed_at);
    chart.line.y.push(coin.price);
    const bucket = Math.floor(t / 1000 / chart.step) * chart.step * 1000;
    const candle = chart.candles[chart.candles.length - 1];
    if (candle && candle.t === bucket) {
      candle.high = Math.max(candle.high, coin.price);
      candle.low = Math.min(candle.low, coin.price);
      candle.close = coin.price;
    } else {
      chart.candles.push({ t: bucket, open: coin.price, high: coin.price, low: coin.price, close: coin.price });
    }
    for (const q of quotes || []) {
      const line = chart.sources[q.source] || (chart.sources[q.source] = { x: [], y: [] });
      const lastSource = line.x[line.x.length - 1];
      if (!lastSource || new Date(lastSource).getTime() < new Date(q.observed_at).getTime()) {
        line.x.push(q.observed_at);
        line.y.push(q.price);
      }
    }
    drawChart();
  }

  async function selectCoin(id) {
    state.selected = id;
    for (const tr of document.querySelectorAll("#rows tr[data-id]")) {
      tr.classList.toggle("selected", tr.dataset.id === id);
    }
    try {
      const detail = await api(`api/coins/${encodeURIComponent(id)}`);
      if (state.selected !== id) return;
      renderCoinHead(detail, detail.source_quotes);
      await loadChart(id);
      showBanner(null);
    } catch (error) {
      reportError(error);
    }
  }

  async function refreshSelected(id) {
    try {
      const detail = await api(`api/coins/${encodeURIComponent(id)}`);
      if (state.selected !== id) return;
      renderCoinHead(detail, detail.source_quotes);
      appendToChart(detail, detail.source_quotes);
    } catch (error) {
      reportError(error);
    }
  }

  function setupControls() {
    for (const button of document.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => {
        state.range = Number(button.dataset.range);
        for (const b of document.querySelectorAll("[data-range]")) b.classList.toggle("active", b === button);
        if (state.selected) loadChart(state.selected).catch(reportError);
      });
    }
    for (const button of document.querySelectorAll("[data-interval]")) {
      button.addEventListener("click", () => {
        state.interval = button.dataset.interval;
        for (const b of document.querySelectorAll("[data-interval]")) b.classList.toggle("active", b === button);
        if (state.selected) loadChart(state.selected).catch(reportError);
      });
    }
  }

  // --- sources ------------------------------------------------------------------------------------------

  async function loadSources() {
    try {
      const data = await api("api/sources?runs=20");
      const box = $("sources");
      box.replaceChildren();
      renderLastRun(data.last_run);
      if (!data.sources.length) {
        box.append(el("span", { class: "muted", text: "No cycle recorded yet." }));
        return;
      }
      for (const s of data.sources) {
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = sourceColor(s.source);
        const rows = [
          ["fetched / rejected", `${s.fetched} / ${s.rejected}`],
          ["used", String(s.used)],
          ["breaker", s.breaker],
          ["last ok", s.last_ok ? fmtTime(s.last_ok) : "never"],
        ];
        rows.push(["fetch time", `${s.seconds.toFixed(2)} s`]);
        const reasons = Object.entries(s.reasons || {}).sort((a, b) => b[1] - a[1]);
        if (reasons.length) rows.push(["rejected by reason", reasons.map(([k, v]) => `${k} ${v}`).join(", ")]);
        if (s.failures_in_a_row) rows.push(["failures in a row", String(s.failures_in_a_row)]);
        if (s.last_error) rows.push(["last error", s.last_error]);
        const dl = el("dl");
        for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v, title: v }));
        box.append(el("div", { class: "source", "data-testid": "source" },
          el("div", { class: "source-name" },
            el("span", { class: "chip" }, swatch, el("span", { text: s.source })),
            el("span", { class: "state " + (s.up ? "up" : "down"), text: s.up ? "up" : "down" })),
          dl));
      }
    } catch (error) {
      reportError(error);
    }
  }

  function renderLastRun(run) {
    const box = $("last-run");
    box.replaceChildren();
    if (!run) {
      box.append(el("span", { class: "muted", text: "No cycle recorded yet." }));
      return;
    }
    const seconds = run.finished_at ? (new Date(run.finished_at) - new Date(run.started_at)) / 1000 : null;
    const rows = [
      ["status", run.status],
      ["started", fmtTime(run.started_at)],
      ["duration", seconds === null ? "running" : `${seconds.toFixed(1)} s`],
      ["coins published", String(run.published)],
      ["fetched / rejected", `${run.fetched} / ${run.rejected}`],
    ];
    const dl = el("dl");
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v, title: v }));
    box.append(el("div", { class: "source run-" + run.status }, dl));
  }

  // --- live stream --------------------------------------------------------------------------------------

  function setLive(stateName, label) {
    const node = document.querySelector("[data-testid=live-indicator]");
    node.dataset.state = stateName;
    node.querySelector(".live-label").textContent = label;
  }

  let lastSourcesLoad = 0;
  function connect() {
    const url = "api/stream" + (token ? "?token=" + encodeURIComponent(token) : "");
    const source = new EventSource(url);
    source.addEventListener("open", () => setLive("live", "live"));
    source.addEventListener("error", () => {
      setLive(source.readyState === EventSource.CLOSED ? "offline" : "reconnecting",
        source.readyState === EventSource.CLOSED ? "offline" : "reconnecting");
    });
    source.addEventListener("snapshot", (event) => {
      setLive("live", "live");
      const data = JSON.parse(event.data);
      applyCoins(data.coins, data.total, data.observed_at);
      showBanner(null);
      if (state.selected && state.chart) refreshSelected(state.selected); // also a coin beyond the top 100
      if (Date.now() - lastSourcesLoad > 10000) {
        lastSourcesLoad = Date.now();
        loadSources();
      }
    });
  }

  async function start() {
    setupSorting();
    setupControls();
    try {
      const page = await api("api/coins?sort=market_cap&order=desc&limit=100");
      applyCoins(page.coins, page.total, page.coins.reduce((m, c) => (!m || c.observed_at > m ? c.observed_at : m), null));
    } catch (error) {
      reportError(error);
    }
    lastSourcesLoad = Date.now();
    loadSources();
    connect();
    window.setInterval(() => { $("last-age").textContent = fmtAgo(state.lastObserved); }, 1000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
