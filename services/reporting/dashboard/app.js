// The administrators' dashboard: draws /dashboard/data.json and redraws on every "report"
// event of /dashboard/events (Server-Sent Events). No libraries; charts are inline SVG.
(function () {
  "use strict";
  var T = {
    zh: {
      achieved: "已完成", achieved_late: "逾期完成", on_track: "进展正常", at_risk: "有风险", missed: "未完成", not_started: "未开始",
      timeline: "截止日期时间轴", completions: "完成数量随时间变化", indicators: "指标进度",
      indicator: "指标", progress: "进度（实际 / 目标）", status: "状态", deadline: "截止日期", lead: "牵头单位",
      departments: "各部门指标", goals: "区级主要目标", action: "行动", asOf: "统计日期", version: "版本",
      live: "实时", connecting: "连接中", offline: "已断开", daysLeft: "剩余 {n} 天", daysOver: "逾期 {n} 天", dueToday: "今日截止",
      leads: "牵头", participates: "参与", noIndicators: "无指标", noCompletions: "尚无完成记录",
      counted: "项目计数", recorded: "人工填报", counted_and_recorded: "项目计数 + 人工填报", completed: "已移交 {n} 项", today: "今天", target: "目标", updated: "更新于",
      rollup: "全市汇总", achievements: "填报记录", pending: "待审核", approved: "已通过", rejected: "已驳回", unit: "单位", achievedOn: "完成日期", value: "数量", noAchievements: "尚无填报记录",
      source: "来源", afterYear: "统计日期 {d} 已在计划年度之后", deadLetters: "{n} 条无法处理的事件（cwsm report dead-letters）"
    },
    en: {
      achieved: "Achieved", achieved_late: "Achieved late", on_track: "On track", at_risk: "At risk", missed: "Missed", not_started: "Not started",
      timeline: "Deadlines", completions: "Completions over time", indicators: "Indicators",
      indicator: "Indicator", progress: "Progress (actual / target)", status: "Status", deadline: "Deadline", lead: "Lead",
      departments: "By department", goals: "District goals", action: "Action", asOf: "As of", version: "version",
      live: "Live", connecting: "Connecting", offline: "Offline", daysLeft: "{n} days left", daysOver: "{n} days overdue", dueToday: "due today",
      leads: "leads", participates: "participates", noIndicators: "no indicators", noCompletions: "No completions yet",
      counted: "counted from projects", recorded: "recorded", counted_and_recorded: "counted and recorded", completed: "{n} handed over", today: "today", target: "target", updated: "Updated",
      rollup: "City roll-up", achievements: "Recorded achievements", pending: "Pending", approved: "Approved", rejected: "Rejected", unit: "Unit", achievedOn: "Achieved", value: "Value", noAchievements: "No achievements recorded",
      source: "Source", afterYear: "as of {d}, after the plan year", deadLetters: "{n} events set aside (cwsm report dead-letters)"
    }
  };
  var STATUSES = ["achieved", "achieved_late", "on_track", "at_risk", "missed", "not_started"];
  var COLORS = { achieved: "#1e9e5a", achieved_late: "#6aa84f", on_track: "#2f7fd8", at_risk: "#e39b12", missed: "#d64541", not_started: "#98a2ad" };
  var SERIES = ["#0f4c81", "#e36414", "#2a9d8f", "#8e44ad", "#c0392b", "#6c757d"];
  var params = new URLSearchParams(location.search);
  var lang = params.get("lang") || localStorage.getItem("cwsm-lang") || ((navigator.language || "zh").indexOf("zh") === 0 ? "zh" : "en");
  if (!T[lang]) lang = "zh";
  var data = null, previous = {};
  // What the Content-Security-Policy blocked is counted on the page (the browser test reads it).
  var violations = 0;
  document.addEventListener("securitypolicyviolation", function () { violations += 1; document.body.setAttribute("data-csp-violations", String(violations)); });

  // The token travels in an HttpOnly cookie from here on: keep it out of the address bar.
  if (params.has("token")) { params.delete("token"); history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : "")); }
  var q = new URLSearchParams();
  ["plan", "version", "date"].forEach(function (k) { if (params.get(k)) q.set(k, params.get(k)); });
  var qs = q.toString() ? "?" + q : "";

  function t(key, vars) { var s = (T[lang][key] || key); for (var k in vars || {}) s = s.replace("{" + k + "}", vars[k]); return s; }
  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
  function el(id) { return document.getElementById(id); }
  function name(o) { return lang === "zh" ? (o.name_zh || o.name) : (o.name || o.name_zh); }
  function num(v) { return Math.abs(v - Math.round(v)) < 1e-9 ? String(Math.round(v)) : String(Math.round(v * 100) / 100); }
  function day(s) { var p = s.split("-"); return Date.UTC(+p[0], +p[1] - 1, +p[2]) / 864e5; }
  function dstr(d) { return new Date(d * 864e5).toISOString().slice(0, 10); }
  function dept(code) { var d = (data.departments || []).filter(function (x) { return x.code === code; })[0]; return d ? name(d) : code; }
  function sectorLabel(code) {
    var l = (data.sectors || {})[code]; if (!l) return code;
    var m = /^(.*) \((.*)\)$/.exec(l); return m ? (lang === "zh" ? m[2] : m[1]) : l;
  }
  function target(i) {
    var unit = i.unit === "%" ? "%" : " " + i.unit;
    var cmp = { at_least: "≥ ", at_most: "≤ ", percent_reduction: "↓ ", rate_at_least: "≥ ", rate_at_most: "≤ ", coverage: "≥ " }[i.comparator] || "";
    return cmp + num(i.target) + unit + (i.base_year ? " (" + i.base_year + ")" : "");
  }
  // The status as the CLI and the exports show it: "逾期完成（晚15天）", "Achieved late (15 days)".
  function statusLabel(i) {
    return (lang === "zh" ? i.status_zh : i.status_en) || t(i.status);
  }
  function due(i) {
    var n = i.days_remaining;
    var rel = n > 0 ? t("daysLeft", { n: n }) : n === 0 ? t("dueToday") : t("daysOver", { n: -n });
    var met = i.status === "achieved" || i.status === "achieved_late";
    return '<div class="due">' + esc(i.deadline) + "<small>" + esc(met ? "" : rel) + "</small></div>";
  }

  function renderHeader() {
    var p = data.plan;
    document.title = (lang === "zh" ? "节水行动看板 · " : "Water-saving dashboard · ") + name({ name: p.title, name_zh: p.title_zh });
    el("district").textContent = lang === "zh" ? (p.district_zh || p.district) + " · " + p.year : (p.district || p.district_zh) + " · " + p.year;
    el("plan-title").textContent = lang === "zh" ? (p.title_zh || p.title) : (p.title || p.title_zh);
    el("as-of").textContent = t("asOf") + " " + data.as_of;
    el("plan-version").textContent = p.code + " " + t("version") + " " + p.version;
    el("export-xlsx").href = "/dashboard/export.xlsx" + qs;
    el("export-csv").href = "/dashboard/export.csv" + qs;
    // The city's roll-up of this district's year, as of the same date.
    var link = el("rollup-link");
    if (p.rollup_place) {
      link.href = "/dashboard/rollup?place=" + encodeURIComponent(p.rollup_place) + "&year=" + p.year + "&date=" + encodeURIComponent(data.as_of) + "&lang=" + lang;
      link.textContent = t("rollup");
      link.hidden = false;
    } else link.hidden = true;
    document.querySelectorAll("[data-t]").forEach(function (n) { n.textContent = t(n.getAttribute("data-t")); });
    document.querySelectorAll(".lang button").forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-lang") === lang); });
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  }

  function renderTiles() {
    el("tiles").innerHTML = STATUSES.map(function (s) {
      var codes = data.indicators.filter(function (i) { return i.status === s; }).map(function (i) { return i.code; });
      var share = data.indicators.length ? 100 * codes.length / data.indicators.length : 0;
      return '<div class="tile" data-status="' + s + '" id="tile-' + s + '"><div class="n">' + (data.summary[s] || 0) +
        '</div><div class="l">' + esc(t(s)) + '</div><div class="share"><span data-w="' + share + '"></span></div>' +
        '<div class="codes" title="' + esc(codes.join(", ")) + '">' + esc(codes.join(" · ")) + "</div></div>";
    }).join("");
  }

  function renderTable() {
    var rows = [], lastAction = -1;
    data.indicators.forEach(function (i) {
      if (i.action !== lastAction) {
        lastAction = i.action;
        var a = (data.actions || []).filter(function (x) { return x.number === i.action; })[0];
        var label = i.action === 0 ? t("goals") : t("action") + " " + i.action + (a ? " · " + name(a) : "");
        rows.push('<tr class="group"><td colspan="5">' + esc(label) + "</td></tr>");
      }
      var pct = Math.max(0, Math.min(100, i.progress_bp / 100));
      var chips = i.by_town.concat(i.by_sector.map(function (p) { return [sectorLabel(p[0]), p[1]]; }))
        .filter(function (p) { return p[0] !== "unspecified"; })
        .map(function (p) { return '<span class="chip">' + esc(p[0]) + " " + num(p[1]) + "</span>"; }).join("");
      var changed = previous[i.code] !== undefined && previous[i.code] !== i.actual;
      rows.push('<tr data-code="' + esc(i.code) + '" data-status="' + i.status + '"' + (changed ? ' class="flash"' : "") + ">" +
        '<td><div class="ind-name">' + esc(name(i)) + '</div><div class="ind-code">' + esc(i.code) + " · " + esc(t(i.kind)) + "</div>" +
        (chips ? '<div class="chips">' + chips + "</div>" : "") + "</td>" +
        '<td class="bar-wrap"><div class="bar"><span data-w="' + pct + '"></span><em>' + num(pct) + '%</em></div>' +
        '<div class="nums"><span class="actual">' + esc(num(i.actual)) + '</span> / <span class="target">' + esc(target(i)) + "</span></div></td>" +
        '<td><span class="pill status">' + esc(statusLabel(i)) + "</span>" +
        (i.completed === null || i.completed === undefined ? "" : '<small class="completed">' + esc(t("completed", { n: i.completed })) + "</small>") + "</td>" +
        "<td>" + due(i) + "</td>" +
        '<td class="lead">' + esc(i.lead.map(dept).join("、")) + "</td></tr>");
    });
    el("indicators").querySelector("tbody").innerHTML = rows.join("");
  }

  // Bar widths and legend colours are set through the DOM, not style attributes in the markup:
  // the page's Content-Security-Policy allows no inline style (nor inline script).
  function paint() {
    document.querySelectorAll("[data-w]").forEach(function (n) { n.style.width = Math.max(0, Math.min(100, +n.getAttribute("data-w") || 0)) + "%"; });
    document.querySelectorAll("[data-c]").forEach(function (n) { n.style.background = n.getAttribute("data-c"); });
  }

  function svg(w, h, body) { return '<svg viewBox="0 0 ' + w + " " + h + '" role="img" xmlns="http://www.w3.org/2000/svg">' + body + "</svg>"; }

  function renderTimeline() {
    var year = data.plan.year, x0 = day(year + "-01-01"), x1 = day(year + "-12-31");
    data.indicators.forEach(function (i) { x1 = Math.max(x1, day(i.deadline)); x0 = Math.min(x0, day(i.deadline)); });
    var W = 640, L = 14, R = 14, H = 74, axisY = 40;
    function X(d) { return L + (W - L - R) * (d - x0) / Math.max(1, x1 - x0); }
    var groups = {};
    data.indicators.forEach(function (i) { (groups[i.deadline] = groups[i.deadline] || []).push(i); });
    var asOf = day(data.as_of);
    var b = '<rect x="' + L + '" y="' + (axisY - 4) + '" width="' + (W - L - R) + '" height="8" rx="4" fill="#e9eef3"/>';
    var elapsed = Math.max(x0, Math.min(asOf, x1));
    b += '<rect x="' + L + '" y="' + (axisY - 4) + '" width="' + Math.max(0, X(elapsed) - L) + '" height="8" rx="4" fill="#c9d8e8"/>';
    for (var m = 0; m < 12; m++) {
      var d = day(year + "-" + String(m + 1).padStart(2, "0") + "-01");
      if (d < x0 || d > x1) continue;
      b += '<line x1="' + X(d) + '" x2="' + X(d) + '" y1="' + (axisY + 6) + '" y2="' + (axisY + 11) + '" stroke="#b8c2cc"/>' +
        '<text x="' + (X(d) + 2) + '" y="' + (axisY + 24) + '" font-size="10" fill="#8a96a3">' + (lang === "zh" ? (m + 1) + "月" : ["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"][m]) + "</text>";
    }
    var keys = Object.keys(groups).sort();
    keys.forEach(function (k) {
      var x = X(day(k)), list = groups[k];
      var worst = null;
      ["missed", "at_risk", "on_track", "achieved_late", "achieved"].some(function (s) { if (list.some(function (i) { return i.status === s; })) { worst = s; return true; } return false; });
      b += '<g><title>' + esc(k + ": " + list.map(function (i) { return i.code; }).join(", ")) + "</title>" +
        '<line x1="' + x + '" x2="' + x + '" y1="' + (axisY - 6) + '" y2="' + (axisY + 4) + '" stroke="' + COLORS[worst || "not_started"] + '" stroke-width="2"/>' +
        '<circle cx="' + x + '" cy="' + (axisY - 16) + '" r="11" fill="' + COLORS[worst || "not_started"] + '" stroke="#fff" stroke-width="2"/>' +
        '<text x="' + x + '" y="' + (axisY - 12.5) + '" font-size="10" font-weight="700" text-anchor="middle" fill="#fff">' + list.length + "</text></g>";
    });
    if (asOf >= x0 && asOf <= x1) {
      b += '<line x1="' + X(asOf) + '" x2="' + X(asOf) + '" y1="' + (axisY - 30) + '" y2="' + (axisY + 10) + '" stroke="#0f4c81" stroke-width="2"/>' +
        '<text x="' + (X(asOf) + (X(asOf) > W * 0.85 ? -4 : 4)) + '" y="' + (axisY - 30) + '" font-size="10" text-anchor="' + (X(asOf) > W * 0.85 ? "end" : "start") + '" fill="#0f4c81" dy="8">' + esc(data.as_of) + "</text>";
    } else if (asOf > x1) {
      b += '<text x="' + L + '" y="12" font-size="11" fill="#d64541">' + esc(t("afterYear", { d: data.as_of })) + "</text>";
    }
    var lanes = keys.map(function (k) {
      var list = groups[k], n = day(k) - asOf;
      var rel = n > 0 ? t("daysLeft", { n: n }) : n === 0 ? t("dueToday") : t("daysOver", { n: -n });
      return '<div class="lane"><div class="when">' + esc(k) + "<small>" + esc(rel) + '</small></div><div class="items">' +
        list.map(function (i) { return '<span class="tag" data-status="' + i.status + '" title="' + esc(name(i) + " · " + t(i.status)) + '">' + esc(i.code) + "</span>"; }).join("") +
        "</div></div>";
    }).join("");
    var legend = '<div class="legend">' + STATUSES.map(function (s) { return '<span><i data-c="' + COLORS[s] + '"></i>' + esc(t(s)) + "</span>"; }).join("") + "</div>";
    el("timeline").innerHTML = svg(W, H, b) + '<div class="lanes">' + lanes + "</div>" + legend;
  }

  function renderCompletions() {
    var series = data.indicators.filter(function (i) { return i.kind === "counted"; });
    var points = [];
    series.forEach(function (s) { s.history.forEach(function (p) { points.push(day(p[0])); }); });
    if (!points.length) { el("completions").innerHTML = '<div class="empty">' + esc(t("noCompletions")) + "</div>"; return; }
    var asOf = day(data.as_of);
    var x0 = Math.min.apply(null, points) - 3, x1 = Math.max(asOf, Math.max.apply(null, points) + 1);
    if (x1 - x0 < 14) x0 = x1 - 14;
    var yMax = 1;
    series.forEach(function (s) { yMax = Math.max(yMax, s.target, s.actual); s.history.forEach(function (p) { yMax = Math.max(yMax, p[1]); }); });
    yMax = Math.ceil(yMax * 1.15);
    var W = 640, H = 250, L = 34, R = 14, T = 12, B = 28;
    function X(d) { return L + (W - L - R) * (d - x0) / (x1 - x0); }
    function Y(v) { return T + (H - T - B) * (1 - v / yMax); }
    var b = "", step = Math.max(1, Math.ceil(yMax / 5));
    for (var v = 0; v <= yMax; v += step) {
      b += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + Y(v) + '" y2="' + Y(v) + '" stroke="#eef1f4"/>' +
        '<text x="' + (L - 6) + '" y="' + (Y(v) + 4) + '" font-size="10" text-anchor="end" fill="#8a96a3">' + v + "</text>";
    }
    [x0 + 3, (x0 + x1) / 2, x1].forEach(function (d, k) {
      b += '<text x="' + X(d) + '" y="' + (H - 8) + '" font-size="10" text-anchor="' + ["start", "middle", "end"][k] + '" fill="#8a96a3">' + dstr(Math.round(d)) + "</text>";
    });
    var legend = [];
    series.forEach(function (s, k) {
      var c = SERIES[k % SERIES.length], d = "M" + X(x0) + " " + Y(0), last = 0;
      s.history.forEach(function (p) { var x = X(day(p[0])); d += " H" + x + " V" + Y(p[1]); last = p[1]; });
      d += " H" + X(x1);
      b += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + Y(s.target) + '" y2="' + Y(s.target) + '" stroke="' + c + '" stroke-dasharray="3 4" opacity=".55"/>';
      b += '<path d="' + d + '" fill="none" stroke="' + c + '" stroke-width="' + Math.max(1.5, 5 - 1.5 * k) + '" stroke-linejoin="round" opacity=".9"/>';
      s.history.forEach(function (p) { b += '<circle cx="' + X(day(p[0])) + '" cy="' + Y(p[1]) + '" r="3" fill="' + c + '"><title>' + esc(s.code + " " + p[0] + ": " + num(p[1])) + "</title></circle>"; });
      b += '<text x="' + (W - R - 2) + '" y="' + (Y(last) - 5) + '" font-size="11" font-weight="700" text-anchor="end" fill="' + c + '">' + num(last) + "</text>";
      legend.push('<span><i data-c="' + c + '"></i>' + esc(s.code + " · " + name(s)) + " (" + esc(t("target")) + " " + num(s.target) + ")</span>");
    });
    el("completions").innerHTML = svg(W, H, b) + '<div class="legend">' + legend.join("") + "</div>";
  }

  function renderDepartments() {
    var helpers = [];
    var cards = data.departments.map(function (d) {
      var lead = data.indicators.filter(function (i) { return i.lead.indexOf(d.code) >= 0; });
      var part = data.indicators.filter(function (i) { return i.lead.indexOf(d.code) < 0 && i.participants.indexOf(d.code) >= 0; });
      if (!lead.length) { if (part.length) helpers.push(name(d) + " (" + part.length + ")"); return ""; }
      var done = lead.filter(function (i) { return i.status === "achieved" || i.status === "achieved_late"; }).length;
      var row = function (i) {
        return '<tr data-status="' + i.status + '"><td class="dn" title="' + esc(i.code) + '">' + esc(name(i)) + "<small>" + esc(i.code) + "</small></td>" +
          '<td><div class="mini"><span data-w="' + Math.min(100, i.progress_bp / 100) + '"></span></div></td>' +
          '<td><span class="pill">' + esc(statusLabel(i)) + "</span></td></tr>";
      };
      return '<div class="dept" data-department="' + esc(d.code) + '"><h3>' + esc(name(d)) + "</h3>" +
        '<div class="sub">' + esc(t("leads")) + " " + lead.length + " · " + esc(t("achieved")) + " " + done + (part.length ? " · " + esc(t("participates")) + " " + part.length : "") + "</div>" +
        "<table>" + lead.map(row).join("") + "</table></div>";
    }).join("");
    el("departments").innerHTML = cards + (helpers.length ? '<div class="helpers">' + esc(t("participates")) + ": " + esc(helpers.join("、")) + "</div>" : "");
  }

  // The recorded achievements with their state (data.json carries them; a live report keeps the last).
  var achievements = [];
  function renderAchievements() {
    var box = el("achievements"); if (!box) return;
    var byCode = {}; data.indicators.forEach(function (i) { byCode[i.code] = i; });
    box.innerHTML = achievements.length ? '<table class="indicators"><thead><tr><th>' + t("unit") + "</th><th>" + t("indicator") + "</th><th>" + t("achievedOn") +
      "</th><th>" + t("value") + "</th><th>" + t("status") + "</th></tr></thead><tbody>" + achievements.map(function (a) {
        var i = byCode[a.indicator_code];
        return '<tr data-achievement="' + esc(a.id) + '" data-state="' + esc(a.state) + '"><td>' + esc(a.unit_name) + (a.town ? "<small> · " + esc(a.town) + "</small>" : "") + "</td>" +
          "<td>" + esc(i ? name(i) : a.indicator_code) + "<small> " + esc(a.indicator_code) + "</small></td><td>" + esc(a.achieved_date) + "</td><td>" + num(a.value) + "</td>" +
          '<td><span class="pill state">' + esc(t(a.state)) + (a.state === "rejected" && a.reason ? "：" + esc(a.reason) : "") + "</span></td></tr>";
      }).join("") + "</tbody></table>" : '<p class="muted">' + t("noAchievements") + "</p>";
  }

  function render() {
    if (!data) return;
    if (data.achievements) achievements = data.achievements;
    renderHeader(); renderTiles(); renderTable(); renderTimeline(); renderCompletions(); renderDepartments(); renderAchievements();
    paint();
    el("footer").textContent = t("updated") + " " + new Date(data.generated_at_ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") +
      (data.dead_letters ? " · ⚠ " + t("deadLetters", { n: data.dead_letters }) : "") + (data.plan.source ? " · " + t("source") + ": " + data.plan.source : "");
    document.body.setAttribute("data-generation", String(data.generation));
    // Ready once data.json came (it carries the achievements, the live reports do not).
    if (loaded) document.body.setAttribute("data-ready", "1");
    previous = {};
    data.indicators.forEach(function (i) { previous[i.code] = i.actual; });
  }

  var pick = el("date-pick");
  if (pick) {
    pick.value = params.get("date") || "";
    pick.addEventListener("change", function () {
      var p = new URLSearchParams(location.search);
      if (pick.value) p.set("date", pick.value); else p.delete("date");
      location.search = p.toString();
    });
  }

  function setLive(state) { var l = el("live"); l.setAttribute("data-state", state); el("live-label").textContent = t(state === "live" ? "live" : state); }

  document.querySelectorAll(".lang button").forEach(function (b) {
    b.addEventListener("click", function () { lang = b.getAttribute("data-lang"); localStorage.setItem("cwsm-lang", lang); render(); setLive(el("live").getAttribute("data-state")); });
  });

  // Whether data.json came; a live report may come first, and data.json older than it must
  // not draw over it (it still brings the achievements).
  var loaded = false;
  function load() {
    fetch("/dashboard/data.json" + qs, { credentials: "same-origin" }).then(function (r) { return r.json(); })
      .then(function (d) {
        if (!d || !d.indicators) return;
        loaded = true;
        if (d.achievements) achievements = d.achievements;
        if (!data || d.generation >= data.generation) data = d;
        render();
      }).catch(function () {});
  }

  setLive("connecting");
  load();
  if (window.EventSource) {
    var es = new EventSource("/dashboard/events" + qs);
    es.addEventListener("report", function (e) { try { data = JSON.parse(e.data); render(); setLive("live"); } catch (err) { /* keep the last */ } });
    es.onopen = function () { setLive("live"); };
    es.onerror = function () { setLive(es.readyState === 2 ? "offline" : "connecting"); };
  } else {
    setInterval(load, 5000);
  }
})();
