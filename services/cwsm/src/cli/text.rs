//! The CLI's words in both languages: every table header and fixed line by its English text,
//! with its Chinese. A test finds every header in the CLI's sources and checks that it is here,
//! so a new column cannot ship in one language only. Names of the vocabulary (sectors, models,
//! technologies…) are the vocabulary's own ([`cwsm_platform::vocab`]); what the services write
//! (ranking explanations, statements) they answer in the language the CLI asks
//! (`accept-language`).

use std::sync::OnceLock;

use cwsm_platform::lang::Lang;

/// The language of this run: one per process, like the locale it defaults to.
static LANG: OnceLock<Lang> = OnceLock::new();

/// Sets the language of this run (the first call wins: it is set once, from `--lang`).
pub(crate) fn set_lang(lang: Lang) {
    let _ = LANG.set(lang);
}

/// The language of this run (English until set).
pub(crate) fn lang() -> Lang {
    LANG.get().copied().unwrap_or(Lang::En)
}

/// The language asked: `--lang` / `CWSM_LANG` if given, else the locale's (zh for zh_*).
pub(crate) fn lang_asked(flag: Option<&str>) -> Lang {
    if let Some(lang) = flag.and_then(Lang::parse) {
        return lang;
    }
    let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    Lang::from_locale(locale.as_deref())
}

/// English → Chinese, for the headers and fixed words of the CLI's tables.
const WORDS: &[(&str, &str)] = &[
    ("accepted", "已接收"),
    ("achieved", "完成日期"),
    ("action", "处理"),
    ("actual", "实际"),
    ("adjusted baseline", "调整后基准"),
    ("adjustments", "调整"),
    ("after", "之后"),
    ("annual_use_m3", "年用水量（m³）"),
    ("archived", "已存档"),
    ("baseline_end", "基准期止"),
    ("baseline_m3", "基准用水量（m³）"),
    ("baseline_start", "基准期起"),
    ("before", "之前"),
    ("best_offering", "最匹配方案"),
    ("bytes", "字节"),
    ("calls", "调用次数"),
    ("case", "场景"),
    ("certification", "资质等级"),
    ("check", "检查项"),
    ("code", "编码"),
    ("company", "节水服务企业"),
    ("company due", "企业应得"),
    ("completed", "已完成"),
    ("created_at", "创建时间"),
    ("credit_code", "统一社会信用代码"),
    ("deadline", "截止日期"),
    ("decided by", "决定人"),
    ("decision", "决定"),
    ("department", "部门"),
    ("district", "区县"),
    ("driver", "影响因素"),
    ("duplicates", "重复"),
    ("effective", "生效日期"),
    ("estimated", "估算"),
    ("event_id", "事件编号"),
    ("event_to_report_p50_ms", "事件至报表 p50（毫秒）"),
    ("event_to_report_p99_ms", "事件至报表 p99（毫秒）"),
    ("events_applied_per_s", "每秒处理事件"),
    ("evidence", "证明材料"),
    ("expires_at", "到期时间"),
    ("facts", "事实数"),
    ("failed as", "未通过情况"),
    ("file", "文件"),
    ("financing_yuan", "融资能力（元）"),
    ("flagged", "标记"),
    ("flags", "标记"),
    ("from", "起"),
    ("from (CST)", "起（北京时间）"),
    ("goal_p99_ms", "目标 p99（毫秒）"),
    ("hosting fee", "托管费"),
    ("id", "编号"),
    ("indicator", "指标"),
    ("interval_s", "间隔（秒）"),
    ("investment_yuan", "投资（元）"),
    ("jurisdiction_code", "行政区划代码"),
    ("kind", "类型"),
    ("last_used_at", "最近使用"),
    ("lead", "牵头部门"),
    ("litres", "升"),
    ("loaded_by", "导入人"),
    ("meter", "水表"),
    ("milestone", "节点"),
    ("midyear_p50_ms", "年中 p50（毫秒）"),
    ("midyear_p99_ms", "年中 p99（毫秒）"),
    ("model", "合同模式"),
    ("models", "合同模式"),
    ("name", "名称"),
    ("offering", "服务方案"),
    ("p50_ms", "p50（毫秒）"),
    ("p99_ms", "p99（毫秒）"),
    ("payback_months", "回收期（月）"),
    ("period", "结算期"),
    ("period_months", "结算周期（月）"),
    ("plan", "方案"),
    ("planned_use", "计划用途"),
    ("progress", "进度"),
    ("project", "项目"),
    ("projects", "项目"),
    ("promised", "承诺"),
    ("proposal", "建议书"),
    ("proposals", "建议书"),
    ("proposed by", "提出人"),
    ("rank", "排名"),
    ("readings", "读数"),
    ("reason", "理由"),
    ("received", "接收时间"),
    ("recorded", "已记录"),
    ("rejected", "已拒收"),
    ("report_max_ms", "报表最长（毫秒）"),
    ("report_p50_ms", "报表 p50（毫秒）"),
    ("report_p99_ms", "报表 p99（毫秒）"),
    ("request", "需求"),
    ("retracted", "已撤回"),
    ("revoked_at", "吊销时间"),
    ("role", "角色"),
    ("savings", "节水量"),
    ("savings %", "节水率"),
    ("savings_m3_per_year", "年节水量（m³）"),
    ("score", "得分"),
    ("sector", "领域"),
    ("sent", "已发送"),
    ("sha256", "SHA-256"),
    ("shortfall", "差额"),
    ("site", "地点"),
    ("stage", "阶段"),
    ("state", "状态"),
    ("status", "状态"),
    ("target", "目标"),
    ("technologies", "技术"),
    ("time (CST)", "时间（北京时间）"),
    ("title", "名称"),
    ("to", "止"),
    ("to (CST)", "止（北京时间）"),
    ("town", "镇（街道）"),
    ("towns", "镇（街道）"),
    ("track_record", "业绩"),
    ("type", "类型"),
    ("typical_savings", "典型节水率"),
    ("unit", "单位"),
    ("unit_type", "单位类型"),
    ("uploaded by", "上传人"),
    ("use_l", "用水量（升）"),
    ("user due", "用水单位应得"),
    ("value", "价值"),
    ("verifier_org", "核查机构"),
    ("version", "版本"),
    ("waived by", "豁免人"),
    ("was_l", "原用水量（升）"),
    ("water bill", "水费"),
    ("water_user", "用水单位"),
    ("why", "评分说明"),
    ("year", "年度"),
    ("yuan_per_m3_saved", "每立方米节水成本（元）"),
    ("±68%", "±（68% 置信）"),
    ("±90%", "±（90% 置信）"),
    // Score parts (matching's names for them).
    ("technology", "技术"),
    ("capacity", "融资能力"),
    ("contract_model", "合同模式"),
];

/// The states of offerings, requests, proposals, periods, adjustments, verifier proposals and
/// achievements, by their codes.
const STATES: &[(&str, &str)] = &[
    ("draft", "草稿"),
    ("published", "已发布"),
    ("withdrawn", "已撤回"),
    ("open", "征集中"),
    ("closed", "已截止"),
    ("awarded", "已选定"),
    ("cancelled", "已取消"),
    ("submitted", "已提交"),
    ("accepted", "已接受"),
    ("declined", "已拒绝"),
    ("proposed", "待审核"),
    ("pending", "待审核"),
    ("approved", "已通过"),
    ("rejected", "已驳回"),
    ("reported", "待提交"),
    ("verified", "已核查"),
    ("disputed", "有争议"),
    ("settled", "已结算"),
];

/// A state's code (`open`, `verified`, …) in the run's language: the code in English (what
/// the flags take), its Chinese name in Chinese.
pub(crate) fn state(code: &str) -> String {
    match lang() {
        Lang::En => code.to_string(),
        Lang::Zh => STATES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(code, |(_, zh)| *zh)
            .to_string(),
    }
}

/// `en` in the language of this run: its Chinese from the table when the run is Chinese
/// (a word not in the table stays as it is; the test below keeps the headers in it).
pub(crate) fn tr(en: &'static str) -> &'static str {
    match lang() {
        Lang::En => en,
        Lang::Zh => WORDS
            .iter()
            .find(|(e, _)| *e == en)
            .map(|(_, zh)| *zh)
            .unwrap_or(en),
    }
}

/// `zh` or `en` in the language of this run.
pub(crate) fn pick<'a>(zh: &'a str, en: &'a str) -> &'a str {
    lang().pick(zh, en)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every header of every table in the CLI's sources has its Chinese, and every Chinese
    /// word is Chinese (no English word beside the units and abbreviations).
    #[test]
    fn every_header_has_both_languages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
        let mut sources = Vec::new();
        let mut folders = vec![dir];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("the CLI's sources") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("text.rs")
                {
                    sources.push(std::fs::read_to_string(&path).expect("a source"));
                }
            }
        }
        let mut headers = Vec::new();
        for source in &sources {
            // `headers: vec![…]`, `let headers = vec![…]`, `const X_HEADERS: [&str; N] = […]`.
            for start in ["headers: vec![", "headers = vec![", "_HEADERS: [&str; "] {
                for (at, _) in source.match_indices(start) {
                    let mut rest = &source[at + start.len()..];
                    if start.starts_with("_HEADERS") {
                        rest = rest.split_once("= [").map_or("", |(_, list)| list);
                    }
                    let list = &rest[..rest.find(']').unwrap_or(rest.len())];
                    headers.extend(list.split('"').skip(1).step_by(2).map(str::to_string));
                }
            }
        }
        assert!(headers.len() > 100, "found {} headers", headers.len());
        let missing: Vec<&String> = headers
            .iter()
            .filter(|h| !WORDS.iter().any(|(en, _)| en == h))
            .collect();
        assert!(missing.is_empty(), "headers without Chinese: {missing:?}");
        let allowed = ["m", "SHA", "p50", "p99"];
        for (en, zh) in WORDS {
            assert!(
                zh.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c)) || *zh == "SHA-256",
                "{en}: {zh}"
            );
            let leaked = cwsm_platform::lang::english_words(zh, &allowed);
            assert!(leaked.is_empty(), "{en}: {zh} has {leaked:?}");
        }
    }
}
