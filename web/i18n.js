// The page's words in English and Chinese, and how numbers and dates are written in each.
// A plain dictionary: no framework. Numbers and dates go through the browser's Intl.
"use strict";

window.BalanceI18n = (() => {
  const STORAGE_KEY = "balance-service.lang";
  const LANGUAGES = ["en", "zh-CN"];

  const MESSAGES = {
    en: {
      "page.title": "Credit balance",
      "page.intro":
        "Check how much credit is left on an sk- API key. The key is sent only to the service below " +
        "and is not stored unless you ask for it.",
      "lang.label": "Language",
      "form.base": "Service URL",
      "form.key": "API key",
      "form.key_hint": "Starts with sk-.",
      "form.remember": "Remember in this tab",
      "form.check": "Check balance",
      "form.bad_base": "Enter the service URL, for example https://balance.example.com.",
      "form.no_key": "Enter an API key.",
      "form.key_invisible":
        "This API key is malformed: it contains an invisible character (such as a zero-width space), " +
        "probably copied along with it. Type or paste the key again.",
      "form.key_malformed": "This API key is malformed: a key is sk- followed by letters and digits, without spaces.",
      "form.key_elsewhere": "The remembered key belongs to {owner}. Type the key to send it to {origin}.",
      "confirm.text":
        "The link that opened this page set the service to {origin}, which is not this page's own site. " +
        "Your API key will be sent there. Send it only if you trust {origin}.",
      "confirm.send": "Send key to {origin}",
      "confirm.cancel": "Cancel",
      "results.title": "Results",
      "card.account": "Account",
      "card.key": "This key",
      "card.balance": "Balance",
      "card.used": "Used",
      "card.unit": "Unit",
      "card.unlimited": "Unlimited",
      "card.loading": "Loading…",
      "card.share": "Share of credit used",
      "card.bar": "{used} used, {left} remaining",
      "amount.tokens": "{n} tokens",
      "error.network":
        "Could not reach {base}: a network error, or the service does not allow requests from this page's " +
        "origin (CORS).",
      "error.no_balance": "The service answered without a balance.",
      "usage.title": "Spending, last 30 days",
      "usage.of": "Of",
      "usage.account": "the account",
      "usage.key": "this key",
      "usage.total": "Spent in these 30 days:",
      "usage.highest": "highest day:",
      "usage.chart": "Spending per day from {start} to {end}",
      "usage.day": "{date}: {amount} ({requests})",
      "usage.table": "The days as a table",
      "usage.table_day": "Day",
      "usage.table_spent": "Spent",
      "usage.table_requests": "Requests",
      "usage.models": "Top models",
      "usage.no_models": "No spending in these days.",
      "usage.no_model": "(no model)",
      "usage.requests.one": "{n} request",
      "usage.requests.other": "{n} requests",
      "usage.no_logs_table": "This gateway keeps no request logs, so there is no spending history to show.",
      "usage.consume_not_logged":
        "This gateway does not record spending (its LogConsumeEnabled option is off), so there is no " +
        "spending history to show.",
      "usage.unreachable": "Could not reach {base} for the usage history.",
      "usage.failed": "The usage history could not be loaded: {error}",
      "forecast.unlimited": "Unlimited credit: it does not run out.",
      "forecast.none": "Nothing was spent in the last 7 days, so there is no forecast.",
      "forecast.used_up": "At the last 7 days' rate ({rate} a day), the credit is used up.",
      "forecast.left": "At the last 7 days' rate ({rate} a day), {days} left.",
      "forecast.left_until": "At the last 7 days' rate ({rate} a day), {days} left; runs out around {date}.",
      "forecast.less_than_a_day": "less than a day",
      "forecast.days.one": "about {n} day",
      "forecast.days.other": "about {n} days",
      "refresh.updated": "Updated {time}; refreshes every {seconds} s while this tab is visible.",
      "refresh.failed": "Refresh failed ({error}); showing the figures from before.",
      "alerts.title": "Reminders",
      "alerts.intro":
        "The service notifies you when a balance falls below an amount, or when the forecast says fewer " +
        "days are left. These are the reminders this key set up.",
      "alerts.none": "No reminders yet.",
      "alerts.failed": "The reminders could not be loaded: {error}",
      "alerts.account_below": "Account balance below {amount}",
      "alerts.token_below": "This key's balance below {amount}",
      "alerts.account_days": "Account: fewer than {days} days of credit left",
      "alerts.token_days": "This key: fewer than {days} days of credit left",
      "alerts.sends_to": "Sends to {target}",
      "alerts.hidden_target": "Set up by a key that no longer exists; its address is not shown",
      "alerts.armed": "Waiting",
      "alerts.fired": "Notified; waits again once the balance is back above",
      "alerts.details": "{target}. {state}.",
      "alerts.details_notified": "{target}. {state}; last notified {time}.",
      "alerts.last_error": "Last delivery failed: {error}",
      "alerts.delete": "Delete",
      "alerts.delete_label": "Delete reminder: {what}",
      "alerts.test": "Send a test",
      "alerts.test_label": "Send a test of reminder: {what}",
      "alerts.test_sent": "Test sent: {what}.",
      "alerts.deleted": "Deleted: {what}.",
      "alerts.new": "New reminder",
      "alerts.kind": "Remind me when",
      "alerts.kind_threshold": "the balance falls below an amount",
      "alerts.kind_days": "the forecast says fewer days are left",
      "alerts.amount": "Amount ({unit})",
      "alerts.days": "Days left",
      "alerts.watch": "Watch",
      "alerts.watch_account": "the account",
      "alerts.watch_token": "this key",
      "alerts.channel": "Send by",
      "alerts.channel.webhook_url": "Webhook",
      "alerts.channel.notify_url": "Chat or push app (Apprise URL)",
      "alerts.channel.email": "E-mail",
      "alerts.target.webhook_url": "Webhook URL",
      "alerts.target.notify_url": "Apprise URL",
      "alerts.target.email": "E-mail address",
      "alerts.create": "Create reminder",
      "alerts.created": "Reminder created: {what}.",
      "alerts.secret":
        "The secret that signs its webhook calls is shown only this once; keep it to check them:",
      "alerts.not_a_number": "Enter a number, such as 5 or 2.5.",
    },
    "zh-CN": {
      "page.title": "额度余额",
      "page.intro": "查询 sk- API 密钥还剩多少额度。密钥只会发送到下面填写的服务，除非您要求，否则不会保存。",
      "lang.label": "语言",
      "form.base": "服务地址",
      "form.key": "API 密钥",
      "form.key_hint": "以 sk- 开头。",
      "form.remember": "在此标签页中记住",
      "form.check": "查询余额",
      "form.bad_base": "请输入服务地址，例如 https://balance.example.com。",
      "form.no_key": "请输入 API 密钥。",
      "form.key_invisible":
        "此 API 密钥格式不正确：其中有不可见字符（例如零宽空格），可能是复制时一起带上的。请重新输入或粘贴密钥。",
      "form.key_malformed": "此 API 密钥格式不正确：密钥是 sk- 后接字母和数字，不含空格。",
      "form.key_elsewhere": "记住的密钥属于 {owner}。如要发送到 {origin}，请重新输入密钥。",
      "confirm.text":
        "打开本页面的链接把服务设为 {origin}，它不是本页面自己的网站。您的 API 密钥将被发送到那里。" +
        "只有在信任 {origin} 时才发送。",
      "confirm.send": "将密钥发送到 {origin}",
      "confirm.cancel": "取消",
      "results.title": "结果",
      "card.account": "账户",
      "card.key": "此密钥",
      "card.balance": "余额",
      "card.used": "已用",
      "card.unit": "单位",
      "card.unlimited": "无限",
      "card.loading": "加载中…",
      "card.share": "已用额度占比",
      "card.bar": "已用 {used}，剩余 {left}",
      "amount.tokens": "{n} 点额度",
      "error.network": "无法连接 {base}：网络错误，或该服务不允许来自本页面来源的请求（CORS）。",
      "error.no_balance": "服务的回答中没有余额。",
      "usage.title": "近 30 天消费",
      "usage.of": "范围",
      "usage.account": "整个账户",
      "usage.key": "此密钥",
      "usage.total": "这 30 天共消费：",
      "usage.highest": "最高一天：",
      "usage.chart": "{start} 至 {end} 每日消费",
      "usage.day": "{date}：{amount}（{requests}）",
      "usage.table": "以表格查看每日消费",
      "usage.table_day": "日期",
      "usage.table_spent": "消费",
      "usage.table_requests": "请求数",
      "usage.models": "消费最多的模型",
      "usage.no_models": "这些天没有消费。",
      "usage.no_model": "（无模型）",
      "usage.requests.other": "{n} 次请求",
      "usage.no_logs_table": "此网关没有保存请求日志，因此没有消费记录可显示。",
      "usage.consume_not_logged": "此网关未记录消费（LogConsumeEnabled 选项已关闭），因此没有消费记录可显示。",
      "usage.unreachable": "无法连接 {base} 获取消费记录。",
      "usage.failed": "无法加载消费记录：{error}",
      "forecast.unlimited": "额度无限，不会用完。",
      "forecast.none": "最近 7 天没有消费，因此无法预测。",
      "forecast.used_up": "按最近 7 天的速度（每天 {rate}），额度已用完。",
      "forecast.left": "按最近 7 天的速度（每天 {rate}），还能用{days}。",
      "forecast.left_until": "按最近 7 天的速度（每天 {rate}），还能用{days}，约 {date} 用完。",
      "forecast.less_than_a_day": "不到一天",
      "forecast.days.other": "约 {n} 天",
      "refresh.updated": "更新于 {time}；此标签页可见时每 {seconds} 秒刷新一次。",
      "refresh.failed": "刷新失败（{error}）；显示的是之前的数字。",
      "alerts.title": "余额提醒",
      "alerts.intro": "当余额低于某个数额，或预计剩余天数少于某个值时，服务会通知您。以下是此密钥设置的提醒。",
      "alerts.none": "还没有提醒。",
      "alerts.failed": "无法加载提醒：{error}",
      "alerts.account_below": "账户余额低于 {amount}",
      "alerts.token_below": "此密钥余额低于 {amount}",
      "alerts.account_days": "账户：预计剩余不足 {days} 天",
      "alerts.token_days": "此密钥：预计剩余不足 {days} 天",
      "alerts.sends_to": "发送到 {target}",
      "alerts.hidden_target": "由已不存在的密钥设置，不显示其地址",
      "alerts.armed": "等待中",
      "alerts.fired": "已通知；余额回升后重新等待",
      "alerts.details": "{target}。{state}。",
      "alerts.details_notified": "{target}。{state}；上次通知于 {time}。",
      "alerts.last_error": "上次发送失败：{error}",
      "alerts.delete": "删除",
      "alerts.delete_label": "删除提醒：{what}",
      "alerts.test": "发送测试",
      "alerts.test_label": "为提醒发送测试：{what}",
      "alerts.test_sent": "测试已发送：{what}。",
      "alerts.deleted": "已删除：{what}。",
      "alerts.new": "新建提醒",
      "alerts.kind": "提醒条件",
      "alerts.kind_threshold": "余额低于某个数额",
      "alerts.kind_days": "预计剩余天数少于某个值",
      "alerts.amount": "数额（{unit}）",
      "alerts.days": "剩余天数",
      "alerts.watch": "监视",
      "alerts.watch_account": "整个账户",
      "alerts.watch_token": "此密钥",
      "alerts.channel": "通知方式",
      "alerts.channel.webhook_url": "Webhook",
      "alerts.channel.notify_url": "聊天或推送应用（Apprise 地址）",
      "alerts.channel.email": "电子邮件",
      "alerts.target.webhook_url": "Webhook 地址",
      "alerts.target.notify_url": "Apprise 地址",
      "alerts.target.email": "电子邮件地址",
      "alerts.create": "创建提醒",
      "alerts.created": "提醒已创建：{what}。",
      "alerts.secret": "用于签名 Webhook 请求的密钥只显示这一次，请保存以便核对：",
      "alerts.not_a_number": "请输入数字，例如 5 或 2.5。",
    },
  };

  /** The page's language: the one chosen with the switch, else the browser's first that the page speaks. */
  function initial() {
    try {
      const saved = window.localStorage.getItem(STORAGE_KEY);
      if (LANGUAGES.includes(saved)) return saved;
    } catch {
      // Storage disabled: follow the browser.
    }
    for (const tag of navigator.languages || [navigator.language || ""]) {
      const lower = String(tag).toLowerCase();
      if (lower.startsWith("zh")) return "zh-CN";
      if (lower.startsWith("en")) return "en";
    }
    return "en";
  }

  /** Remember the language the user switched to (the key is never stored here). */
  function remember(lang) {
    try {
      window.localStorage.setItem(STORAGE_KEY, lang);
    } catch {
      // Storage disabled: the choice lasts this page load.
    }
  }

  /**
   * The locale numbers and dates are written in: the browser's own tag when it is of the page's
   * language (en-GB writes dates its own way), else the page's language.
   */
  function locale(lang) {
    const base = lang.split("-")[0];
    const own = (navigator.languages || []).find((tag) => String(tag).toLowerCase().split("-")[0] === base);
    if (own && base !== "zh") return own;
    return lang;
  }

  /** The message ``key`` in ``lang`` with ``{name}`` filled from ``params``; a plural form when ``count`` is given. */
  function text(lang, key, params = {}, count = null) {
    const table = MESSAGES[lang] || MESSAGES.en;
    let id = key;
    if (count !== null) {
      const form = new Intl.PluralRules(lang).select(count);
      id = table[key + "." + form] !== undefined ? key + "." + form : key + ".other";
    }
    const template = table[id] !== undefined ? table[id] : MESSAGES.en[id];
    return template.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  }

  return { LANGUAGES, MESSAGES, initial, remember, locale, text };
})();
