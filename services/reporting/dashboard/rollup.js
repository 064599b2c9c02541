// The roll-up page: a city's or province's districts side by side, one table per indicator,
// a row per district plan and the total where the rows add up. Draws /dashboard/rollup.json.
(function () {
  "use strict";
  var T = {
    zh: {
      achieved: "已完成", achieved_late: "逾期完成", on_track: "进展正常", at_risk: "有风险", missed: "未完成", not_started: "未开始",
      rollup: "汇总", asOf: "统计日期", district: "区", city: "市", plan: "计划", actual: "实际", target: "目标", status: "状态",
      total: "合计", notSummed: "不可相加（比较方式或单位不同）", own: "本级目标", noPlan: "无本年度计划：", indicators: "各区指标进度",
      year: "年度", back: "返回区看板"
    },
    en: {
      achieved: "Achieved", achieved_late: "Achieved late", on_track: "On track", at_risk: "At risk", missed: "Missed", not_started: "Not started",
      rollup: "Roll-up", asOf: "As of", district: "District", city: "City", plan: "Plan", actual: "Actual", target: "Target", status: "Status",
      total: "Total", notSummed: "does not add up (comparators or units differ)", own: "own target", noPlan: "No plan this year: ", indicators: "Indicators by district",
      year: "year", back: "Back to the district view"
    }
  };
  var params = new URLSearchParams(location.search);
  var lang = params.get("lang") || localStorage.getItem("cwsm-lang") || ((navigator.language || "zh").indexOf("zh") === 0 ? "zh" : "en");
  if (!T[lang]) lang = "zh";
  if (params.has("token")) { params.delete("token"); history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : "")); }
  var q = new URLSearchParams();
  ["place", "year", "date"].forEach(function (k) { if (params.get(k)) q.set(k, params.get(k)); });
  var qs = q.toString() ? "?" + q : "";
  var data = null;
  // What the Content-Security-Policy blocked is counted on the page (the browser test reads it).
  var violations = 0;
  document.addEventListener("securitypolicyviolation", function () { violations += 1; document.body.setAttribute("data-csp-violations", String(violations)); });

  function t(key) { return T[lang][key] || key; }
  function esc(s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; }); }
  function el(id) { return document.getElementById(id); }
  function name(o) { return lang === "zh" ? (o.name_zh || o.name) : (o.name || o.name_zh); }
  function num(v) { return v == null ? "–" : Math.abs(v - Math.round(v)) < 1e-9 ? String(Math.round(v)) : String(Math.round(v * 100) / 100); }
  function label(o) { return (lang === "zh" ? o.status_zh : o.status_en) || t(o.status); }

  function draw() {
    if (!data) return;
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    el("eyebrow").textContent = t("rollup") + " · " + data.year;
    el("place-title").textContent = name(data.place) + " (" + data.place.code + ")";
    el("as-of").textContent = t("asOf") + " " + data.as_of;
    el("heading").textContent = t("indicators");
    var province = data.place.code.slice(2) === "0000";
    var html = data.indicators.map(function (i) {
      var rows = i.rows.map(function (r) {
        return '<tr data-district="' + esc(r.district.code) + '" data-status="' + esc(r.status) + '">' +
          (province ? "<td>" + esc(r.city ? name(r.city) : "") + "</td>" : "") +
          '<td class="dn">' + esc(name(r.district)) + "<small>" + esc(r.plan_code) + (r.indicator_code !== i.code ? " · " + esc(r.indicator_code) : "") + "</small></td>" +
          '<td class="num actual">' + num(r.actual) + '</td><td class="num">' + num(r.target) + "</td>" +
          '<td><meter min="0" max="' + esc(r.target > 0 ? r.target : 1) + '" value="' + esc(Math.max(0, r.actual)) + '"></meter></td>' +
          '<td><span class="pill status">' + esc(label(r)) + "</span></td></tr>";
      }).join("");
      var total = i.summed
        ? '<tr class="total" data-total="' + esc(i.code) + '">' + (province ? "<td></td>" : "") + "<td>" + t("total") + '</td><td class="num actual">' + num(i.total_actual) +
          '</td><td class="num">' + num(i.total_target) + "</td><td></td><td>" +
          (i.own ? '<span class="pill status" data-status="' + esc(i.own.status) + '">' + t("own") + " " + num(i.own.target) + " · " + esc(label(i.own)) + "</span>" : "") + "</td></tr>"
        : '<tr class="total"><td colspan="' + (province ? 6 : 5) + '">' + t("notSummed") + "</td></tr>";
      return '<div class="rollup-indicator" data-code="' + esc(i.code) + '"><h3>' + esc(name(i)) + " <small>" + esc(i.code) + " · " + esc(i.unit) + "</small></h3>" +
        '<table class="indicators"><thead><tr>' + (province ? "<th>" + t("city") + "</th>" : "") + "<th>" + t("district") + "</th><th>" + t("actual") + "</th><th>" + t("target") +
        "</th><th></th><th>" + t("status") + "</th></tr></thead><tbody>" + rows + total + "</tbody></table></div>";
    }).join("");
    el("rollup").innerHTML = html;
    el("footer").textContent = data.without_plan.length ? t("noPlan") + data.without_plan.map(name).join("、") : "";
    document.querySelectorAll(".lang button").forEach(function (b) { b.classList.toggle("on", b.getAttribute("data-lang") === lang); });
    document.body.setAttribute("data-ready", "1");
  }

  document.querySelectorAll(".lang button").forEach(function (b) {
    b.addEventListener("click", function () { lang = b.getAttribute("data-lang"); localStorage.setItem("cwsm-lang", lang); draw(); });
  });
  fetch("/dashboard/rollup.json" + qs, { credentials: "same-origin" })
    .then(function (r) { return r.json().then(function (v) { if (!r.ok) throw new Error(v.error || r.status); return v; }); })
    .then(function (v) { data = v; draw(); })
    .catch(function (e) { el("rollup").textContent = String(e.message || e); document.body.setAttribute("data-error", String(e.message || e)); });
})();
