//! Settlement of a verified period by the contract model, in fen, plain Rust.
//!
//! Rounding: every amount is an integer number of fen, rounded to the nearest fen with halves
//! away from zero, at each line of the statement (so the lines add up as printed). Annual
//! figures (guarantee, hosting fee) are pro-rated by the period's days over 365.

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
    pub lines: Vec<String>,
}

pub use cwsm_platform::quantity::mul_div_round;

/// Fen as yuan for people: "12,345.67 yuan".
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "−" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02} yuan", thousands(abs / 100), abs % 100)
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

/// Computes a period's settlement and its statement. Every step is checked: figures beyond
/// what can be stored are an [`Overflow`] naming the figure, never a wrapped amount.
pub fn settle(i: &SettleInput) -> Result<Figures, Overflow> {
    let t = i.terms;
    let price = i.price_fen_per_m3;
    let savings = Litres(i.savings_litres);
    let mut f = Figures::default();
    let mut lines = vec![
        format!(
            "Settlement of the period {} to {} ({} days), contract model: {}",
            i.start_date,
            i.end_date,
            i.period_days,
            i.model.label()
        ),
        format!(
            "Verified savings: {} at {} per m³",
            cubic_metres(i.savings_litres),
            yuan(price)
        ),
    ];
    f.savings_value_fen = savings.value_at(price, "savings_value_fen")?.0;
    lines.push(format!(
        "Savings value: {} × {} per m³ = {}",
        cubic_metres(i.savings_litres),
        yuan(price),
        yuan(f.savings_value_fen)
    ));

    let sharing = |f: &mut Figures,
                   lines: &mut Vec<String>,
                   value: i64,
                   what: &str|
     -> Result<i64, Overflow> {
        let running = t.sharing_period_months <= 0
            || i.months_into_operation < i64::from(t.sharing_period_months);
        let share = if !running {
            lines.push(format!(
                "The sharing period of {} months is over: no company share",
                t.sharing_period_months
            ));
            0
        } else if value > 0 {
            Fen(value)
                .share(BasisPoints(i64::from(t.share_ratio_bp)), "company_due_fen")?
                .0
        } else {
            lines.push("No positive savings: no company share".to_string());
            0
        };
        if share != 0 {
            lines.push(format!(
                "Company share {} of {what} {}: {}",
                percent(i64::from(t.share_ratio_bp)),
                yuan(value),
                yuan(share)
            ));
        }
        f.company_due_fen = Fen(f.company_due_fen)
            .checked_add(Fen(share), "company_due_fen")?
            .0;
        Ok(share)
    };

    let guarantee = |f: &mut Figures, lines: &mut Vec<String>| -> Result<i64, Overflow> {
        let guaranteed = Litres(t.guaranteed_savings_litres)
            .pro_rata(i.period_days, 365, "guaranteed_savings_litres")?
            .0;
        lines.push(format!(
            "Guaranteed savings: {} a year × {}/365 days = {}",
            cubic_metres(t.guaranteed_savings_litres),
            i.period_days,
            cubic_metres(guaranteed)
        ));
        if i.savings_litres < guaranteed {
            let shortfall_price = if t.shortfall_price_fen_per_m3 > 0 {
                t.shortfall_price_fen_per_m3
            } else {
                price
            };
            let short = Litres(guaranteed).checked_sub(savings, "shortfall_litres")?;
            f.shortfall_fen = short.value_at(shortfall_price, "shortfall_fen")?.0;
            let short = short.0;
            lines.push(format!(
                "Shortfall: {} × {} per m³ = {}, paid by the company to the water user",
                cubic_metres(short),
                yuan(shortfall_price),
                yuan(f.shortfall_fen)
            ));
        } else {
            lines.push("The guarantee is met: no shortfall".to_string());
        }
        Ok(guaranteed)
    };

    let hosting = |f: &mut Figures, lines: &mut Vec<String>| -> Result<(), Overflow> {
        f.hosting_fee_fen = Fen(t.hosting_fee_fen)
            .pro_rata(i.period_days, 365, "hosting_fee_fen")?
            .0;
        f.water_bill_fen = Litres(i.actual_litres).value_at(price, "water_bill_fen")?.0;
        f.company_due_fen = Fen(f.company_due_fen)
            .checked_add(Fen(f.hosting_fee_fen), "company_due_fen")?
            .0;
        let margin =
            Fen(f.hosting_fee_fen).checked_sub(Fen(f.water_bill_fen), "company_margin_fen")?;
        lines.push(format!(
            "Hosting fee: {} a year × {}/365 days = {}, paid by the water user to the company",
            yuan(t.hosting_fee_fen),
            i.period_days,
            yuan(f.hosting_fee_fen)
        ));
        lines.push(format!(
            "Actual water bill: {} × {} per m³ = {}, paid by the company",
            cubic_metres(i.actual_litres),
            yuan(price),
            yuan(f.water_bill_fen)
        ));
        lines.push(format!("Company margin: fee − bill = {}", yuan(margin.0)));
        Ok(())
    };

    match i.model {
        ContractModel::SharedSavings | ContractModel::SavingsPlusWaterRights => {
            let value = f.savings_value_fen;
            let share = sharing(&mut f, &mut lines, value, "the savings value")?;
            f.user_due_fen = Fen(value).checked_sub(Fen(share), "user_due_fen")?.0;
            lines.push(format!(
                "The water user keeps: {} − {} = {}",
                yuan(value),
                yuan(share),
                yuan(f.user_due_fen)
            ));
            if i.model == ContractModel::SavingsPlusWaterRights {
                lines.push(format!(
                    "Water-rights trading proceeds are split when traded (company {}), not in this period's figures",
                    percent(i64::from(t.water_rights_share_bp))
                ));
            }
        }
        ContractModel::GuaranteedSavings => {
            let guaranteed = guarantee(&mut f, &mut lines)?;
            let excess = savings.checked_sub(Litres(guaranteed), "excess_litres")?.0;
            if excess > 0 && t.bonus_share_bp > 0 {
                let excess_value = Litres(excess).value_at(price, "excess_value_fen")?.0;
                let bonus = Fen(excess_value)
                    .share(BasisPoints(i64::from(t.bonus_share_bp)), "company_due_fen")?
                    .0;
                f.company_due_fen = bonus;
                lines.push(format!(
                    "Bonus: {} of the excess {} valued {} = {}",
                    percent(i64::from(t.bonus_share_bp)),
                    cubic_metres(excess),
                    yuan(excess_value),
                    yuan(bonus)
                ));
            }
            f.user_due_fen = Fen(f.savings_value_fen)
                .checked_sub(Fen(f.company_due_fen), "user_due_fen")?
                .checked_add(Fen(f.shortfall_fen), "user_due_fen")?
                .0;
            lines.push(format!(
                "The water user keeps the savings value less any bonus, plus any shortfall: {}",
                yuan(f.user_due_fen)
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
            lines.push(format!(
                "The water user avoids its adjusted baseline bill {} for the fee {}{}: {}",
                yuan(baseline_bill),
                yuan(f.hosting_fee_fen),
                if f.shortfall_fen > 0 {
                    ", and receives the shortfall"
                } else {
                    ""
                },
                yuan(f.user_due_fen)
            ));
        }
        ContractModel::GuaranteePlusSharing => {
            let guaranteed = guarantee(&mut f, &mut lines)?;
            let excess = savings
                .checked_sub(Litres(guaranteed), "excess_litres")?
                .0
                .max(0);
            let excess_value = Litres(excess).value_at(price, "excess_value_fen")?.0;
            let share = if excess > 0 {
                sharing(
                    &mut f,
                    &mut lines,
                    excess_value,
                    "the value above the guarantee",
                )?
            } else {
                0
            };
            f.user_due_fen = Fen(f.savings_value_fen)
                .checked_sub(Fen(share), "user_due_fen")?
                .checked_add(Fen(f.shortfall_fen), "user_due_fen")?
                .0;
            lines.push(format!(
                "The water user keeps the savings value less the company share, plus any shortfall: {}",
                yuan(f.user_due_fen)
            ));
        }
    }
    lines.push(
        "Amounts in fen, rounded to the nearest fen at each line (halves away from zero); annual terms pro-rated by days/365."
            .to_string(),
    );
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
        }
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
        assert!(f.lines.iter().any(|l| l.contains("Company share 70.00%")));
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
        assert!(f.lines.iter().any(|l| l.contains("Company margin")));
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
