// Balance page: asks a balance-service for the credit left on an sk- key.
// Plain script, no build step and no third-party code. Everything the
// service returns is put on the page with textContent, never innerHTML.
"use strict";

(() => {
  const STORAGE_KEY = "balance-service.key";
  const ENDPOINTS = [
    { path: "/v1/user/balance", card: "user-card" },
    { path: "/v1/balance", card: "token-card" },
  ];

  // The key lives in this variable (and the input). Only when "Remember in
  // this tab" is ticked is it copied to sessionStorage, which the browser drops
  // with the tab; it never goes to localStorage or a cookie. It is stored with
  // the origin of the service it was sent to and is never sent anywhere else.
  let apiKey = "";
  // The remembered key put back in the input, and the origin it belongs to,
  // until the user types in the key field.
  let restored = null;
  // A link can name the service (?api=…): a page on someone else's link must
  // not send a key to their server in one click. Origins the user agreed to
  // on this page load are not asked about again.
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

  /** Why the key cannot be sent as typed, or null when it has the shape of a key. */
  function keyProblem(key) {
    if (INVISIBLE.test(key)) {
      return "This API key is malformed: it contains an invisible character (such as a zero-width space), " +
        "probably copied along with it. Type or paste the key again.";
    }
    if (!KEY_PATTERN.test(key)) {
      return "This API key is malformed: a key is sk- followed by letters and digits, without spaces.";
    }
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
   * Parse JSON keeping each number's text as the service wrote it, so an
   * amount such as 2.469134 or a 20-digit token count is shown digit for
   * digit instead of going through a float. Browsers without JSON source
   * text access fall back to the number's shortest text form.
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

  async function fetchBalance(base, path, key) {
    let response;
    try {
      response = await fetch(base + path, {
        headers: { Authorization: "Bearer " + key },
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch {
      return {
        error:
          "Could not reach " + base + ": a network error, or the service does not allow " +
          "requests from this page's origin (CORS).",
      };
    }
    let body = null;
    try {
      body = parseExact(await response.text());
    } catch {
      body = null; // not JSON: fall back to the HTTP status below
    }
    if (!response.ok || body === null || body.success !== true) {
      const message = body && typeof body.message === "string" && body.message ? body.message : null;
      return { error: message || ("HTTP " + response.status + " " + response.statusText).trim() };
    }
    // The documented names (remain_balance, used_balance); balance and used are aliases.
    if (!isAmount(body.remain_balance) || !isAmount(body.used_balance)) {
      return { error: "The service answered without a balance." };
    }
    return { data: body };
  }

  function setText(root, testid, text) {
    root.querySelector('[data-testid="' + testid + '"]').textContent = text;
  }

  function percent(fraction) {
    return (Math.round(fraction * 1000) / 10).toString() + "%";
  }

  function renderMessage(card, text, className) {
    const body = card.querySelector(".body");
    const p = document.createElement("p");
    p.className = className;
    p.dataset.testid = className;
    p.textContent = text;
    body.replaceChildren(p);
  }

  /** A card's figures: built once from the template, then updated in place on every refresh. */
  function renderBalance(card, data) {
    latestBalances.set(card.id, data);
    const body = card.querySelector(".body");
    let root = body.querySelector(".figures") ? body : null;
    if (!root) {
      root = template.content.cloneNode(true);
    }
    const unit = typeof data.unit === "string" ? data.unit : "";
    const unlimited = isUnlimited(data);
    if (unlimited) {
      setText(root, "balance", "Unlimited");
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
      const text = percent(fraction) + " used, " + percent(1 - fraction) + " remaining";
      bar.querySelector(".bar-used").style.width = fraction * 100 + "%";
      bar.setAttribute("aria-valuenow", String(Math.round(fraction * 1000) / 10));
      bar.setAttribute("aria-valuetext", text);
      bar.setAttribute("aria-label", "Share of credit used");
      legend.textContent = text;
    }
    if (root !== body) {
      body.replaceChildren(root);
    }
  }

  function showFormError(text, field) {
    formError.textContent = text;
    formError.hidden = false;
    field.setAttribute("aria-invalid", "true");
    field.focus();
  }

  function clearFormError() {
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
  }

  /** Ask before the first key goes to a service that a link chose; sending waits for the answer. */
  function askToSend(origin) {
    confirmText.textContent =
      "The link that opened this page set the service to " + origin + ", which is not this page's own " +
      "site. Your API key will be sent there. Send it only if you trust " + origin + ".";
    confirmSend.textContent = "Send key to " + origin;
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
      showFormError("Enter the service URL, for example https://balance.example.com.", baseInput);
      return;
    }
    const origin = new URL(base).origin;
    apiKey = keyInput.value.trim();
    if (!apiKey) {
      showFormError("Enter an API key.", keyInput);
      return;
    }
    const problem = keyProblem(apiKey);
    if (problem) {
      showFormError(problem, keyInput);
      return;
    }
    if (restored && restored.key === apiKey && restored.origin !== origin) {
      // A remembered key goes only to the service it was remembered for.
      const owner = restored.origin;
      restored = null;
      apiKey = "";
      keyInput.value = "";
      showFormError(
        "The remembered key belongs to " + owner + ". Type the key to send it to " + origin + ".",
        keyInput,
      );
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
    cards.forEach((card) => renderMessage(card, "Loading…", "loading"));

    const outcomes = await Promise.all(ENDPOINTS.map((e) => fetchBalance(base, e.path, apiKey)));
    outcomes.forEach((outcome, i) => {
      cards[i].classList.toggle("is-error", Boolean(outcome.error));
      if (outcome.error) {
        renderMessage(cards[i], outcome.error, "error");
      } else {
        renderBalance(cards[i], outcome.data);
      }
    });

    results.setAttribute("aria-busy", "false");
    results.dataset.state = "done";
    button.disabled = false;
    startLiveView(base, apiKey);
  }

  // ---- Usage history, forecast and the automatic refresh ------------------------------------

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

  function isUnlimited(data) {
    return data.remain_balance.value === -1 || data.unlimited_quota === true;
  }

  /** Seconds between refreshes: ?refresh=N (at least 0.2, for tests and kiosks), else a minute. */
  function refreshSeconds() {
    const asked = Number(new URLSearchParams(window.location.search).get("refresh"));
    return Number.isFinite(asked) && asked >= 0.2 ? asked : REFRESH_SECONDS;
  }

  /**
   * A decimal numeral rounded half up to ``places`` and grouped in thousands,
   * done on the digits themselves so that no amount goes through a float.
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
    let intPart = digits.slice(0, digits.length - places).join("").replace(/^0+(?=\d)/, "");
    const fracPart = digits.slice(digits.length - places).join("");
    intPart = intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const zero = /^[0,]*$/.test(intPart) && /^0*$/.test(fracPart);
    return (sign && !zero ? "-" : "") + intPart + (places > 0 ? "." + fracPart : "");
  }

  /** An amount for people (``$10.00``, ``¥71.00``, ``2,500,000 tokens``, ``€3.50``) and its exact text. */
  function formatAmount(amount, unit) {
    const exact = amount.text + (unit ? " " + unit : "");
    if (unit === "tokens") {
      return { shown: roundDecimal(amount.text, 0) + " tokens", exact };
    }
    const rounded = roundDecimal(amount.text, 2);
    const negative = rounded.startsWith("-");
    const digits = negative ? rounded.slice(1) : rounded;
    const symbol = { USD: "$", CNY: "¥" }[unit];
    let shown;
    if (symbol || (unit && !/\p{L}/u.test(unit))) {
      shown = (symbol || unit) + digits; // a currency sign goes in front: $10.00, €3.50
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

  async function fetchUsage(base, key, scope) {
    let response;
    try {
      response = await fetch(base + "/v1/usage?scope=" + encodeURIComponent(scope), {
        headers: { Authorization: "Bearer " + key },
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer",
      });
    } catch {
      return { error: "Could not reach " + base + " for the usage history." };
    }
    let body = null;
    try {
      body = parseExact(await response.text());
    } catch {
      body = null;
    }
    if (!response.ok || body === null || body.success !== true || !Array.isArray(body.days)) {
      const message = body && typeof body.message === "string" && body.message ? body.message : null;
      return {
        error: message || ("HTTP " + response.status + " " + response.statusText).trim(),
        unavailable: response.status === 409, // the gateway keeps no usage logs
      };
    }
    return { data: body };
  }

  function daysText(days) {
    if (days < 1) return "less than a day";
    const n = days < 10 ? Math.floor(days * 10) / 10 : Math.floor(days);
    return "about " + n + (n === 1 ? " day" : " days");
  }

  /** The forecast in words, from /v1/usage's ``forecast`` and the scope's balance. */
  function forecastText(forecast, unit, balance) {
    if (balance && isUnlimited(balance)) {
      return "Unlimited credit: it does not run out.";
    }
    if (!forecast || forecast.days_left === null || forecast.days_left === undefined) {
      return "Nothing was spent in the last 7 days, so there is no forecast.";
    }
    const rate = formatAmount(forecast.daily_rate, unit).shown;
    const days = forecast.days_left.value;
    if (days <= 0) {
      return "At the last 7 days' rate (" + rate + " a day), the credit is used up.";
    }
    let text = "At the last 7 days' rate (" + rate + " a day), " + daysText(days) + " left";
    if (typeof forecast.runs_out_on === "string") {
      text += "; runs out around " + forecast.runs_out_on;
    }
    return text + ".";
  }

  function svg(name, attributes) {
    const element = document.createElementNS(SVG_NS, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    return element;
  }

  /** One bar per day, drawn into the chart's SVG; bars already there are updated, not redrawn. */
  function drawChart(days, unit) {
    const chart = usageSection.querySelector('[data-testid="chart"]');
    const group = chart.querySelector(".bars");
    const max = Math.max(0, ...days.map((d) => d.used.value));
    const slot = CHART.width / Math.max(days.length, 1);
    const plot = CHART.height - CHART.top;
    if (group.children.length !== days.length) {
      group.replaceChildren(...days.map(() => {
        const bar = svg("rect", { class: "day-bar", "data-testid": "day-bar" });
        bar.append(svg("title", {}));
        return bar;
      }));
    }
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
      const requests = day.requests.value;
      const label = day.date + ": " + formatAmount(day.used, unit).shown +
        " (" + requests + (requests === 1 ? " request)" : " requests)");
      bar.firstChild.textContent = label;
    });
    const first = days.length ? days[0].date : "";
    const last = days.length ? days[days.length - 1].date : "";
    chart.setAttribute("aria-label", "Spending per day from " + first + " to " + last);
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
      item.children[0].textContent = model.model || "(no model)";
      showAmount(item.children[1], model.used, unit);
      const n = model.requests.value;
      item.children[2].textContent = n + (n === 1 ? " request" : " requests");
    });
    usageSection.querySelector('[data-testid="no-models"]').hidden = top.length > 0;
  }

  /** Show a /v1/usage outcome; a failed refresh keeps the last figures and says so. */
  function renderUsage(outcome, initial) {
    const view = usageSection.querySelector(".usage-view");
    const message = usageSection.querySelector('[data-testid="usage-message"]');
    usageSection.hidden = false;
    if (outcome.error) {
      if (outcome.unavailable || initial || view.hidden) {
        view.hidden = true;
        message.textContent = outcome.unavailable
          ? "No usage history: " + outcome.error
          : "The usage history could not be loaded: " + outcome.error;
        message.hidden = false;
      }
      return;
    }
    const data = outcome.data;
    const unit = typeof data.unit === "string" ? data.unit : "";
    const balance = latestBalances.get(data.scope === "key" ? "token-card" : "user-card");
    message.hidden = true;
    view.hidden = false;
    setText(usageSection, "forecast", forecastText(data.forecast, unit, balance));
    showAmount(usageSection.querySelector('[data-testid="total-used"]'), data.total_used, unit);
    drawChart(data.days, unit);
    drawModels(data.models, unit);
  }

  /** Fetch everything the view shows and update it in place; on the first load, the usage only. */
  async function refreshView(initial) {
    if (!live || refreshing) return;
    refreshing = true;
    const { base, key } = live;
    try {
      const balances = initial
        ? []
        : await Promise.all(ENDPOINTS.map((e) => fetchBalance(base, e.path, key)));
      if (!live || live.key !== key || live.base !== base) return; // a new check started meanwhile
      let failed = null;
      balances.forEach((outcome, i) => {
        const card = document.getElementById(ENDPOINTS[i].card);
        if (outcome.error) {
          failed = failed || outcome.error;
        } else {
          card.classList.remove("is-error");
          renderBalance(card, outcome.data);
        }
      });
      const usage = await fetchUsage(base, key, usageScope.value);
      if (!live || live.key !== key || live.base !== base) return;
      renderUsage(usage, initial);
      if (usage.error && !usage.unavailable) failed = failed || usage.error;
      const time = new Date().toLocaleTimeString();
      refreshStatus.textContent = failed
        ? "Refresh failed (" + failed + "); showing the figures from before."
        : "Updated " + time + "; refreshes every " + refreshSeconds() + " s while this tab is visible.";
      refreshStatus.hidden = false;
      usageSection.dataset.refreshes = String(Number(usageSection.dataset.refreshes || 0) + 1);
    } finally {
      refreshing = false;
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
  }

  /** After a check: show the usage of that key and keep everything current. */
  async function startLiveView(base, key) {
    stopRefresh();
    for (const e of ENDPOINTS) {
      const card = document.getElementById(e.card);
      if (!card.querySelector(".figures")) latestBalances.delete(e.card); // this check failed there
    }
    live = latestBalances.size > 0 ? { base, key } : null;
    if (!live) {
      usageSection.hidden = true;
      refreshStatus.hidden = true;
      return;
    }
    await refreshView(true);
    scheduleRefresh();
  }

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
  form.dataset.ready = "true";
})();
