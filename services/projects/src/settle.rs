//! Settlement of a verified period by the contract model, in fen, plain Rust.
//!
//! Rounding: every amount is an integer number of fen, rounded to the nearest fen with halves
//! away from zero, at each line of the statement (so the lines add up as printed). Annual
//! figures (guarantee, hosting fee) are pro-rated as the contract says: by calendar months (a
//! whole month is 1/12 of the year, so twelve monthly statements add up to the year's), or by
//! days over the days of the contract year (365 or 366). A guarantee is reconciled over the
//! contract year: each statement settles the shortfall (or the share above the guarantee) of
//! the year to date less what earlier statements of the year settled, so a good month carries
//! over; statements before the year's last are provisional.

use cwsm_platform::lang::{Lang, Text};
use cwsm_platform::quantity::{BasisPoints, Fen, Litres, Overflow};
use cwsm_platform::vocab::ContractModel;

use crate::domain::ContractTerms;

/// What a settlement is computed from.
#[derive(Clone, Debug)]
pub struct SettleInput<'a> {
    pub model: ContractModel,
    pub terms: &'a ContractTerms,
    pub price_fen_per_m3: i64,
    /// Verified savings of the period, litres (may be negative).
    pub savings_litres: i64,
    /// Metered use of the period, litres.
    pub actual_litres: i64,
    /// Days in the period.
    pub period_days: i64,
    pub start_date: String,
    pub end_date: String,
    /// Whole months from the start of operation (the first reporting day) to the period's
    /// start: decides whether the sharing period is still running.
    pub months_into_operation: i64,
    /// The period's share of a year, for the annual terms ([`share_of_year`]).
    pub share_of_year: ShareOfYear,
    /// The contract year so far, before this period ([`YearToDate`]).
    pub year_to_date: YearToDate,
}

/// A period's share of a year: `parts` of `of` (1 of 12 months, or 31 of 366 days).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareOfYear {
    pub parts: i64,
    pub of: i64,
    pub unit: &'static str,
}

/// `[start, end]`'s share of the contract year beginning `year_start`: by whole calendar
/// months (k/12) unless `by_days` or the period is not whole months; else its days over the
/// contract year's days.
pub fn share_of_year(
    start: chrono::NaiveDate,
    end: chrono::NaiveDate,
    year_start: chrono::NaiveDate,
    by_days: bool,
) -> ShareOfYear {
    let days = (end - start).num_days() + 1;
    if !by_days {
        let whole = (1..=12u32).find(|k| {
            start
                .checked_add_months(chrono::Months::new(*k))
                .and_then(|d| d.pred_opt())
                == Some(end)
        });
        if let Some(k) = whole {
            return ShareOfYear {
                parts: i64::from(k),
                of: 12,
                unit: "months",
            };
        }
    }
    let year_days = year_start
        .checked_add_months(chrono::Months::new(12))
        .map(|next| (next - year_start).num_days())
        .unwrap_or(365);
    ShareOfYear {
        parts: days,
        of: year_days,
        unit: "days",
    }
}

/// What earlier statements of the same contract year settled, for the guarantee's
/// reconciliation over the year.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct YearToDate {
    /// The contract year, "YYYY-MM-DD" to "YYYY-MM-DD".
    pub start_date: String,
    pub end_date: String,
    /// Whether this period ends the contract year (its statement is final, not provisional).
    pub closes: bool,
    /// Guaranteed and verified savings of the earlier periods of the year, litres.
    pub guaranteed_litres: i64,
    pub savings_litres: i64,
    /// The shortfall and the company's share above the guarantee they settled, fen.
    pub shortfall_fen: i64,
    pub above_guarantee_fen: i64,
}

/// The money of one period.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub savings_value_fen: i64,
    pub company_due_fen: i64,
    pub user_due_fen: i64,
    pub shortfall_fen: i64,
    pub hosting_fee_fen: i64,
    pub water_bill_fen: i64,
    /// The statement, a line each, in both languages (stored as settled; answered in the
    /// language the caller asks).
    pub lines: Vec<Text>,
}

pub use cwsm_platform::quantity::mul_div_round;

/// Fen as yuan for people: "12,345.67 yuan".
pub fn yuan(fen: i64) -> String {
    format!("{} yuan", amount(fen))
}

/// Fen as 元: "12,345.67 元".
fn yuan_zh(fen: i64) -> String {
    format!("{} 元", amount(fen))
}

fn amount(fen: i64) -> String {
    let sign = if fen < 0 { "−" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", thousands(abs / 100), abs % 100)
}

/// Litres as m³ for people: "12,345.678 m³".
pub fn cubic_metres(litres: i64) -> String {
    let sign = if litres < 0 { "−" } else { "" };
    let abs = litres.unsigned_abs();
    format!("{sign}{}.{:03} m³", thousands(abs / 1000), abs % 1000)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(bp: i64) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

impl ShareOfYear {
    /// "1/12 个月" or "31/366 天".
    fn zh(&self) -> String {
        let unit = if self.unit == "months" {
            "个月"
        } else {
            "天"
        };
        format!("{}/{} {unit}", self.parts, self.of)
    }
    /// "1/12 months" or "31/366 days".
    fn en(&self) -> String {
        format!("{}/{} {}", self.parts, self.of, self.unit)
    }
}

/// Computes a period's settlement and its statement. Every step is checked: figures beyond
/// what can be stored are an [`Overflow`] naming the figure, never a wrapped amount.
pub fn settle(i: &SettleInput) -> Result<Figures, Overflow> {
    let t = i.terms;
    let price = i.price_fen_per_m3;
    let savings = Litres(i.savings_litres);
    let m3 = cubic_metres;
    let mut f = Figures::default();
    let mut lines = vec![
        Text::new(
            format!(
                "结算期 {} 至 {}（{} 天），合同模式：{}",
                i.start_date,
                i.end_date,
                i.period_days,
                i.model.name(Lang::Zh)
            ),
            format!(
                "Settlement of the period {} to {} ({} days), contract model: {}",
                i.start_date,
                i.end_date,
                i.period_days,
                i.model.label()
            ),
        ),
        Text::new(
            format!(
                "核定节水量：{}，水价每立方米 {}",
                m3(i.savings_litres),
                yuan_zh(price)
            ),
            format!(
                "Verified savings: {} at {} per m³",
                m3(i.savings_litres),
                yuan(price)
            ),
        ),
    ];
    f.savings_value_fen = savings.value_at(price, "savings_value_fen")?.0;
    lines.push(Text::new(
        format!(
            "节水效益：{} × 每立方米 {} = {}",
            m3(i.savings_litres),
            yuan_zh(price),
            yuan_zh(f.savings_value_fen)
        ),
        format!(
            "Savings value: {} × {} per m³ = {}",
            m3(i.savings_litres),
            yuan(price),
            yuan(f.savings_value_fen)
        ),
    ));

    // What a company share is taken of: (zh, en).
    let sharing = |f: &mut Figures,
                   lines: &mut Vec<Text>,
                   value: i64,
                   what: (&str, &str)|
     -> Result<i64, Overflow> {
        let running = t.sharing_period_months <= 0
            || i.months_into_operation < i64::from(t.sharing_period_months);
        let share = if !running {
            lines.push(Text::new(
                format!("{} 个月的分享期已满：企业不再分成", t.sharing_period_months),
                format!(
                    "The sharing period of {} months is over: no company share",
                    t.sharing_period_months
                ),
            ));
            0
        } else if value > 0 {
            Fen(value)
                .share(BasisPoints(i64::from(t.share_ratio_bp)), "company_due_fen")?
                .0
        } else {
            lines.push(Text::new(
                "无正节水量：企业无分成",
                "No positive savings: no company share",
            ));
            0
        };
        if share != 0 {
            let ratio = percent(i64::from(t.share_ratio_bp));
            lines.push(Text::new(
                format!(
                    "企业分成：{} {} 的 {ratio}：{}",
                    what.0,
                    yuan_zh(value),
                    yuan_zh(share)
                ),
                format!(
                    "Company share {ratio} of {} {}: {}",
                    what.1,
                    yuan(value),
                    yuan(share)
                ),
            ));
        }
        f.company_due_fen = Fen(f.company_due_fen)
            .checked_add(Fen(share), "company_due_fen")?
            .0;
        Ok(share)
    };

    let ytd = &i.year_to_date;
    let share = i.share_of_year;
    // The guarantee over the contract year to date: returns the year's savings above the
    // guarantee so far (litres, ≥ 0).
    let guarantee = |f: &mut Figures, lines: &mut Vec<Text>| -> Result<i64, Overflow> {
        let guaranteed = Litres(t.guaranteed_savings_litres)
            .pro_rata(share.parts, share.of, "guaranteed_savings_litres")?
            .0;
        lines.push(Text::new(
            format!(
                "保证节水量：每年 {} × {} = {}",
                m3(t.guaranteed_savings_litres),
                share.zh(),
                m3(guaranteed)
            ),
            format!(
                "Guaranteed savings: {} a year × {} = {}",
                m3(t.guaranteed_savings_litres),
                share.en(),
                m3(guaranteed)
            ),
        ));
        let guaranteed_ytd = Litres(ytd.guaranteed_litres)
            .checked_add(Litres(guaranteed), "guaranteed_savings_litres")?;
        let savings_ytd = Litres(ytd.savings_litres).checked_add(savings, "savings_litres")?;
        let shortfall_price = if t.shortfall_price_fen_per_m3 > 0 {
            t.shortfall_price_fen_per_m3
        } else {
            price
        };
        let short_ytd = guaranteed_ytd
            .checked_sub(savings_ytd, "shortfall_litres")?
            .0
            .max(0);
        let short_ytd_fen = Litres(short_ytd)
            .value_at(shortfall_price, "shortfall_fen")?
            .0;
        f.shortfall_fen = Fen(short_ytd_fen)
            .checked_sub(Fen(ytd.shortfall_fen), "shortfall_fen")?
            .0;
        if !ytd.start_date.is_empty() {
            lines.push(Text::new(
                format!(
                    "合同年度 {} 至 {}，截至本期：保证 {}，核定 {}",
                    ytd.start_date,
                    ytd.end_date,
                    m3(guaranteed_ytd.0),
                    m3(savings_ytd.0)
                ),
                format!(
                    "Contract year {} to {}, to date: guaranteed {}, verified {}",
                    ytd.start_date,
                    ytd.end_date,
                    m3(guaranteed_ytd.0),
                    m3(savings_ytd.0)
                ),
            ));
        }
        if short_ytd > 0 || ytd.shortfall_fen != 0 {
            let paid = f.shortfall_fen >= 0;
            lines.push(Text::new(
                format!(
                    "截至本期差额：{} × 每立方米 {} = {}，减去此前已结 {}：{}{}",
                    m3(short_ytd),
                    yuan_zh(shortfall_price),
                    yuan_zh(short_ytd_fen),
                    yuan_zh(ytd.shortfall_fen),
                    yuan_zh(f.shortfall_fen),
                    if paid {
                        "，由企业支付给用水单位"
                    } else {
                        "，退还企业（本期节水好于保证，结转）"
                    }
                ),
                format!(
                    "Shortfall to date: {} × {} per m³ = {}, less {} settled before: {}{}",
                    m3(short_ytd),
                    yuan(shortfall_price),
                    yuan(short_ytd_fen),
                    yuan(ytd.shortfall_fen),
                    yuan(f.shortfall_fen),
                    if paid {
                        ", paid by the company to the water user"
                    } else {
                        ", returned to the company (a good period carries over)"
                    }
                ),
            ));
        } else {
            lines.push(Text::new(
                "达到保证节水量：无差额",
                "The guarantee is met: no shortfall",
            ));
        }
        if !ytd.start_date.is_empty() {
            lines.push(if ytd.closes {
                Text::new(
                    format!("本结算单结清截至 {} 的合同年度：为最终结算", ytd.end_date),
                    format!(
                        "This statement closes the contract year ending {}: final",
                        ytd.end_date
                    ),
                )
            } else {
                Text::new(
                    format!("合同年度于 {} 结束前，本结算为暂定", ytd.end_date),
                    format!(
                        "Provisional until the contract year closes on {}",
                        ytd.end_date
                    ),
                )
            });
        }
        Ok(savings_ytd
            .checked_sub(guaranteed_ytd, "excess_litres")?
            .0
            .max(0))
    };

    let hosting = |f: &mut Figures, lines: &mut Vec<Text>| -> Result<(), Overflow> {
        f.hosting_fee_fen = Fen(t.hosting_fee_fen)
            .pro_rata(share.parts, share.of, "hosting_fee_fen")?
            .0;
        f.water_bill_fen = Litres(i.actual_litres).value_at(price, "water_bill_fen")?.0;
        f.company_due_fen = Fen(f.company_due_fen)
            .checked_add(Fen(f.hosting_fee_fen), "company_due_fen")?
            .0;
        let margin =
            Fen(f.hosting_fee_fen).checked_sub(Fen(f.water_bill_fen), "company_margin_fen")?;
        lines.push(Text::new(
            format!(
                "托管费：每年 {} × {} = {}，由用水单位支付给企业",
                yuan_zh(t.hosting_fee_fen),
                share.zh(),
                yuan_zh(f.hosting_fee_fen)
            ),
            format!(
                "Hosting fee: {} a year × {} = {}, paid by the water user to the company",
                yuan(t.hosting_fee_fen),
                share.en(),
                yuan(f.hosting_fee_fen)
            ),
        ));
        lines.push(Text::new(
            format!(
                "实际水费：{} × 每立方米 {} = {}，由企业支付",
                m3(i.actual_litres),
                yuan_zh(price),
                yuan_zh(f.water_bill_fen)
            ),
            format!(
                "Actual water bill: {} × {} per m³ = {}, paid by the company",
                m3(i.actual_litres),
                yuan(price),
                yuan(f.water_bill_fen)
            ),
        ));
        lines.push(Text::new(
            format!("企业收益：托管费 − 水费 = {}", yuan_zh(margin.0)),
            format!("Company margin: fee − bill = {}", yuan(margin.0)),
        ));
        Ok(())
    };

    match i.model {
        ContractModel::SharedSavings | ContractModel::SavingsPlusWaterRights => {
            let value = f.savings_value_fen;
            let share = sharing(&mut f, &mut lines, value, ("节水效益", "the savings value"))?;
            f.user_due_fen = Fen(value).checked_sub(Fen(share), "user_due_fen")?.0;
            lines.push(Text::new(
                format!(
                    "用水单位留存：{} − {} = {}",
                    yuan_zh(value),
                    yuan_zh(share),
                    yuan_zh(f.user_due_fen)
                ),
                format!(
                    "The water user keeps: {} − {} = {}",
                    yuan(value),
                    yuan(share),
                    yuan(f.user_due_fen)
                ),
            ));
            if i.model == ContractModel::SavingsPlusWaterRights {
                let ratio = percent(i64::from(t.water_rights_share_bp));
                lines.push(Text::new(
                    format!("水权交易收益在交易时分配（企业 {ratio}），不计入本期"),
                    format!(
                        "Water-rights trading proceeds are split when traded (company {ratio}), not in this period's figures"
                    ),
                ));
            }
        }
        ContractModel::GuaranteedSavings => {
            let excess = guarantee(&mut f, &mut lines)?;
            if (excess > 0 || ytd.above_guarantee_fen != 0) && t.bonus_share_bp > 0 {
                let excess_value = Litres(excess).value_at(price, "excess_value_fen")?.0;
                let bonus_ytd = Fen(excess_value)
                    .share(BasisPoints(i64::from(t.bonus_share_bp)), "company_due_fen")?
                    .0;
                let bonus = Fen(bonus_ytd)
                    .checked_sub(Fen(ytd.above_guarantee_fen), "company_due_fen")?
                    .0;
                f.company_due_fen = bonus;
                let ratio = percent(i64::from(t.bonus_share_bp));
                lines.push(Text::new(
                    format!(
                        "奖励：截至本期超出保证的 {}（价值 {}）的 {ratio} = {}，减去此前已结 {}：{}",
                        m3(excess),
                        yuan_zh(excess_value),
                        yuan_zh(bonus_ytd),
                        yuan_zh(ytd.above_guarantee_fen),
                        yuan_zh(bonus)
                    ),
                    format!(
                        "Bonus: {ratio} of the excess to date {} valued {} = {}, less {} settled before: {}",
                        m3(excess),
                        yuan(excess_value),
                        yuan(bonus_ytd),
                        yuan(ytd.above_guarantee_fen),
                        yuan(bonus)
                    ),
                ));
            }
            f.user_due_fen = Fen(f.savings_value_fen)
                .checked_sub(Fen(f.company_due_fen), "user_due_fen")?
                .checked_add(Fen(f.shortfall_fen), "user_due_fen")?
                .0;
            lines.push(Text::new(
                format!(
                    "用水单位留存节水效益减去奖励，加上差额：{}",
                    yuan_zh(f.user_due_fen)
                ),
                format!(
                    "The water user keeps the savings value less any bonus, plus any shortfall: {}",
                    yuan(f.user_due_fen)
                ),
            ));
        }
        ContractModel::WaterCostHosting | ContractModel::HostingPlusGuarantee => {
            hosting(&mut f, &mut lines)?;
            if i.model == ContractModel::HostingPlusGuarantee {
                guarantee(&mut f, &mut lines)?;
            }
            // What the user would have paid without the retrofit, less the fee it pays.
            let baseline_bill = Litres(i.actual_litres)
                .checked_add(savings, "baseline_litres")?
                .value_at(price, "baseline_bill_fen")?
                .0;
            f.user_due_fen = Fen(baseline_bill)
                .checked_sub(Fen(f.hosting_fee_fen), "user_due_fen")?
                .checked_add(Fen(f.shortfall_fen), "user_due_fen")?
                .0;
            let short = f.shortfall_fen > 0;
            lines.push(Text::new(
                format!(
                    "用水单位以托管费 {} 替代调整后基准水费 {}{}：{}",
                    yuan_zh(f.hosting_fee_fen),
                    yuan_zh(baseline_bill),
                    if short { "，并获得差额" } else { "" },
                    yuan_zh(f.user_due_fen)
                ),
                format!(
                    "The water user avoids its adjusted baseline bill {} for the fee {}{}: {}",
                    yuan(baseline_bill),
                    yuan(f.hosting_fee_fen),
                    if short {
                        ", and receives the shortfall"
                    } else {
                        ""
                    },
                    yuan(f.user_due_fen)
                ),
            ));
        }
        ContractModel::GuaranteePlusSharing => {
            let excess = guarantee(&mut f, &mut lines)?;
            let excess_value = Litres(excess).value_at(price, "excess_value_fen")?.0;
            let share_ytd = if excess > 0 {
                sharing(
                    &mut f,
                    &mut lines,
                    excess_value,
                    (
                        "截至本期超出保证部分的价值",
                        "the value above the guarantee to date",
                    ),
                )?
            } else {
                0
            };
            // Less what earlier statements of the year paid of it.
            let share = Fen(share_ytd)
                .checked_sub(Fen(ytd.above_guarantee_fen), "company_due_fen")?
                .0;
            if ytd.above_guarantee_fen != 0 {
                lines.push(Text::new(
                    format!(
                        "减去此前已结 {}：本期企业分成 {}",
                        yuan_zh(ytd.above_guarantee_fen),
                        yuan_zh(share)
                    ),
                    format!(
                        "Less {} settled before: company share this period {}",
                        yuan(ytd.above_guarantee_fen),
                        yuan(share)
                    ),
                ));
            }
            f.company_due_fen = share;
            f.user_due_fen = Fen(f.savings_value_fen)
                .checked_sub(Fen(share), "user_due_fen")?
                .checked_add(Fen(f.shortfall_fen), "user_due_fen")?
                .0;
            lines.push(Text::new(
                format!(
                    "用水单位留存节水效益减去企业分成，加上差额：{}",
                    yuan_zh(f.user_due_fen)
                ),
                format!(
                    "The water user keeps the savings value less the company share, plus any shortfall: {}",
                    yuan(f.user_due_fen)
                ),
            ));
        }
    }
    lines.push(Text::new(
        "金额以分为单位，逐行四舍五入到分（五入远离零）；年度条款按日历月（每月 1/12）或按合同年度天数折算，以合同约定为准。",
        "Amounts in fen, rounded to the nearest fen at each line (halves away from zero); annual terms pro-rated by calendar months (1/12 a month) or by days over the contract year's days, as the contract says.",
    ));
    f.lines = lines;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settlement, which these inputs never overflow.
    fn settle(i: &SettleInput) -> Figures {
        super::settle(i).expect("settles")
    }

    fn input(model: ContractModel, terms: &ContractTerms, savings: i64) -> SettleInput<'_> {
        SettleInput {
            model,
            terms,
            price_fen_per_m3: 410,
            savings_litres: savings,
            actual_litres: 1_000_000,
            period_days: 31,
            start_date: "2025-01-01".into(),
            end_date: "2025-01-31".into(),
            months_into_operation: 0,
            // By days, over a 365-day contract year: 31/365 (the figures below).
            share_of_year: ShareOfYear {
                parts: 31,
                of: 365,
                unit: "days",
            },
            year_to_date: YearToDate::default(),
        }
    }

    fn day(s: &str) -> chrono::NaiveDate {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    /// Issue 12's finding: twelve monthly settlements of 2020 added up to 366/365 of the
    /// annual fee (each month pro-rated by days/365).
    #[test]
    fn twelve_months_add_up_to_the_year() {
        let year = day("2020-01-01");
        let months: Vec<ShareOfYear> = (0..12u32)
            .map(|k| {
                let s = year + chrono::Months::new(k);
                let e = (s + chrono::Months::new(1)).pred_opt().expect("day");
                share_of_year(s, e, year, false)
            })
            .collect();
        assert!(months.iter().all(|m| (m.parts, m.of) == (1, 12)));
        // By days, over the contract year's 366 days: they add up to 366/366.
        let by_days: i64 = (0..12u32)
            .map(|k| {
                let s = year + chrono::Months::new(k);
                let e = (s + chrono::Months::new(1)).pred_opt().expect("day");
                let share = share_of_year(s, e, year, true);
                assert_eq!(share.of, 366);
                share.parts
            })
            .sum();
        assert_eq!(by_days, 366);
        // A month from any day is a month (01-10 … 02-09); a period not of whole months is by days.
        let from_the_tenth = share_of_year(day("2020-01-10"), day("2020-02-09"), year, false);
        assert_eq!((from_the_tenth.parts, from_the_tenth.of), (1, 12));
        let odd = share_of_year(day("2020-01-10"), day("2020-02-20"), year, false);
        assert_eq!((odd.parts, odd.of), (42, 366));
        // The hosting fee of 36,500,000 fen a year over the twelve months: exactly the year's.
        let terms = ContractTerms {
            hosting_fee_fen: 36_500_000,
            ..Default::default()
        };
        let fees: i64 = months
            .iter()
            .map(|m| {
                let mut i = input(ContractModel::WaterCostHosting, &terms, 0);
                i.share_of_year = *m;
                settle(&i).hosting_fee_fen
            })
            .sum();
        // 36,500,000 / 12 = 3,041,666.67 → 3,041,667 a month, 12 fen over from rounding
        // each line (the year's statements round month by month).
        assert_eq!(fees, 12 * 3_041_667);
    }

    /// Issue 12's finding: guarantees were reconciled month by month, never over the contract
    /// year. A short month followed by a good one: the good one returns the earlier shortfall
    /// as far as it covers it, and the year-end statement is final.
    #[test]
    fn the_guarantee_is_reconciled_over_the_contract_year() {
        let terms = ContractTerms {
            guaranteed_savings_litres: 3_650_000, // 304,166.67 L a month by months
            shortfall_price_fen_per_m3: 500,
            ..Default::default()
        };
        let month = ShareOfYear {
            parts: 1,
            of: 12,
            unit: "months",
        };
        let guaranteed = 304_167; // 3,650,000 / 12, rounded
        // Month 1: 204,167 L, short 100,000 L × 5.00 = 50,000 fen, provisional.
        let mut first = input(
            ContractModel::GuaranteedSavings,
            &terms,
            guaranteed - 100_000,
        );
        first.share_of_year = month;
        first.year_to_date = YearToDate {
            start_date: "2025-01-01".into(),
            end_date: "2025-12-31".into(),
            ..Default::default()
        };
        let f1 = settle(&first);
        assert_eq!(f1.shortfall_fen, 50_000);
        assert!(f1.lines.iter().any(|l| {
            l.en.starts_with("Provisional until the contract year closes on 2025-12-31")
        }));
        // Month 2: 60,000 L over its guarantee: the year to date is short 40,000 L = 20,000
        // fen; 50,000 settled before, so 30,000 fen go back to the company.
        let mut second = input(
            ContractModel::GuaranteedSavings,
            &terms,
            guaranteed + 60_000,
        );
        second.share_of_year = month;
        second.year_to_date = YearToDate {
            start_date: "2025-01-01".into(),
            end_date: "2025-12-31".into(),
            closes: true,
            guaranteed_litres: guaranteed,
            savings_litres: guaranteed - 100_000,
            shortfall_fen: 50_000,
            above_guarantee_fen: 0,
        };
        let f2 = settle(&second);
        assert_eq!(f2.shortfall_fen, 20_000 - 50_000);
        assert!(
            f2.lines
                .iter()
                .any(|l| l.en.contains("returned to the company")),
            "{:?}",
            f2.lines
        );
        assert!(
            f2.lines
                .iter()
                .any(|l| l.en.starts_with("This statement closes the contract year"))
        );
        // The two statements together: the year's shortfall, 40,000 L × 5.00.
        assert_eq!(f1.shortfall_fen + f2.shortfall_fen, 20_000);
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(mul_div_round(1, 1, 2), Some(1));
        assert_eq!(mul_div_round(-1, 1, 2), Some(-1));
        assert_eq!(mul_div_round(1, 1, 3), Some(0));
        assert_eq!(mul_div_round(2, 1, 3), Some(1));
        assert_eq!(mul_div_round(1_234_567, 410, 1000), Some(506_172)); // 506,172.47
        assert_eq!(yuan(506_172), "5,061.72 yuan");
        assert_eq!(cubic_metres(-1_234_567), "−1,234.567 m³");
    }

    #[test]
    fn shared_savings() {
        let terms = ContractTerms {
            share_ratio_bp: 7000,
            sharing_period_months: 96,
            ..Default::default()
        };
        // 123,457 L × 4.10 yuan/m³ = 50,617.37 fen → 50,617; 70% = 35,431.9 → 35,432.
        let f = settle(&input(ContractModel::SharedSavings, &terms, 123_457));
        assert_eq!(f.savings_value_fen, 50_617);
        assert_eq!(f.company_due_fen, 35_432);
        assert_eq!(f.user_due_fen, 50_617 - 35_432);
        assert!(
            f.lines
                .iter()
                .any(|l| l.en.contains("Company share 70.00%"))
        );
        // After the sharing period, the user keeps everything.
        let late = SettleInput {
            months_into_operation: 96,
            ..input(ContractModel::SharedSavings, &terms, 123_457)
        };
        assert_eq!(settle(&late).company_due_fen, 0);
        // Negative savings: no share, the user bears the value.
        let neg = settle(&input(ContractModel::SharedSavings, &terms, -10_000));
        assert_eq!(neg.company_due_fen, 0);
        assert_eq!(neg.savings_value_fen, -4_100);
    }

    #[test]
    fn guaranteed_savings_shortfall_and_bonus() {
        let terms = ContractTerms {
            guaranteed_savings_litres: 3_650_000, // 10,000 L a day
            shortfall_price_fen_per_m3: 500,
            bonus_share_bp: 2000,
            ..Default::default()
        };
        // Guarantee for 31 days: 310,000 L. Verified 250,000: short 60,000 L × 5.00 = 30,000 fen.
        let short = settle(&input(ContractModel::GuaranteedSavings, &terms, 250_000));
        assert_eq!(short.shortfall_fen, 30_000);
        assert_eq!(short.company_due_fen, 0);
        assert_eq!(short.savings_value_fen, 102_500);
        assert_eq!(short.user_due_fen, 102_500 + 30_000);
        // Verified 410,000: excess 100,000 L valued 41,000 fen; bonus 20% = 8,200.
        let over = settle(&input(ContractModel::GuaranteedSavings, &terms, 410_000));
        assert_eq!(over.shortfall_fen, 0);
        assert_eq!(over.company_due_fen, 8_200);
        assert_eq!(over.user_due_fen, 168_100 - 8_200);
    }

    #[test]
    fn water_cost_hosting() {
        let terms = ContractTerms {
            hosting_fee_fen: 36_500_000, // 100,000 fen a day
            ..Default::default()
        };
        // Fee 31 days = 3,100,000 fen; bill 1,000,000 L × 4.10 = 410,000 fen.
        let f = settle(&input(ContractModel::WaterCostHosting, &terms, 200_000));
        assert_eq!(f.hosting_fee_fen, 3_100_000);
        assert_eq!(f.water_bill_fen, 410_000);
        assert_eq!(f.company_due_fen, 3_100_000);
        // Baseline bill (1,200,000 L) 492,000 − fee.
        assert_eq!(f.user_due_fen, 492_000 - 3_100_000);
        assert!(f.lines.iter().any(|l| l.en.contains("Company margin")));
    }

    #[test]
    fn hybrids() {
        let terms = ContractTerms {
            hosting_fee_fen: 36_500_000,
            guaranteed_savings_litres: 3_650_000,
            share_ratio_bp: 5000,
            ..Default::default()
        };
        // Hosting + guarantee, short by 110,000 L at the water price 4.10: 45,100 fen.
        let hg = settle(&input(ContractModel::HostingPlusGuarantee, &terms, 200_000));
        assert_eq!(hg.shortfall_fen, 45_100);
        assert_eq!(hg.hosting_fee_fen, 3_100_000);
        // Guarantee + sharing: 410,000 L, excess 100,000 L = 41,000 fen, half to the company.
        let gs = settle(&input(ContractModel::GuaranteePlusSharing, &terms, 410_000));
        assert_eq!(gs.company_due_fen, 20_500);
        assert_eq!(gs.shortfall_fen, 0);
        assert_eq!(gs.user_due_fen, 168_100 - 20_500);
    }
}

/// Properties of the settlement over every input the entry checks let through (volumes within
/// ±MAX_LITRES, prices to MAX_PRICE_FEN_PER_M3, amounts to MAX_FEN, rates to 100%, terms to
/// 50 years): it never overflows, the parties' shares add up, and beyond the bounds it says
/// Overflow instead of wrapping.
#[cfg(test)]
mod properties {
    use super::*;
    use cwsm_platform::quantity::{FULL_BP, MAX_FEN, MAX_LITRES, MAX_MONTHS, MAX_PRICE_FEN_PER_M3};
    use proptest::prelude::*;

    fn models() -> impl Strategy<Value = ContractModel> {
        prop_oneof![
            Just(ContractModel::SharedSavings),
            Just(ContractModel::GuaranteedSavings),
            Just(ContractModel::WaterCostHosting),
            Just(ContractModel::HostingPlusGuarantee),
            Just(ContractModel::GuaranteePlusSharing),
            Just(ContractModel::SavingsPlusWaterRights),
        ]
    }

    fn terms() -> impl Strategy<Value = ContractTerms> {
        (
            0..=FULL_BP as i32,
            0..=MAX_MONTHS,
            0..=MAX_LITRES,
            0..=MAX_PRICE_FEN_PER_M3,
            0..=FULL_BP as i32,
            0..=MAX_FEN,
        )
            .prop_map(|(share, months, guaranteed, shortfall_price, bonus, fee)| {
                ContractTerms {
                    share_ratio_bp: share,
                    sharing_period_months: months,
                    guaranteed_savings_litres: guaranteed,
                    shortfall_price_fen_per_m3: shortfall_price,
                    bonus_share_bp: bonus,
                    hosting_fee_fen: fee,
                    water_rights_share_bp: share,
                    pro_rate_by_days: false,
                }
            })
    }

    fn run(
        model: ContractModel,
        terms: &ContractTerms,
        price: i64,
        savings: i64,
        actual: i64,
        days: i64,
        months: i64,
    ) -> Result<Figures, Overflow> {
        super::settle(&SettleInput {
            model,
            terms,
            price_fen_per_m3: price,
            savings_litres: savings,
            actual_litres: actual,
            period_days: days,
            start_date: "2026-01-01".into(),
            end_date: "2026-01-31".into(),
            months_into_operation: months,
            share_of_year: ShareOfYear {
                parts: days,
                of: 365,
                unit: "days",
            },
            year_to_date: YearToDate::default(),
        })
    }

    proptest! {
        #[test]
        fn bounded_inputs_settle_and_the_shares_add_up(
            model in models(),
            terms in terms(),
            price in 0..=MAX_PRICE_FEN_PER_M3,
            savings in -MAX_LITRES..=MAX_LITRES,
            actual in 0..=MAX_LITRES,
            days in 1i64..=366,
            months in 0i64..=600,
        ) {
            let f = run(model, &terms, price, savings, actual, days, months)
                .map_err(|o| TestCaseError::fail(format!("overflow within the bounds: {o}")))?;
            prop_assert!(f.shortfall_fen >= 0);
            prop_assert!(f.company_due_fen >= 0, "the company is never due a negative amount");
            match model {
                ContractModel::SharedSavings | ContractModel::SavingsPlusWaterRights => {
                    // What the company gets and what the user keeps are the savings' value.
                    prop_assert_eq!(f.company_due_fen + f.user_due_fen, f.savings_value_fen);
                    if f.savings_value_fen > 0 {
                        prop_assert!(f.company_due_fen <= f.savings_value_fen);
                    }
                }
                ContractModel::GuaranteedSavings => {
                    prop_assert_eq!(
                        f.user_due_fen,
                        f.savings_value_fen - f.company_due_fen + f.shortfall_fen
                    );
                }
                _ => {}
            }
            if savings >= terms.guaranteed_savings_litres {
                prop_assert_eq!(f.shortfall_fen, 0, "a met guarantee has no shortfall");
            }
        }

        #[test]
        fn beyond_the_bounds_it_overflows_instead_of_wrapping(
            model in models(),
            terms in terms(),
            savings in prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(i64::MAX / 2)],
        ) {
            // A saving no entry check lets through, at the highest price: never a wrapped figure.
            match run(model, &terms, MAX_PRICE_FEN_PER_M3, savings, MAX_LITRES, 31, 0) {
                Err(_) => {}
                Ok(f) => prop_assert!(
                    f.savings_value_fen.unsigned_abs() >= (savings.unsigned_abs() / 1000),
                    "a figure that fits must be the real one: {:?}", f
                ),
            }
        }

        #[test]
        fn rounding_is_within_half_a_unit(a in -MAX_LITRES..=MAX_LITRES, b in 0..=MAX_PRICE_FEN_PER_M3, d in 1i64..=100_000) {
            let exact = i128::from(a) * i128::from(b);
            match mul_div_round(a, b, d) {
                Some(q) => {
                    let err = (i128::from(q) * i128::from(d) - exact).abs();
                    prop_assert!(err * 2 <= i128::from(d), "{a}×{b}/{d} = {q}");
                }
                // None only when the quotient does not fit an i64 (a small divisor).
                None => prop_assert!(
                    (exact / i128::from(d)).abs() >= i128::from(i64::MAX),
                    "{a}×{b}/{d} fits, yet None"
                ),
            }
        }
    }
}
