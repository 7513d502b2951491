// Balance page: asks a balance-service for the credit left on an sk- key, its spending and its reminders.
// Plain script, no build step and no third-party code; its words are in i18n.js. Everything the
// service returns is put on the page with textContent, never innerHTML.
"use strict";

(() => {
  const I18N = window.BalanceI18n;
  const STORAGE_KEY = "balance-service.key";
  const ENDPOINTS = [
    { path: "/v1/user/balance", card: "user-card" },
    { path: "/v1/balance", card: "token-card" },
  ];
  const CURRENCIES = ["USD", "CNY"]; // written with Intl's narrow symbol: $10.00, ¥71.00

  // ---- Language ------------------------------------------------------------------------------------

  let lang = I18N.initial();

  function t(key, params, count = null) {
    return I18N.text(lang, key, params, count);
  }

  function locale() {
    return I18N.locale(lang);
  }

  // The key lives in this variable (and the input). Only when "Remember in this tab" is ticked is it
  // copied to sessionStorage, which the browser drops with the tab; it never goes to localStorage or a
  // cookie. It is stored with the origin of the service it was sent to and is never sent anywhere else.
  let apiKey = "";
  // The remembered key put back in the input, and the origin it belongs to, until the user types in the key field.
  let restored = null;
  // A link can name the service (?api=…): a page on someone else's link must not send a key to their
  // server in one click. Origins the user agreed to on this page load are not asked about again.
  let linkOrigin = null;
  const confirmedOrigins = new Set();

  // "sk-" and up to 48 letters and digits, optionally "-" and a channel suffix,
  // all printable ASCII: anything else cannot even go in an HTTP header.
  const KEY_PATTERN = /^(?:sk-)?[A-Za-z0-9]{1,48}(?:-[\x21-\x7E]*)?$/;
  const INVISIBLE = /[\u00AD\u180E\u200B-\u200F\u2028-\u202F\u2060-\u2064\uFEFF]/;

  const form = document.getElementById("balance-form");
  const baseInput = document.getElementById("api-base");
  const keyInput = document.getElementById("api-key");
  const remember = document.getElementById("remember");
  const button = document.getElementById("check");
  const formError = document.getElementById("form-error");
  const results = document.getElementById("results");
  const template = document.getElementById("card-body");
  const confirmBox = document.getElementById("confirm-origin");
  const confirmText = document.getElementById("confirm-text");
  const confirmSend = document.getElementById("confirm-send");
  const confirmCancel = document.getElementById("confirm-cancel");
  const pageOrigin = window.location.protocol.startsWith("http") ? window.location.origin : null;

  // What is on the page, kept so that a change of language can write it again.
  let formProblem = null; // { key, params } of the form's error
  const cardMessages = new Map(); // card id -> { key, params } or { raw } while it shows a message

  /** The service URL to start with: ?api=… if given (its origin noted as the link's), else this page's origin. */
  function initialBase() {
    const fromQuery = new URLSearchParams(window.location.search).get("api");
    if (fromQuery) {
      linkOrigin = originOf(fromQuery);
      return fromQuery;
    }
    return pageOrigin || "";
  }

  function originOf(raw) {
    try {
      return new URL(normalizeBase(raw)).origin;
    } catch {
      return null;
    }
  }

  /** Why the key cannot be sent as typed (a message key), or null when it has the shape of a key. */
  function keyProblem(key) {
    if (INVISIBLE.test(key)) return "form.key_invisible";
    if (!KEY_PATTERN.test(key)) return "form.key_malformed";
    return null;
  }

  /** An http(s) base URL without a trailing slash; keeps a path prefix (service behind a proxy). */
  function normalizeBase(raw) {
    const url = new URL(raw.trim());
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError("not an http(s) URL");
    }
    return url.origin + url.pathname.replace(/\/+$/, "");
  }

  /**
   * Parse JSON keeping each number's text as the service wrote it, so an amount such as 2.469134 or
   * a 20-digit token count is shown digit for digit instead of going through a float. Browsers
   * without JSON source text access fall back to the number's shortest text form.
   */
  function parseExact(text) {
    return JSON.parse(text, (key, value, context) => {
      if (typeof value === "number") {
        const source = context && typeof context.source === "string" ? context.source : String(value);
        return { text: source, value };
      }
      return value;
    });
  }

  function isAmount(x) {
    return x !== null && typeof x === "object" && typeof x.text === "string" && typeof x.value === "number";
  }

  /**
   * One call to the service with the key: ``{data}`` on ``success: true``, else ``{error, status}``
   * with the service's own ``message`` (or the HTTP status when it sent none).
   */
  async function call(base, path, key, init = {}) {
    let response;
    try {
      response = await fetch(base + path, {
        ...init,
        headers: { Authorization: "Bearer " + key, ...(init.headers || {}) },
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch {
      return { error: null, status: 0 }; // the caller says what could not be reached
    }
    let body = null;
    try {
      body = parseExact(await response.text());
    } catch {
      body = null; // not JSON: fall back to the HTTP status below
    }
    if (!response.ok || body === null || body.success !== true) {
      const message = body && typeof body.message === "string" && body.message ? body.message : null;
      return {
        error: message || ("HTTP " + response.status + " " + response.statusText).trim(),
        status: response.status,
      };
    }
    return { data: body, status: response.status };
  }

  async function fetchBalance(base, path, key) {
    const outcome = await call(base, path, key);
    if (outcome.status === 0) return { message: { key: "error.network", params: { base } } };
    if (outcome.error) return { message: { raw: outcome.error } };
    // The documented names (remain_balance, used_balance); balance and used are aliases.
    if (!isAmount(outcome.data.remain_balance) || !isAmount(outcome.data.used_balance)) {
      return { message: { key: "error.no_balance" } };
    }
    return { data: outcome.data };
  }

  function messageText(message) {
    return message.raw !== undefined ? message.raw : t(message.key, message.params);
  }

  function setText(root, testid, text) {
    root.querySelector('[data-testid="' + testid + '"]').textContent = text;
  }

  function percent(fraction) {
    return new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 1 }).format(fraction);
  }

  function renderMessage(card, message, className) {
    cardMessages.set(card.id, { message, className });
    latestBalances.delete(card.id);
    const body = card.querySelector(".body");
    const p = document.createElement("p");
    p.className = className;
    p.dataset.testid = className;
    p.textContent = messageText(message);
    body.replaceChildren(p);
  }

  /** A card's figures: built once from the template, then updated in place on every refresh. */
  function renderBalance(card, data) {
    cardMessages.delete(card.id);
    latestBalances.set(card.id, data);
    const body = card.querySelector(".body");
    let root = body.querySelector(".figures") ? body : null;
    if (!root) {
      root = template.content.cloneNode(true);
      translate(root);
    }
    const unit = typeof data.unit === "string" ? data.unit : "";
    const unlimited = isUnlimited(data);
    if (unlimited) {
      setText(root, "balance", t("card.unlimited"));
      root.querySelector('[data-testid="balance"]').removeAttribute("title");
    } else {
      showAmount(root.querySelector('[data-testid="balance"]'), data.remain_balance, unit);
    }
    showAmount(root.querySelector('[data-testid="used"]'), data.used_balance, unit);
    setText(root, "unit", unit);

    const bar = root.querySelector('[data-testid="bar"]');
    const legend = root.querySelector('[data-testid="bar-legend"]');
    const used = Math.max(data.used_balance.value, 0);
    const total = used + (unlimited ? 0 : Math.max(data.remain_balance.value, 0));
    // No limit (or nothing ever granted): a proportion would mean nothing.
    bar.hidden = legend.hidden = unlimited || total <= 0;
    if (!bar.hidden) {
      const fraction = used / total;
      const text = t("card.bar", { used: percent(fraction), left: percent(1 - fraction) });
      bar.querySelector(".bar-used").style.width = fraction * 100 + "%";
      bar.setAttribute("aria-valuenow", String(Math.round(fraction * 1000) / 10));
      bar.setAttribute("aria-valuetext", text);
      bar.setAttribute("aria-label", t("card.share"));
      legend.textContent = text;
    }
    if (root !== body) {
      body.replaceChildren(root);
    }
  }

  function showFormError(key, params, field) {
    formProblem = { key, params };
    formError.textContent = t(key, params);
    formError.hidden = false;
    field.setAttribute("aria-invalid", "true");
    field.focus();
  }

  function clearFormError() {
    formProblem = null;
    formError.hidden = true;
    formError.textContent = "";
    baseInput.removeAttribute("aria-invalid");
    keyInput.removeAttribute("aria-invalid");
  }

  function persistKey(origin) {
    try {
      if (remember.checked && apiKey && origin) {
        window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ key: apiKey, origin }));
      } else {
        window.sessionStorage.removeItem(STORAGE_KEY);
      }
    } catch {
      // Storage disabled by the browser: the key simply is not remembered.
    }
  }

  /** Put the remembered key back, only when the service URL is the one it was remembered for. */
  function restoreKey() {
    let saved = null;
    try {
      saved = JSON.parse(window.sessionStorage.getItem(STORAGE_KEY));
    } catch {
      saved = null;
    }
    if (!saved || typeof saved.key !== "string" || typeof saved.origin !== "string") return;
    if (saved.origin !== originOf(baseInput.value)) return;
    apiKey = saved.key;
    keyInput.value = saved.key;
    remember.checked = true;
    restored = saved;
  }

  function hideConfirm() {
    confirmBox.hidden = true;
    confirmText.textContent = "";
    delete confirmBox.dataset.origin;
  }

  function writeConfirm(origin) {
    confirmText.textContent = t("confirm.text", { origin });
    confirmSend.textContent = t("confirm.send", { origin });
  }

  /** Ask before the first key goes to a service that a link chose; sending waits for the answer. */
  function askToSend(origin) {
    writeConfirm(origin);
    confirmBox.hidden = false;
    confirmBox.dataset.origin = origin;
    confirmCancel.focus();
  }

  async function onSubmit(event) {
    event.preventDefault();
    clearFormError();
    hideConfirm();
    let base;
    try {
      base = normalizeBase(baseInput.value);
    } catch {
      showFormError("form.bad_base", {}, baseInput);
      return;
    }
    const origin = new URL(base).origin;
    apiKey = keyInput.value.trim();
    if (!apiKey) {
      showFormError("form.no_key", {}, keyInput);
      return;
    }
    const problem = keyProblem(apiKey);
    if (problem) {
      showFormError(problem, {}, keyInput);
      return;
    }
    if (restored && restored.key === apiKey && restored.origin !== origin) {
      // A remembered key goes only to the service it was remembered for.
      const owner = restored.origin;
      restored = null;
      apiKey = "";
      keyInput.value = "";
      showFormError("form.key_elsewhere", { owner, origin }, keyInput);
      return;
    }
    if (origin === linkOrigin && origin !== pageOrigin && !confirmedOrigins.has(origin)) {
      askToSend(origin);
      return;
    }
    persistKey(origin);

    button.disabled = true;
    results.hidden = false;
    results.dataset.state = "loading";
    results.setAttribute("aria-busy", "true");
    const cards = ENDPOINTS.map((e) => document.getElementById(e.card));
    cards.forEach((card) => renderMessage(card, { key: "card.loading" }, "loading"));

    const outcomes = await Promise.all(ENDPOINTS.map((e) => fetchBalance(base, e.path, apiKey)));
    outcomes.forEach((outcome, i) => {
      cards[i].classList.toggle("is-error", Boolean(outcome.message));
      if (outcome.message) {
        renderMessage(cards[i], outcome.message, "error");
      } else {
        renderBalance(cards[i], outcome.data);
      }
    });

    results.setAttribute("aria-busy", "false");
    results.dataset.state = "done";
    button.disabled = false;
    startLiveView(base, apiKey);
  }

  // ---- Amounts, numbers and dates in the page's language ----------------------------------------

  const REFRESH_SECONDS = 60;
  const CHART = { width: 600, height: 160, gap: 2, top: 8 };
  const SVG_NS = "http://www.w3.org/2000/svg";
  const usageSection = document.getElementById("usage");
  const usageScope = document.getElementById("usage-scope");
  const refreshStatus = document.getElementById("refresh-status");
  const latestBalances = new Map(); // card id -> the last balance answer shown on it
  // What the live view shows: the service and key of the last check; null until one succeeded.
  let live = null;
  let refreshTimer = null;
  let refreshing = false;
  let rerun = null; // "initial" or "refresh": asked for while a refresh ran
  let capabilities = null; // the last GET /v1/capabilities answer (null: not known, an older service)
  let usageShown = null; // { data } or { note } or { message }: what the usage box shows
  let refreshShown = null; // { time } or { error }: what the refresh line says

  function isUnlimited(data) {
    return data.remain_balance.value === -1 || data.unlimited_quota === true;
  }

  /** Seconds between refreshes: ?refresh=N (at least 0.2, for tests and kiosks), else a minute. */
  function refreshSeconds() {
    const asked = Number(new URLSearchParams(window.location.search).get("refresh"));
    return Number.isFinite(asked) && asked >= 0.2 ? asked : REFRESH_SECONDS;
  }

  /**
   * A decimal numeral rounded half up to ``places``, as plain digits, done on the digits themselves:
   * Intl.NumberFormat rounds a string exactly only where the browser has its version 3, and an
   * amount must not go through a float elsewhere (2.465 is 2.46499… as a double).
   */
  function roundDecimal(text, places) {
    const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(text);
    if (!match) {
      // Not plain digits (an exponent): the number's value is all there is to go on.
      return roundDecimal(Number(text).toFixed(Math.max(places, 0) + 6), places);
    }
    const [, sign, whole, fraction = ""] = match;
    const digits = (whole + fraction.padEnd(places + 1, "0").slice(0, places + 1)).split("").map(Number);
    let carry = digits.pop() >= 5 ? 1 : 0;
    for (let i = digits.length - 1; i >= 0 && carry; i--) {
      const d = digits[i] + carry;
      digits[i] = d % 10;
      carry = d >= 10 ? 1 : 0;
    }
    if (carry) digits.unshift(1);
    const intPart = digits.slice(0, digits.length - places).join("").replace(/^0+(?=\d)/, "") || "0";
    const fracPart = digits.slice(digits.length - places).join("");
    const zero = /^0*$/.test(intPart) && /^0*$/.test(fracPart);
    return (sign && !zero ? "-" : "") + intPart + (places > 0 ? "." + fracPart : "");
  }

  /**
   * ``plain`` (exact digits, already rounded) written by Intl in the page's locale: grouping, and a
   * currency's symbol. A browser that would read the string as a float and lose digits gets plain
   * thousands separators instead.
   */
  function writeNumber(plain, options) {
    const formatted = new Intl.NumberFormat(locale(), options).format(plain);
    const digitsOf = (text) => text.replace(/\D/g, "").replace(/^0+(?=\d)/, "");
    if (digitsOf(formatted) === digitsOf(plain)) return formatted;
    const [whole, fraction] = plain.split(".");
    return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + (fraction ? "." + fraction : "");
  }

  /** An amount for people (``$10.00``, ``¥71.00``, ``2,500,000 tokens``, ``€3.50``) and its exact text. */
  function formatAmount(amount, unit) {
    const exact = amount.text + (unit ? " " + unit : "");
    if (unit === "tokens") {
      const n = writeNumber(roundDecimal(amount.text, 0), { maximumFractionDigits: 0 });
      return { shown: t("amount.tokens", { n }), exact };
    }
    const rounded = roundDecimal(amount.text, 2);
    const fixed = { minimumFractionDigits: 2, maximumFractionDigits: 2 };
    if (CURRENCIES.includes(unit)) {
      const options = { ...fixed, style: "currency", currency: unit, currencyDisplay: "narrowSymbol" };
      return { shown: writeNumber(rounded, options), exact };
    }
    const negative = rounded.startsWith("-");
    const digits = writeNumber(negative ? rounded.slice(1) : rounded, fixed);
    let shown;
    if (unit && !/\p{L}/u.test(unit)) {
      shown = unit + digits; // a gateway's custom currency sign goes in front: €3.50
    } else {
      shown = digits + (unit ? " " + unit : ""); // a word goes after: 12.00 credits
    }
    return { shown: (negative ? "-" : "") + shown, exact };
  }

  /** Put a rounded amount in ``element``, with the exact figure in its tooltip. */
  function showAmount(element, amount, unit) {
    const { shown, exact } = formatAmount(amount, unit);
    element.textContent = shown;
    element.title = exact;
  }

  /** A UTC day of the service (``YYYY-MM-DD``) in the page's locale; ``short`` leaves out the year. */
  function formatDay(iso, short = false) {
    const [y, m, d] = iso.split("-").map(Number);
    const options = short ? { month: "short", day: "numeric" } : { dateStyle: "medium" };
    return new Intl.DateTimeFormat(locale(), { ...options, timeZone: "UTC" }).format(Date.UTC(y, m - 1, d));
  }

  function formatMoment(iso) {
    return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
  }

  function requestsText(n) {
    return t("usage.requests", { n: new Intl.NumberFormat(locale()).format(n) }, n);
  }

  // ---- Usage history, forecast and the automatic refresh ------------------------------------

  async function fetchUsage(base, key, scope) {
    const outcome = await call(base, "/v1/usage?scope=" + encodeURIComponent(scope), key);
    if (outcome.status === 0) return { message: { key: "usage.unreachable", params: { base } } };
    if (outcome.status === 409) return { note: { raw: outcome.error } }; // a service without /v1/capabilities
    if (outcome.error || !Array.isArray(outcome.data.days)) {
      return { message: { key: "usage.failed", params: { error: outcome.error || "" } } };
    }
    return { data: outcome.data };
  }

  /** What the service offers this key; null from a service older than ``GET /v1/capabilities``. */
  async function fetchCapabilities(base, key) {
    const outcome = await call(base, "/v1/capabilities", key);
    return outcome.data && outcome.data.usage_history ? outcome.data : null;
  }

  /** Why there is no history, in the page's words when the service gave a reason the page knows. */
  function historyNote(history) {
    const known = { no_logs_table: "usage.no_logs_table", consume_not_logged: "usage.consume_not_logged" };
    if (known[history.reason]) return { key: known[history.reason] };
    return history.message ? { raw: history.message } : { key: "usage.no_logs_table" };
  }

  function daysText(days) {
    if (days < 1) return t("forecast.less_than_a_day");
    const n = days < 10 ? Math.floor(days * 10) / 10 : Math.floor(days);
    return t("forecast.days", { n: new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 }).format(n) }, n);
  }

  /** The forecast in words, from /v1/usage's ``forecast`` and the scope's balance. */
  function forecastText(forecast, unit, balance) {
    if (balance && isUnlimited(balance)) return t("forecast.unlimited");
    if (!forecast || forecast.days_left === null || forecast.days_left === undefined) return t("forecast.none");
    const rate = formatAmount(forecast.daily_rate, unit).shown;
    const days = forecast.days_left.value;
    if (days <= 0) return t("forecast.used_up", { rate });
    if (typeof forecast.runs_out_on === "string") {
      return t("forecast.left_until", { rate, days: daysText(days), date: formatDay(forecast.runs_out_on) });
    }
    return t("forecast.left", { rate, days: daysText(days) });
  }

  function svg(name, attributes) {
    const element = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    return element;
  }

  /** One bar per day, drawn into the chart's SVG, and the same days as a table; bars already there are updated. */
  function drawChart(days, unit) {
    const chart = usageSection.querySelector('[data-testid="chart"]');
    const group = chart.querySelector(".bars");
    const max = Math.max(0, ...days.map((d) => d.used.value));
    const slot = CHART.width / Math.max(days.length, 1);
    const plot = CHART.height - CHART.top;
    if (group.children.length !== days.length) {
      group.replaceChildren(
        ...days.map(() => {
          const bar = svg("rect", { class: "day-bar", "data-testid": "day-bar" });
          bar.append(svg("title", {}));
          return bar;
        }),
      );
    }
    const rows = [];
    days.forEach((day, i) => {
      const bar = group.children[i];
      // A day where refunds exceeded spending has no bar above the axis.
      const height = max > 0 ? (Math.max(day.used.value, 0) / max) * plot : 0;
      bar.setAttribute("x", String(i * slot + CHART.gap / 2));
      bar.setAttribute("width", String(Math.max(slot - CHART.gap, 1)));
      bar.setAttribute("y", String(CHART.height - height));
      bar.setAttribute("height", String(height));
      bar.dataset.date = day.date;
      bar.dataset.used = day.used.text;
      const amount = formatAmount(day.used, unit).shown;
      const requests = requestsText(day.requests.value);
      bar.firstChild.textContent = t("usage.day", { date: formatDay(day.date), amount, requests });
      const row = document.createElement("tr");
      const cells = [formatDay(day.date), amount, new Intl.NumberFormat(locale()).format(day.requests.value)];
      for (const [n, text] of cells.entries()) {
        const cell = document.createElement(n === 0 ? "th" : "td");
        if (n === 0) cell.scope = "row";
        cell.textContent = text;
        row.append(cell);
      }
      rows.push(row);
    });
    usageSection.querySelector(".day-table tbody").replaceChildren(...rows);
    const first = days.length ? formatDay(days[0].date, true) : "";
    const last = days.length ? formatDay(days[days.length - 1].date, true) : "";
    setText(usageSection, "chart-caption", t("usage.chart", { start: first, end: last }));
    setText(usageSection, "chart-start", first);
    setText(usageSection, "chart-end", last);
    const peak = days.find((d) => d.used.value === max);
    if (peak && max > 0) {
      showAmount(usageSection.querySelector('[data-testid="chart-max"]'), peak.used, unit);
    } else {
      setText(usageSection, "chart-max", "");
    }
  }

  function drawModels(models, unit) {
    const list = usageSection.querySelector('[data-testid="models"]');
    const top = models.slice(0, 5);
    while (list.children.length > top.length) list.lastChild.remove();
    top.forEach((model, i) => {
      let item = list.children[i];
      if (!item) {
        item = document.createElement("li");
        item.dataset.testid = "model";
        const name = document.createElement("span");
        name.className = "model-name";
        const used = document.createElement("span");
        used.className = "model-used";
        const requests = document.createElement("span");
        requests.className = "model-requests";
        item.append(name, used, requests);
        list.append(item);
      }
      item.children[0].textContent = model.model || t("usage.no_model");
      showAmount(item.children[1], model.used, unit);
      item.children[2].textContent = requestsText(model.requests.value);
    });
    usageSection.querySelector('[data-testid="no-models"]').hidden = top.length > 0;
  }

  /** Show what the usage box has: the figures, a calm note (no history kept), or why loading failed. */
  function renderUsage() {
    const view = usageSection.querySelector(".usage-view");
    const message = usageSection.querySelector('[data-testid="usage-message"]');
    usageSection.hidden = usageShown === null;
    if (usageShown === null) return;
    if (!usageShown.data) {
      view.hidden = true;
      const note = usageShown.note || usageShown.message;
      message.textContent = messageText(note);
      message.className = usageShown.note ? "usage-message note" : "usage-message error";
      message.dataset.kind = usageShown.note ? "note" : "error";
      message.hidden = false;
      return;
    }
    const data = usageShown.data;
    const unit = typeof data.unit === "string" ? data.unit : "";
    const balance = latestBalances.get(data.scope === "key" ? "token-card" : "user-card");
    message.hidden = true;
    view.hidden = false;
    setText(usageSection, "forecast", forecastText(data.forecast, unit, balance));
    showAmount(usageSection.querySelector('[data-testid="total-used"]'), data.total_used, unit);
    drawChart(data.days, unit);
    drawModels(data.models, unit);
  }

  /** A usage outcome arrives: a failed refresh keeps the figures from before (and the refresh line says so). */
  function takeUsage(outcome, initial) {
    if (outcome.message && !initial && usageShown && usageShown.data) return;
    usageShown = outcome;
    renderUsage();
  }

  function renderRefreshStatus() {
    if (refreshShown === null) {
      refreshStatus.hidden = true;
      return;
    }
    refreshStatus.textContent = refreshShown.error
      ? t("refresh.failed", { error: messageText(refreshShown.error) })
      : t("refresh.updated", {
          time: new Intl.DateTimeFormat(locale(), { timeStyle: "medium" }).format(refreshShown.time),
          seconds: refreshSeconds(),
        });
    refreshStatus.hidden = false;
  }

  /** Fetch everything the view shows and update it in place; on the first load, the usage only. */
  async function refreshView(initial) {
    if (!live) return;
    if (refreshing) {
      // Asked for while one runs (the scope changed, the tab came back): run once more after it.
      rerun = rerun === "initial" || initial ? "initial" : "refresh";
      return;
    }
    refreshing = true;
    const { base, key } = live;
    const current = () => live && live.key === key && live.base === base; // no new check started meanwhile
    try {
      const balances = initial ? [] : await Promise.all(ENDPOINTS.map((e) => fetchBalance(base, e.path, key)));
      if (!current()) return;
      let failed = null;
      balances.forEach((outcome, i) => {
        const card = document.getElementById(ENDPOINTS[i].card);
        if (outcome.message) {
          failed = failed || outcome.message;
        } else {
          card.classList.remove("is-error");
          renderBalance(card, outcome.data);
        }
      });
      const offered = await fetchCapabilities(base, key);
      if (!current()) return;
      capabilities = offered;
      const history = offered ? offered.usage_history : null;
      const usage =
        history && !history.available
          ? { note: historyNote(history) }
          : await fetchUsage(base, key, usageScope.value);
      if (!current()) return;
      takeUsage(usage, initial);
      if (usage.message) failed = failed || usage.message;
      refreshShown = failed ? { error: failed } : { time: new Date() };
      renderRefreshStatus();
      usageSection.dataset.refreshes = String(Number(usageSection.dataset.refreshes || 0) + 1);
    } finally {
      refreshing = false;
    }
    if (rerun !== null) {
      const again = rerun === "initial";
      rerun = null;
      await refreshView(again);
    }
  }

  function stopRefresh() {
    if (refreshTimer !== null) {
      clearTimeout(refreshTimer);
      refreshTimer = null;
    }
  }

  /** The next refresh, only while the tab is visible (a hidden tab asks the service nothing). */
  function scheduleRefresh() {
    stopRefresh();
    if (!live || document.visibilityState !== "visible") return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      if (document.visibilityState !== "visible") return;
      await refreshView(false);
      scheduleRefresh();
    }, refreshSeconds() * 1000);
  }

  /** A new check is starting: the previous key's view stops refreshing. */
  function stopLiveView() {
    stopRefresh();
    live = null;
    rerun = null;
  }

  /** After a check: show the usage and the reminders of that key and keep everything current. */
  async function startLiveView(base, key) {
    stopRefresh();
    live = latestBalances.size > 0 ? { base, key } : null;
    if (!live) {
      usageShown = null;
      refreshShown = null;
      renderUsage();
      renderRefreshStatus();
      alertsSection.hidden = true;
      return;
    }
    await refreshView(true);
    await loadAlerts(); // after the capabilities, which say what the form offers
    scheduleRefresh();
  }

  // ---- Reminders (balance alerts) ------------------------------------------------------------

  const alertsSection = document.getElementById("alerts");
  const alertList = alertsSection.querySelector('[data-testid="alert-list"]');
  const alertsNone = alertsSection.querySelector('[data-testid="alerts-none"]');
  const alertsError = alertsSection.querySelector('[data-testid="alerts-error"]');
  const alertsStatus = alertsSection.querySelector('[data-testid="alerts-status"]');
  const alertForm = document.getElementById("alert-form");
  const alertValue = document.getElementById("alert-value");
  const alertScope = document.getElementById("alert-scope");
  const alertChannel = document.getElementById("alert-channel");
  const alertTarget = document.getElementById("alert-target");
  const alertSecret = alertsSection.querySelector('[data-testid="alert-secret"]');
  const ALERTS_PATH = "/v1/user/balance/alerts";
  const DEFAULT_CHANNELS = ["webhook_url"]; // what every version of the service takes
  let alertsShown = []; // the alerts of the last list
  let alertsProblem = null; // { key, params } or { raw }: the error line
  let alertsDone = null; // { key, params }: the status line after an action

  function channels() {
    const offered = capabilities && capabilities.alerts && Array.isArray(capabilities.alerts.channels);
    return offered && capabilities.alerts.channels.length ? capabilities.alerts.channels : DEFAULT_CHANNELS;
  }

  function canTest() {
    return Boolean(capabilities && capabilities.alerts && capabilities.alerts.test === true);
  }

  function alertKind() {
    return alertForm.querySelector('input[name="kind"]:checked').value;
  }

  function balanceUnit() {
    const data = latestBalances.get("user-card") || latestBalances.get("token-card");
    return data && typeof data.unit === "string" ? data.unit : "";
  }

  /** The form's labels and the channel choices, for the current language and what the service offers. */
  function renderAlertForm() {
    const kind = alertKind();
    alertsSection.querySelector('[data-testid="alert-value-label"]').textContent =
      kind === "threshold" ? t("alerts.amount", { unit: balanceUnit() }) : t("alerts.days");
    const chosen = alertChannel.value;
    alertChannel.replaceChildren(
      ...channels().map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = t("alerts.channel." + name);
        return option;
      }),
    );
    if (channels().includes(chosen)) alertChannel.value = chosen;
    alertChannel.disabled = channels().length < 2;
    const channel = alertChannel.value;
    alertsSection.querySelector('[data-testid="alert-target-label"]').textContent = t("alerts.target." + channel);
    alertTarget.type = channel === "email" ? "email" : "url";
    alertTarget.placeholder = channel === "email" ? "name@example.com" : "https://";
  }

  /** The alert in a line: what it watches and at what. */
  function describeAlert(alert) {
    const scope = alert.scope === "token" ? "token" : "account";
    if (alert.days_left !== null && alert.days_left !== undefined) {
      const days = new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 }).format(alert.days_left.value);
      return t("alerts." + scope + "_days", { days });
    }
    const amount = isAmount(alert.threshold) ? formatAmount(alert.threshold, alert.unit).shown : "";
    return t("alerts." + scope + "_below", { amount });
  }

  /** Where the alert's notifications go: the target of its channel, when this key may see it. */
  function alertTargetText(alert) {
    // The API fills the field of the alert's channel (masked where it holds a secret) and leaves the others null.
    const fields = ["webhook_url", "notify_url", "email"];
    const target = fields.map((name) => alert[name]).find((value) => typeof value === "string" && value);
    return target ? t("alerts.sends_to", { target }) : t("alerts.hidden_target");
  }

  function alertButton(label, text, action) {
    const control = document.createElement("button");
    control.type = "button";
    control.className = "secondary small";
    control.textContent = text;
    control.setAttribute("aria-label", label);
    control.addEventListener("click", action);
    return control;
  }

  function renderAlerts() {
    alertList.replaceChildren(
      ...alertsShown.map((alert) => {
        const what = describeAlert(alert);
        const item = document.createElement("li");
        item.dataset.testid = "alert";
        item.dataset.id = String(alert.id.value);
        const title = document.createElement("p");
        title.className = "alert-what";
        title.textContent = what;
        const details = document.createElement("p");
        details.className = "hint alert-details";
        const state = alert.state === "below" ? t("alerts.fired") : t("alerts.armed");
        const target = alertTargetText(alert);
        details.textContent =
          typeof alert.last_notified_at === "string"
            ? t("alerts.details_notified", { target, state, time: formatMoment(alert.last_notified_at) })
            : t("alerts.details", { target, state });
        item.append(title, details);
        if (typeof alert.last_error === "string" && alert.last_error) {
          const failure = document.createElement("p");
          failure.className = "error alert-failure";
          failure.textContent = t("alerts.last_error", { error: alert.last_error });
          item.append(failure);
        }
        const actions = document.createElement("div");
        actions.className = "actions";
        if (canTest()) {
          actions.append(
            alertButton(t("alerts.test_label", { what }), t("alerts.test"), () => testAlert(alert, what)),
          );
        }
        actions.append(
          alertButton(t("alerts.delete_label", { what }), t("alerts.delete"), () => deleteAlert(alert, what)),
        );
        item.append(actions);
        return item;
      }),
    );
    alertsNone.hidden = alertsShown.length > 0 || alertsProblem !== null;
    alertsError.hidden = alertsProblem === null;
    alertsError.textContent = alertsProblem ? messageText(alertsProblem) : "";
    alertsStatus.textContent = alertsDone ? t(alertsDone.key, alertsDone.params) : "";
    renderAlertForm();
  }

  async function loadAlerts() {
    if (!live) return;
    const { base, key } = live;
    const outcome = await call(base, ALERTS_PATH, key);
    if (!live || live.key !== key || live.base !== base) return;
    alertsSection.hidden = false;
    if (outcome.data && Array.isArray(outcome.data.alerts)) {
      alertsShown = outcome.data.alerts;
      alertsProblem = null;
    } else {
      alertsShown = [];
      alertsProblem =
        outcome.status === 0
          ? { key: "alerts.failed", params: { error: base } }
          : { key: "alerts.failed", params: { error: outcome.error } };
    }
    renderAlerts();
  }

  /** An action's answer: the service's own words when it refused. */
  function actionFailed(outcome) {
    alertsProblem = outcome.status === 0 ? { key: "error.network", params: { base: live.base } } : { raw: outcome.error };
    alertsDone = null;
    renderAlerts();
  }

  async function deleteAlert(alert, what) {
    if (!live) return;
    const outcome = await call(live.base, ALERTS_PATH + "/" + alert.id.text, live.key, { method: "DELETE" });
    if (outcome.error !== undefined) {
      actionFailed(outcome);
      return;
    }
    alertsProblem = null;
    alertsDone = { key: "alerts.deleted", params: { what } };
    await loadAlerts();
    alertsSection.querySelector("h2").focus(); // the button is gone: keep the keyboard in this box
  }

  async function testAlert(alert, what) {
    if (!live) return;
    const outcome = await call(live.base, ALERTS_PATH + "/" + alert.id.text + "/test", live.key, { method: "POST" });
    if (outcome.error !== undefined) {
      actionFailed(outcome);
      return;
    }
    alertsProblem = null;
    alertsDone = { key: "alerts.test_sent", params: { what } };
    renderAlerts();
  }

  /** The number as typed, sent as a JSON number with exactly those digits (no float in between). */
  function jsonNumber(text) {
    return typeof JSON.rawJSON === "function" ? JSON.rawJSON(text) : Number(text);
  }

  async function createAlert(event) {
    event.preventDefault();
    if (!live) return;
    const raw = alertValue.value.trim();
    if (!/^-?\d+(?:\.\d+)?$/.test(raw)) {
      alertsProblem = { key: "alerts.not_a_number" };
      alertsDone = null;
      alertValue.setAttribute("aria-invalid", "true");
      renderAlerts();
      alertValue.focus();
      return;
    }
    alertValue.removeAttribute("aria-invalid");
    const body = { [alertKind()]: jsonNumber(raw), scope: alertScope.value };
    body[alertChannel.value] = alertTarget.value.trim();
    const outcome = await call(live.base, ALERTS_PATH, live.key, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (outcome.error !== undefined) {
      actionFailed(outcome);
      alertValue.focus();
      return;
    }
    const created = outcome.data.alert;
    alertsProblem = null;
    alertsDone = { key: "alerts.created", params: { what: describeAlert(created) } };
    alertSecret.hidden = typeof created.secret !== "string";
    alertSecret.querySelector('[data-testid="alert-secret-value"]').textContent = created.secret || "";
    alertValue.value = "";
    alertTarget.value = "";
    await loadAlerts();
  }

  // ---- Language switch ----------------------------------------------------------------------

  /** The static words of ``root`` (elements marked data-i18n) in the current language. */
  function translate(root) {
    for (const element of root.querySelectorAll("[data-i18n]")) {
      element.textContent = t(element.dataset.i18n);
    }
  }

  /** Write the whole page in ``next``: the static words, and what is shown from the service's answers. */
  function applyLanguage(next) {
    lang = next;
    document.documentElement.lang = lang;
    translate(document);
    document.title = t("page.title");
    for (const control of document.querySelectorAll(".languages [data-lang]")) {
      control.setAttribute("aria-pressed", String(control.dataset.lang === lang));
    }
    if (formProblem) formError.textContent = t(formProblem.key, formProblem.params);
    if (confirmBox.dataset.origin) writeConfirm(confirmBox.dataset.origin);
    for (const e of ENDPOINTS) {
      const card = document.getElementById(e.card);
      const data = latestBalances.get(e.card);
      if (data) {
        card.querySelector(".body").replaceChildren(); // the template's words again, in this language
        renderBalance(card, data);
      } else if (cardMessages.has(e.card)) {
        const { message, className } = cardMessages.get(e.card);
        renderMessage(card, message, className);
      }
    }
    renderUsage();
    renderRefreshStatus();
    renderAlerts();
  }

  for (const control of document.querySelectorAll(".languages [data-lang]")) {
    control.addEventListener("click", () => {
      I18N.remember(control.dataset.lang);
      applyLanguage(control.dataset.lang);
    });
  }

  // ---- Wiring ------------------------------------------------------------------------------

  document.addEventListener("visibilitychange", async () => {
    if (document.visibilityState !== "visible") {
      stopRefresh();
      return;
    }
    if (!live) return;
    await refreshView(false); // back in view: bring the figures up to date at once
    scheduleRefresh();
  });
  form.addEventListener("submit", stopLiveView); // runs before onSubmit, registered below
  usageScope.addEventListener("change", async () => {
    if (!live) return;
    await refreshView(true);
    scheduleRefresh();
  });
  for (const radio of alertForm.querySelectorAll('input[name="kind"]')) {
    radio.addEventListener("change", renderAlertForm);
  }
  alertChannel.addEventListener("change", renderAlertForm);
  alertForm.addEventListener("submit", createAlert);

  baseInput.value = initialBase();
  restoreKey();
  remember.addEventListener("change", () => {
    apiKey = keyInput.value.trim() || apiKey;
    persistKey(originOf(baseInput.value));
  });
  keyInput.addEventListener("input", () => {
    restored = null;
  });
  confirmSend.addEventListener("click", () => {
    confirmedOrigins.add(confirmBox.dataset.origin);
    hideConfirm();
    form.requestSubmit();
  });
  confirmCancel.addEventListener("click", () => {
    hideConfirm();
    baseInput.focus();
  });
  form.addEventListener("submit", onSubmit);
  applyLanguage(lang);
  form.dataset.ready = "true";
})();
