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
  // with the tab; it never goes to localStorage or a cookie.
  let apiKey = "";

  const form = document.getElementById("balance-form");
  const baseInput = document.getElementById("api-base");
  const keyInput = document.getElementById("api-key");
  const remember = document.getElementById("remember");
  const button = document.getElementById("check");
  const formError = document.getElementById("form-error");
  const results = document.getElementById("results");
  const template = document.getElementById("card-body");

  /** The service URL to start with: ?api=… if given, else this page's own origin. */
  function initialBase() {
    const fromQuery = new URLSearchParams(window.location.search).get("api");
    if (fromQuery) return fromQuery;
    return window.location.protocol.startsWith("http") ? window.location.origin : "";
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
    if (!isAmount(body.balance) || !isAmount(body.used)) {
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

  function renderBalance(card, data) {
    const unit = typeof data.unit === "string" ? data.unit : "";
    const suffix = unit ? " " + unit : "";
    const unlimited = data.balance.value === -1 || data.unlimited_quota === true;
    const content = template.content.cloneNode(true);
    setText(content, "balance", unlimited ? "Unlimited" : data.balance.text + suffix);
    setText(content, "used", data.used.text + suffix);
    setText(content, "unit", unit);

    const bar = content.querySelector('[data-testid="bar"]');
    const legend = content.querySelector('[data-testid="bar-legend"]');
    const used = Math.max(data.used.value, 0);
    const total = used + (unlimited ? 0 : Math.max(data.balance.value, 0));
    if (unlimited || total <= 0) {
      // No limit (or nothing ever granted): a proportion would mean nothing.
      bar.remove();
      legend.remove();
    } else {
      const fraction = used / total;
      const text = percent(fraction) + " used, " + percent(1 - fraction) + " remaining";
      bar.querySelector(".bar-used").style.width = fraction * 100 + "%";
      bar.setAttribute("aria-valuenow", String(Math.round(fraction * 1000) / 10));
      bar.setAttribute("aria-valuetext", text);
      bar.setAttribute("aria-label", "Share of credit used");
      legend.textContent = text;
    }
    card.querySelector(".body").replaceChildren(content);
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

  function persistKey() {
    try {
      if (remember.checked && apiKey) {
        window.sessionStorage.setItem(STORAGE_KEY, apiKey);
      } else {
        window.sessionStorage.removeItem(STORAGE_KEY);
      }
    } catch {
      // Storage disabled by the browser: the key simply is not remembered.
    }
  }

  function restoreKey() {
    let saved = null;
    try {
      saved = window.sessionStorage.getItem(STORAGE_KEY);
    } catch {
      saved = null;
    }
    if (saved) {
      apiKey = saved;
      keyInput.value = saved;
      remember.checked = true;
    }
  }

  async function onSubmit(event) {
    event.preventDefault();
    clearFormError();
    let base;
    try {
      base = normalizeBase(baseInput.value);
    } catch {
      showFormError("Enter the service URL, for example https://balance.example.com.", baseInput);
      return;
    }
    apiKey = keyInput.value.trim();
    if (!apiKey) {
      showFormError("Enter an API key.", keyInput);
      return;
    }
    persistKey();

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
  }

  baseInput.value = initialBase();
  restoreKey();
  remember.addEventListener("change", () => {
    apiKey = keyInput.value.trim() || apiKey;
    persistKey();
  });
  form.addEventListener("submit", onSubmit);
  form.dataset.ready = "true";
})();
