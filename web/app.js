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
  }

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
