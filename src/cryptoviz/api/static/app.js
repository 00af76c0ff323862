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
  const BAND_FILL = "rgba(96,165,250,.18)"; // the consensus' 95 % interval, drawn around its line
  const UNVERIFIED_COLOR = "#f59e0b";
  const UNVERIFIED_TEXT = "Unverified: two sources disagree beyond tolerance and nothing settles which is right";
  const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400];
  const RAW_RANGE = 2 * 86400; // the API answers raw points up to this range (where raw rows are kept)
  const LONG_CANDLES = 300; // beyond that, at most this many candles of a step the API picks
  const DEFAULT_DIR = { rank: "asc", name: "asc" };

  const state = {
    coins: [],
    sort: { key: "market_cap", dir: "desc" },
    selected: params.get("coin"),
    range: 86400,
    interval: "auto",
    // {coin, step, tier, note, gapAfter, candles: [...], line: {x, y, lo, hi, unv}, sources: {name: {x, y}}} (x in
    // ms; lo/hi: the 95 % interval at each point, null where none; unv: the value was unverified)
    chart: null,
    total: 0,
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

  function fmtAge(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 90) return `${seconds}s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
    return `${Math.round(seconds / 86400)} days`;
  }

  function fmtAgo(iso) {
    if (!iso) return "";
    return `(${fmtAge((Date.now() - new Date(iso).getTime()) / 1000)} ago)`;
  }

  // A row's age now: the server's age_s when the row came, plus the time since.
  function ageNow(coin) {
    return (coin.age_s || 0) + (Date.now() - (coin.receivedAt || Date.now())) / 1000;
  }

  function staleText(coin) {
    const quoted = coin.price_at ? "last quote" : "last value";
    return `Stale: ${quoted} ${fmtAge(ageNow(coin))} old, beyond the staleness limit`;
  }

  function intervalText(coin) {
    if (coin.price_low === null || coin.price_low === undefined || coin.price_high === null ||
        coin.price_high === undefined) return "";
    return `${fmtPrice(coin.price_low, coin.currency)} – ${fmtPrice(coin.price_high, coin.currency)}`;
  }

  function unverifiedMark() {
    return el("span", { class: "unverified-mark", "data-testid": "unverified-mark", title: UNVERIFIED_TEXT,
      "aria-label": "unverified", text: "⚠" });
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

  // Rows stay in the page: a change rewrites the cells that changed (the price flashes green up, red
  // down) and the rows that moved are re-inserted in their new place; the selection stays.
  const rowNodes = new Map(); // coin id -> <tr>

  function setCell(td, text, cls) {
    if (td.textContent !== text) td.textContent = text;
    if (cls !== undefined && td.className !== cls) td.className = cls;
  }

  function flash(td, up) {
    td.classList.remove("flash-up", "flash-down");
    void td.offsetWidth; // restart the animation when the previous flash is not over
    td.classList.add(up ? "flash-up" : "flash-down");
    td.dataset.flash = up ? "up" : "down";
  }

  function makeRow(coin) {
    const tr = el("tr", { "data-testid": "coin-row", "data-id": coin.id });
    const cell = (col, cls) => el("td", { class: cls, "data-col": col });
    const price = el("td", { class: "num", "data-col": "price", "data-testid": "price" });
    price.addEventListener("animationend", () => price.classList.remove("flash-up", "flash-down"));
    tr.append(cell("rank", "num muted"), cell("name"), price, cell("change_1h", "num"), cell("change_24h", "num"),
      cell("change_7d", "num"), cell("market_cap", "num"), cell("volume_24h", "num"), cell("confidence", "num"),
      cell("n_sources", "num"));
    tr.addEventListener("click", () => selectCoin(tr.dataset.id));
    return tr;
  }

  function fillRow(tr, coin, flashes) {
    const cells = tr.cells;
    setCell(cells[0], String(coin.rank ?? "—"));
    const symbol = coin.symbol.toUpperCase();
    const nameKey = coin.name + symbol + (coin.unverified ? "!" : "");
    if (tr.dataset.name !== nameKey) {
      tr.dataset.name = nameKey;
      cells[1].replaceChildren(el("span", { class: "name-cell" },
        el("span", { text: coin.name }), el("span", { class: "sym", text: symbol }),
        coin.unverified ? unverifiedMark() : null));
    }
    tr.classList.toggle("unverified", Boolean(coin.unverified));
    // A coin without a fresh quote stays in the list, greyed, its age in the tooltip.
    tr.classList.toggle("stale", Boolean(coin.stale));
    tr.coin = coin;
    if (coin.stale) tr.title = staleText(coin);
    else tr.removeAttribute("title");
    const band = intervalText(coin);
    cells[2].title = band ? `95 % interval: ${band}` : "";
    const old = tr.price;
    setCell(cells[2], fmtPrice(coin.price, coin.currency));
    if (flashes && old !== undefined && old !== coin.price) flash(cells[2], coin.price > old);
    tr.price = coin.price;
    ["change_1h", "change_24h", "change_7d"].forEach((key, k) => {
      const p = fmtPct(coin[key]);
      setCell(cells[3 + k], p.text, "num " + p.cls);
    });
    setCell(cells[6], fmtCompact(coin.market_cap, coin.currency));
    setCell(cells[7], fmtCompact(coin.volume_24h, coin.currency));
    if (tr.confidence !== coin.confidence) {
      tr.confidence = coin.confidence;
      cells[8].replaceChildren(confidenceCell(coin.confidence));
    }
    setCell(cells[9], String(coin.n_sources));
    cells[9].title = coin.sources.join(", ");
  }

  // changed: the ids to rewrite (null: every row); flashes: show price moves.
  function renderTable(changed = null, flashes = true) {
    const body = $("rows");
    const rows = sortedCoins();
    if (!rows.length) {
      rowNodes.clear();
      body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: "10",
        text: "No data yet: start the job (`cryptoviz run`) or the demo (`make demo`)." })));
      return;
    }
    const keep = new Set(rows.map((c) => c.id));
    for (const [id, tr] of rowNodes) {
      if (!keep.has(id)) {
        tr.remove();
        rowNodes.delete(id);
      }
    }
    for (const stale of body.querySelectorAll("tr:not([data-id])")) stale.remove();
    rows.forEach((coin, index) => {
      let tr = rowNodes.get(coin.id);
      if (!tr) {
        tr = makeRow(coin);
        rowNodes.set(coin.id, tr);
        fillRow(tr, coin, false);
      } else if (changed === null || changed.has(coin.id)) {
        fillRow(tr, coin, flashes);
      }
      tr.classList.toggle("selected", coin.id === state.selected);
      const here = body.children[index];
      if (here !== tr) body.insertBefore(tr, here || null); // only the rows that moved
    });
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
        renderTable(null, false);
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

  function startOnce(coins) {
    if (!state.started && coins.length) {
      // The first data: show ?coin=... when given, else bitcoin, else the first row.
      state.started = true;
      const bitcoin = coins.find((c) => c.id === "bitcoin");
      selectCoin(state.selected || (bitcoin || sortedCoins()[0]).id);
    }
  }

  // A whole list (the first page, or a snapshot of the stream).
  function stamp(coins) {
    const now = Date.now();
    for (const coin of coins) coin.receivedAt = now;
    return coins;
  }

  function applyCoins(coins, total, observedAt) {
    state.coins = stamp(coins);
    state.total = total;
    $("coin-count").textContent = `${total} coins`;
    renderTable(null, true);
    setLastUpdate(observedAt);
    const selected = coins.find((c) => c.id === state.selected);
    if (selected) followSelected(selected);
    startOnce(coins);
  }

  // A delta of the stream: only the changed rows, and the ids that left the list.
  function applyDelta(coins, removed, observedAt) {
    const byId = new Map(state.coins.map((c) => [c.id, c]));
    for (const id of removed || []) byId.delete(id);
    for (const coin of stamp(coins)) byId.set(coin.id, coin);
    state.coins = [...byId.values()];
    renderTable(new Set(coins.map((c) => c.id)), true);
    if (observedAt) setLastUpdate(observedAt);
    const selected = coins.find((c) => c.id === state.selected);
    if (selected) followSelected(selected);
    startOnce(state.coins);
  }

  // --- selected coin ------------------------------------------------------------------------------------

  function renderCoinHead(coin, quotes) {
    $("coin-title").textContent = coin.name;
    $("coin-symbol").textContent = coin.symbol.toUpperCase();
    $("coin-price").textContent = fmtPrice(coin.price, coin.currency);
    $("coin-interval").textContent = intervalText(coin) || "—";
    const flags = $("coin-flags");
    flags.replaceChildren();
    if (coin.unverified) flags.append(unverifiedMark());
    if (coin.stale) {
      if (coin.receivedAt === undefined) coin.receivedAt = Date.now();
      flags.append(el("span", { class: "stale-badge", "data-testid": "stale-badge", title: staleText(coin),
        text: "stale" }));
    }
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

  function rangeBounds(coin) {
    const latest = coin ? new Date(coin.observed_at) : new Date();
    const end = new Date(Math.max(latest.getTime(), Date.now()) + 1000);
    // "all": from the epoch; the API measures the range from the coin's first observation.
    const start = state.range === "all" ? new Date(0) : new Date(latest.getTime() - state.range * 1000);
    return { start, end };
  }

  const ms = (iso) => new Date(iso).getTime();

  function sourceLines(sources) {
    const out = {};
    for (const [name, line] of Object.entries(sources || {})) {
      out[name] = { x: line.map((p) => ms(p[0])), y: line.map((p) => p[1]) };
    }
    return out;
  }

  function candlesOf(answer) {
    return (answer.candles || []).map((c) => ({
      t: ms(c.time), open: c.open, high: c.high, low: c.low, close: c.close, backfilled: c.backfilled,
      closeAt: c.close_at ? ms(c.close_at) : ms(c.time) + answer.interval * 500,
      priceLow: c.price_low ?? null, priceHigh: c.price_high ?? null, unverified: Boolean(c.unverified),
    }));
  }

  // The API picks the tier (raw rows, 5-minute, hourly or daily candles) from the range and the step.
  async function loadChart(id) {
    const ticket = ++state.loadingChart;
    const coin = state.coins.find((c) => c.id === id);
    const { start, end } = rangeBounds(coin);
    const explicit = state.interval !== "auto";
    const short = state.range !== "all" && state.range <= RAW_RANGE;
    let base = null;
    if (!explicit || short) {
      base = await api(historyUrl(id, start, end, { sources: "true", max_candles: String(LONG_CANDLES) }));
    }
    let chart;
    if (base && base.points) {
      // Raw points: the consensus line as observed, candles of a step that suits the points.
      const times = base.points.map((p) => ms(p[0]));
      const step = explicit ? state.interval : autoStep(times);
      const ohlc = await api(historyUrl(id, start, end, { interval: String(step) }));
      chart = {
        step: ohlc.interval, tier: ohlc.tier, lineTier: base.tier, note: ohlc.note, gapAfter: base.gap_after,
        candles: candlesOf(ohlc),
        // points: [observed_at, price, market_cap, volume_24h, confidence, price_low, price_high, unverified, ...]
        line: { x: times, y: base.points.map((p) => p[1]), lo: base.points.map((p) => p[5] ?? null),
          hi: base.points.map((p) => p[6] ?? null), unv: base.points.map((p) => Boolean(p[7])) },
        sources: sourceLines(base.sources),
      };
    } else {
      // Candles: the consensus line through each candle's last observation, per-source closes beside it.
      const answer = base && !explicit ? base
        : await api(historyUrl(id, start, end, { interval: state.interval, sources: "true" }));
      const candles = candlesOf(answer);
      chart = {
        step: answer.interval, tier: answer.tier, lineTier: answer.tier, note: answer.note, gapAfter: answer.gap_after,
        candles,
        line: { x: candles.map((c) => c.closeAt), y: candles.map((c) => c.close), lo: candles.map((c) => c.priceLow),
          hi: candles.map((c) => c.priceHigh), unv: candles.map((c) => c.unverified) },
        sources: sourceLines(answer.sources),
      };
    }
    if (ticket !== state.loadingChart) return; // another coin or range was selected meanwhile
    state.chart = { coin: id, range: String(state.range), interval: state.interval, ...chart };
    drawChart();
    const latest = state.coins.find((c) => c.id === id);
    if (latest) appendToChart(latest, null); // what the stream brought while the history loaded
  }

  // A line with a null wherever two points are further apart than `gapAfter` seconds: a gap stays a gap.
  function gapped(xs, ys, gapAfter) {
    const x = [];
    const y = [];
    const limit = (gapAfter || Infinity) * 1000;
    for (let i = 0; i < xs.length; i++) {
      if (i && xs[i] - xs[i - 1] > limit) {
        x.push(plotTime((xs[i] + xs[i - 1]) / 2));
        y.push(null);
      }
      x.push(plotTime(xs[i]));
      y.push(ys[i]);
    }
    return { x, y };
  }

  function candleTrace(candles, step, name, colors) {
    const half = (step * 1000) / 2;
    return {
      type: "candlestick", name,
      x: candles.map((c) => plotTime(c.t + half)),
      open: candles.map((c) => c.open), high: candles.map((c) => c.high),
      low: candles.map((c) => c.low), close: candles.map((c) => c.close),
      increasing: { line: { color: colors.up }, fillcolor: colors.upFill },
      decreasing: { line: { color: colors.down }, fillcolor: colors.downFill },
      whiskerwidth: 0.4, opacity: colors.opacity,
    };
  }

  const TIER_TEXT = { raw: "raw observations", "5m": "5-minute candles", "1h": "hourly candles", "1d": "daily candles" };

  function renderChartInfo(chart) {
    const node = $("chart-info");
    const parts = [`${labelStep(chart.step)} candles from ${TIER_TEXT[chart.tier] || chart.tier}`];
    if (chart.lineTier !== chart.tier) parts.push(`line from ${TIER_TEXT[chart.lineTier] || chart.lineTier}`);
    const backfilled = chart.candles.filter((c) => c.backfilled).length;
    if (backfilled) parts.push(`${backfilled} backfilled (lighter)`);
    if (chart.note) parts.push(chart.note);
    node.textContent = parts.join(" · ");
    node.dataset.tier = chart.tier;
    node.dataset.lineTier = chart.lineTier;
    node.dataset.range = chart.range; // what the chart shows (the buttons change state.range at once)
    node.dataset.interval = chart.interval;
    node.dataset.step = String(chart.step);
  }

  function drawChart() {
    const node = $("chart");
    const chart = state.chart;
    if (!window.Plotly || !chart) return;
    renderChartInfo(chart);
    if (!chart.line.x.length && !chart.candles.length) {
      window.Plotly.purge(node);
      node.replaceChildren(el("div", { class: "placeholder", text: "No history in this range yet." }));
      return;
    }
    const line = gapped(chart.line.x, chart.line.y, chart.gapAfter);
    const traces = [
      candleTrace(chart.candles.filter((c) => !c.backfilled), chart.step, `OHLC ${labelStep(chart.step)}`, {
        up: "#22c55e", upFill: "rgba(34,197,94,.55)", down: "#ef4444", downFill: "rgba(239,68,68,.55)", opacity: 0.9,
      }), {
        type: "scatter", mode: "lines", name: "consensus", x: line.x, y: line.y, connectgaps: false,
        line: { color: CONSENSUS_COLOR, width: 2.5 },
      }, ...bandTraces(chart)];
    for (const name of Object.keys(chart.sources).sort()) {
      const source = gapped(chart.sources[name].x, chart.sources[name].y, chart.gapAfter);
      traces.push({
        type: "scatter", mode: "lines", name, x: source.x, y: source.y, connectgaps: false,
        line: { color: sourceColor(name), width: 1.5, dash: "dot" }, opacity: 0.9,
      });
    }
    const backfilled = chart.candles.filter((c) => c.backfilled);
    if (backfilled.length) {
      traces.push(candleTrace(backfilled, chart.step, "backfilled", {
        up: "rgba(134,239,172,.6)", upFill: "rgba(134,239,172,.25)", down: "rgba(252,165,165,.6)",
        downFill: "rgba(252,165,165,.25)", opacity: 0.6,
      }));
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

  // The 95 % interval as a band around the consensus line (the low edge, then the high edge filled down to
  // it), and a mark on each unverified value. Nothing when no value of the chart has an interval.
  function bandTraces(chart) {
    const out = [];
    const line = chart.line;
    if (line.lo.some((v) => v !== null) && line.hi.some((v) => v !== null)) {
      const lo = gapped(line.x, line.lo, chart.gapAfter);
      const hi = gapped(line.x, line.hi, chart.gapAfter);
      out.push({
        type: "scatter", mode: "lines", name: "95 % low", x: lo.x, y: lo.y, connectgaps: false,
        legendgroup: "interval", showlegend: false, line: { width: 0, color: BAND_FILL }, hoverinfo: "skip",
      }, {
        type: "scatter", mode: "lines", name: "95 % interval", x: hi.x, y: hi.y, connectgaps: false,
        legendgroup: "interval", fill: "tonexty", fillcolor: BAND_FILL, line: { width: 0, color: BAND_FILL },
        customdata: line.lo.map((v) => (v === null ? "—" : fmtPrice(v))),
        hovertemplate: "95 %: %{customdata} – %{y}<extra></extra>",
      });
    }
    const marks = line.x.map((x, i) => i).filter((i) => line.unv[i]);
    if (marks.length) {
      out.push({
        type: "scatter", mode: "markers", name: "unverified", x: marks.map((i) => plotTime(line.x[i])),
        y: marks.map((i) => line.y[i]), legendgroup: "unverified",
        marker: { symbol: "x-thin-open", size: 11, color: UNVERIFIED_COLOR, line: { width: 2, color: UNVERIFIED_COLOR } },
        hovertemplate: "unverified: sources disagree<extra></extra>",
      });
    }
    return out;
  }

  function labelStep(seconds) {
    if (seconds % 604800 === 0) return `${seconds / 604800}w`;
    if (seconds % 86400 === 0) return `${seconds / 86400}d`;
    if (seconds % 3600 === 0) return `${seconds / 3600}h`;
    if (seconds % 60 === 0) return `${seconds / 60}m`;
    return `${seconds}s`;
  }

  // Redraws at most every DRAW_EVERY ms however often live values come.
  const DRAW_EVERY = 250;
  let drawTimer = null;
  let lastDraw = 0;
  function scheduleDraw() {
    if (drawTimer !== null) return;
    drawTimer = window.setTimeout(() => {
      drawTimer = null;
      lastDraw = Date.now();
      drawChart();
    }, Math.max(0, lastDraw + DRAW_EVERY - Date.now()));
  }

  // Points and candles older than the range shown are dropped as the chart moves on.
  function trimChart(chart, now) {
    if (chart.range === "all") return;
    const start = now - Number(chart.range) * 1000;
    if (!chart.line.x.length || chart.line.x[0] >= start - Number(chart.range) * 50) return; // 5 % slack
    const from = chart.line.x.findIndex((x) => x >= start);
    const cut = from < 0 ? chart.line.x.length : from;
    for (const key of ["x", "y", "lo", "hi", "unv"]) chart.line[key].splice(0, cut);
    chart.candles = chart.candles.filter((c) => c.t + chart.step * 1000 > start);
  }

  // A new consensus value for the selected coin: update the candle of its bucket (or open one) and extend
  // the line. With raw points the line gains the point; with candles only, the line goes through each
  // candle's last observation, so the point replaces the current candle's close.
  function appendToChart(coin, quotes) {
    const chart = state.chart;
    if (!chart || chart.coin !== coin.id) return;
    const t = ms(coin.observed_at);
    const last = chart.line.x[chart.line.x.length - 1];
    if (last !== undefined && last >= t) { // known already; the sources' values may be new
      if (appendQuotes(chart, quotes)) scheduleDraw();
      return;
    }
    let sameCandle = false;
    if (chart.step) {
      const bucket = Math.floor(t / 1000 / chart.step) * chart.step * 1000;
      const candle = chart.candles[chart.candles.length - 1];
      sameCandle = Boolean(candle && candle.t === bucket);
      if (sameCandle) {
        candle.high = Math.max(candle.high, coin.price);
        candle.low = Math.min(candle.low, coin.price);
        candle.close = coin.price;
        candle.closeAt = t;
      } else if (!candle || candle.t < bucket) {
        chart.candles.push({ t: bucket, open: coin.price, high: coin.price, low: coin.price, close: coin.price,
          backfilled: false, closeAt: t });
      }
    }
    const point = { x: t, y: coin.price, lo: coin.price_low ?? null, hi: coin.price_high ?? null,
      unv: Boolean(coin.unverified) };
    if (chart.lineTier !== "raw" && sameCandle && chart.line.x.length) {
      const last = chart.line.x.length - 1;
      // the line goes through the candle's last observation; its band spans the candle's observations
      point.lo = minOf(chart.line.lo[last], point.lo);
      point.hi = maxOf(chart.line.hi[last], point.hi);
      point.unv = point.unv || chart.line.unv[last];
      for (const key of Object.keys(point)) chart.line[key][last] = point[key];
    } else {
      for (const key of Object.keys(point)) chart.line[key].push(point[key]);
    }
    appendQuotes(chart, quotes);
    trimChart(chart, t);
    scheduleDraw();
  }

  const minOf = (a, b) => (a === null ? b : b === null ? a : Math.min(a, b));
  const maxOf = (a, b) => (a === null ? b : b === null ? a : Math.max(a, b));

  function appendQuotes(chart, quotes) {
    let added = false;
    for (const q of quotes || []) {
      const line = chart.sources[q.source] || (chart.sources[q.source] = { x: [], y: [] });
      const lastSource = line.x[line.x.length - 1];
      const at = ms(q.observed_at);
      if (lastSource === undefined || lastSource < at) {
        line.x.push(at);
        line.y.push(q.price);
        added = true;
      }
    }
    return added;
  }

  // The selected coin changed in the stream: its figures and chart follow at once; each source's own
  // value (not in the stream) is read again at most every QUOTES_EVERY ms.
  const QUOTES_EVERY = 10000;
  let quotesAt = 0;
  function followSelected(coin) {
    renderCoinHead(coin, null);
    appendToChart(coin, null);
    if (Date.now() - quotesAt > QUOTES_EVERY) {
      quotesAt = Date.now();
      refreshSelected(coin.id);
    }
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
      quotesAt = Date.now();
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
        state.range = button.dataset.range === "all" ? "all" : Number(button.dataset.range);
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
  // `snapshot`: the whole list; `delta`: the changed rows, numbered (a gap: reconnect for a snapshot);
  // `error` with data: the server's database does not answer. A snapshot comes at least every 30 s, so a
  // stream silent for STALE_AFTER ms is reopened.

  const STALE_AFTER = 70000;
  const live = { source: null, seq: null, lastEventAt: 0 };
  let lastSourcesLoad = 0;

  function setLive(stateName, label) {
    const node = document.querySelector("[data-testid=live-indicator]");
    node.dataset.state = stateName;
    node.querySelector(".live-label").textContent = label;
  }

  function renderStreamAge() {
    const node = $("stream-age");
    if (!live.lastEventAt) return;
    const seconds = Math.max(0, Math.round((Date.now() - live.lastEventAt) / 1000));
    node.textContent = `stream ${seconds}s ago`;
    node.dataset.age = String(seconds);
    if (live.source && Date.now() - live.lastEventAt > STALE_AFTER) reconnect();
  }

  function received() {
    live.lastEventAt = Date.now();
    setLive("live", "live");
    renderStreamAge();
    if (Date.now() - lastSourcesLoad > 10000) {
      lastSourcesLoad = Date.now();
      loadSources();
    }
  }

  function reconnect() {
    if (live.source) live.source.close();
    live.source = null;
    setLive("reconnecting", "reconnecting");
    window.setTimeout(connect, 1000);
  }

  function connect() {
    const url = "api/stream" + (token ? "?token=" + encodeURIComponent(token) : "");
    const source = new EventSource(url);
    live.source = source;
    live.seq = null;
    live.lastEventAt = Date.now();
    const current = (handler) => (event) => { if (source === live.source) handler(event); };
    source.addEventListener("open", current(() => setLive("live", "live")));
    source.addEventListener("error", current((event) => {
      if (event.data !== undefined) { // an `event: error` of the server
        live.lastEventAt = Date.now();
        setLive("degraded", "database unavailable");
        return;
      }
      const closed = source.readyState === EventSource.CLOSED;
      setLive(closed ? "offline" : "reconnecting", closed ? "offline" : "reconnecting");
      live.seq = null; // the browser reconnects; the new stream starts with a snapshot
    }));
    source.addEventListener("snapshot", current((event) => {
      const data = JSON.parse(event.data);
      live.seq = data.seq ?? null;
      received();
      applyCoins(data.coins, data.total, data.observed_at);
      showBanner(null);
    }));
    source.addEventListener("delta", current((event) => {
      const data = JSON.parse(event.data);
      if (live.seq === null || data.seq !== live.seq + 1) {
        reconnect(); // events were missed: start again from a snapshot
        return;
      }
      live.seq = data.seq;
      received();
      applyDelta(data.coins, data.removed, data.observed_at);
    }));
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
    window.setInterval(() => {
      $("last-age").textContent = fmtAgo(state.lastObserved);
      renderStreamAge();
      for (const tr of document.querySelectorAll("#rows tr.stale")) {
        if (tr.coin) tr.title = staleText(tr.coin); // the age in the tooltip keeps counting
      }
    }, 1000);
    // A selected coin beyond the streamed list: its figures and chart are read every 10 s.
    window.setInterval(() => {
      if (state.selected && state.chart && !state.coins.some((c) => c.id === state.selected)) {
        refreshSelected(state.selected);
      }
    }, 10000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
