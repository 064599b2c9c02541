//! Measurement and verification (M&V), plain Rust and no database: the baseline model, its
//! ASHRAE Guideline 14 statistics, data sufficiency, and each reporting period's savings with
//! their uncertainty.
//!
//! The model is always of *use per day*: on daily (or finer) data one observation per day with
//! data; on monthly data one observation per calendar month, its use per day (CalTRACK's
//! habit, so months of different lengths compare). A reporting period's adjusted baseline is
//! the model's prediction summed over the period's days with data, so a missing day drops out
//! of both sides of "baseline − actual" rather than counting as saved water.

use chrono::NaiveDate;
use cwsm_platform::quantity::{Litres, MAX_LITRES, Overflow};

/// The name of the constant term.
pub const INTERCEPT: &str = "intercept";

/// How fine the observations of a fit are; decides the Guideline 14 thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One observation per day (hourly and daily data both; the brief and Guideline 14's
    /// "hourly" thresholds apply to them).
    Daily,
    /// One observation per billing period: the use between two readings of a meter read
    /// every few weeks (a utility's bill), per day, the drivers averaged over the same days,
    /// weighted by the days (CalTRACK's billing method). Guideline 14's monthly thresholds.
    Billing,
}

impl Granularity {
    /// Guideline 14 acceptance: (max CV(RMSE), max |NMBE|), as fractions.
    pub fn thresholds(self) -> (f64, f64) {
        match self {
            Granularity::Billing => (0.15, 0.05),
            Granularity::Daily => (0.30, 0.10),
        }
    }

    pub fn interval_seconds(self) -> i32 {
        match self {
            Granularity::Daily => 86_400,
            // The mean Gregorian month.
            Granularity::Billing => 2_629_746,
        }
    }
}

/// Why a baseline cannot be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("{n} observations cannot fit {p} parameters (need at least {})", p + 1)]
    TooFewObservations { n: usize, p: usize },
    #[error("the drivers are collinear (or constant): {0}")]
    Singular(String),
    #[error("mean baseline use is {0} L/day; savings cannot be measured against it")]
    NoUse(f64),
}

/// An ordinary least squares fit and its Guideline 14 statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// "intercept", then the drivers.
    pub names: Vec<String>,
    pub coefficients: Vec<f64>,
    pub standard_errors: Vec<f64>,
    /// n: observations.
    pub observations: usize,
    /// p: parameters (1 + drivers).
    pub parameters: usize,
    /// ȳ, litres per day.
    pub mean_use: f64,
    pub r_squared: f64,
    /// CV(RMSE) = sqrt(Σ(ŷ−y)² / (n−p)) / ȳ.
    pub cv_rmse: f64,
    /// NMBE = Σ(ŷ−y) / ((n−p)·ȳ).
    pub nmbe: f64,
    pub granularity: Granularity,
    pub g14_pass: bool,
    /// ρ: the lag-1 autocorrelation of the residuals in time order,
    /// Σ eᵢ·eᵢ₋₁ / Σ eᵢ² (0 for a perfect fit).
    pub autocorrelation: f64,
    /// n′ = n·(1 − ρ)/(1 + ρ), ρ taken as 0 when negative (Guideline 14 corrects for positive
    /// autocorrelation only): the independent observations the n observations are worth.
    pub effective_observations: f64,
}

impl Fit {
    /// The model's use per day for driver values `x` (one per driver, in order).
    pub fn predict(&self, x: &[f64]) -> f64 {
        self.coefficients[0]
            + self.coefficients[1..]
                .iter()
                .zip(x)
                .map(|(b, v)| b * v)
                .sum::<f64>()
    }

    /// Degrees of freedom, n − p.
    pub fn dof(&self) -> usize {
        self.observations - self.parameters
    }
}

/// Fits `y = b0 + b1·x1 + …` by ordinary least squares (normal equations XᵀX·b = Xᵀy, solved
/// by Gauss-Jordan elimination with partial pivoting; p is small, so this is exact enough and
/// gives (XᵀX)⁻¹ for the standard errors). `xs[i]` holds observation i's driver values.
pub fn fit(
    drivers: &[String],
    ys: &[f64],
    xs: &[Vec<f64>],
    granularity: Granularity,
) -> Result<Fit, FitError> {
    fit_weighted(drivers, ys, xs, None, granularity)
}

/// [`fit`] by weighted least squares when `weights` are given (a billing period's days):
/// XᵀWX·b = XᵀWy, with the weights scaled to a mean of 1 so that the statistics stay per
/// observation: ȳ = Σwy/Σw, SSE = Σwe², R² = 1 − SSE/Σw(y − ȳ)², CV(RMSE) =
/// sqrt(SSE/(n − p))/ȳ, NMBE = Σw(ŷ − y)/((n − p)·ȳ) (statsmodels' WLS computes the same);
/// ρ is of the residuals as they are.
pub fn fit_weighted(
    drivers: &[String],
    ys: &[f64],
    xs: &[Vec<f64>],
    weights: Option<&[f64]>,
    granularity: Granularity,
) -> Result<Fit, FitError> {
    let n = ys.len();
    let p = drivers.len() + 1;
    if n <= p {
        return Err(FitError::TooFewObservations { n, p });
    }
    let scale = weights
        .map(|w| w.iter().sum::<f64>() / n as f64)
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let weight = |i: usize| {
        weights
            .and_then(|w| w.get(i))
            .map(|w| w / scale)
            .unwrap_or(1.0)
    };
    // XᵀX and Xᵀy in one pass; row i of X is [1, xs[i]…].
    let mut xtx = vec![vec![0.0; p]; p];
    let mut xty = vec![0.0; p];
    let mut row = vec![0.0; p];
    for (i, y) in ys.iter().enumerate() {
        row[0] = 1.0;
        for (j, v) in row.iter_mut().enumerate().skip(1) {
            *v = xs.get(i).and_then(|x| x.get(j - 1)).copied().unwrap_or(0.0);
        }
        let w = weight(i);
        for (a, ra) in row.iter().enumerate() {
            xty[a] += w * ra * y;
            for (b, rb) in row.iter().enumerate() {
                xtx[a][b] += w * ra * rb;
            }
        }
    }
    let inverse = invert(xtx).ok_or_else(|| FitError::Singular(drivers.join(", ")))?;
    let coefficients: Vec<f64> = (0..p)
        .map(|a| (0..p).map(|b| inverse[a][b] * xty[b]).sum())
        .collect();
    let mean = ys
        .iter()
        .enumerate()
        .map(|(i, y)| weight(i) * y)
        .sum::<f64>()
        / n as f64;
    if mean <= 0.0 {
        return Err(FitError::NoUse(mean));
    }
    let mut sse = 0.0;
    let mut raw_sse = 0.0;
    let mut sst = 0.0;
    let mut bias = 0.0;
    let mut lagged = 0.0;
    let mut previous: Option<f64> = None;
    for (i, y) in ys.iter().enumerate() {
        let x: &[f64] = xs.get(i).map(Vec::as_slice).unwrap_or(&[]);
        let predicted = coefficients[0]
            + coefficients[1..]
                .iter()
                .zip(x)
                .map(|(b, v)| b * v)
                .sum::<f64>();
        let residual = predicted - y;
        if let Some(e) = previous {
            lagged += residual * e;
        }
        previous = Some(residual);
        let w = weight(i);
        raw_sse += residual * residual;
        sse += w * residual * residual;
        bias += w * residual;
        sst += w * (y - mean) * (y - mean);
    }
    let dof = (n - p) as f64;
    let sigma2 = sse / dof;
    let cv_rmse = sigma2.sqrt() / mean;
    let nmbe = bias / (dof * mean);
    // With an intercept R² ≥ 0; clamp the float noise of an intercept-only fit.
    let r_squared = if sst > 0.0 {
        (1.0 - sse / sst).max(0.0)
    } else {
        0.0
    };
    let standard_errors = (0..p)
        .map(|j| (sigma2 * inverse[j][j]).max(0.0).sqrt())
        .collect();
    let autocorrelation = if raw_sse > 0.0 { lagged / raw_sse } else { 0.0 };
    let rho = autocorrelation.clamp(0.0, MAX_AUTOCORRELATION);
    let effective_observations = n as f64 * (1.0 - rho) / (1.0 + rho);
    let (max_cv, max_nmbe) = granularity.thresholds();
    let mut names = vec![INTERCEPT.to_string()];
    names.extend(drivers.iter().cloned());
    Ok(Fit {
        names,
        coefficients,
        standard_errors,
        observations: n,
        parameters: p,
        mean_use: mean,
        r_squared,
        cv_rmse,
        nmbe,
        granularity,
        g14_pass: cv_rmse <= max_cv && nmbe.abs() <= max_nmbe,
        autocorrelation,
        effective_observations,
    })
}

/// ρ is taken at most this close to 1 (n′ > 0).
const MAX_AUTOCORRELATION: f64 = 0.99;

/// Inverts a small square matrix by Gauss-Jordan elimination with partial pivoting; `None`
/// when it is singular (relative to its scale).
fn invert(mut a: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = a.len();
    let scale = a
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0_f64, |m, v| m.max(v.abs()));
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= scale * 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..n {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for i in 0..n {
            if i != col {
                let f = a[i][col];
                if f != 0.0 {
                    for j in 0..n {
                        a[i][j] -= f * a[col][j];
                        inv[i][j] -= f * inv[col][j];
                    }
                }
            }
        }
    }
    Some(inv)
}

/// Two-sided confidence levels the savings are reported at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidence {
    P68,
    P90,
}

/// Student's t quantile for a two-sided `confidence` with `dof` degrees of freedom (not
/// necessarily whole: n′ − p), exact (statrs); at least one degree of freedom.
pub fn t_value(confidence: Confidence, dof: f64) -> f64 {
    let one_sided = match confidence {
        Confidence::P68 => 0.84,
        Confidence::P90 => 0.95,
    };
    use statrs::distribution::ContinuousCDF;
    statrs::distribution::StudentsT::new(0.0, 1.0, dof.max(1.0))
        .map(|t| t.inverse_cdf(one_sided))
        // Unreachable for a dof ≥ 1; the normal quantile is its limit.
        .unwrap_or(match confidence {
            Confidence::P68 => 0.994_457_883_209_753,
            Confidence::P90 => 1.644_853_626_951_472,
        })
}

/// Absolute savings uncertainty, ± litres, at `confidence`.
///
/// ASHRAE Guideline 14-2014, Annex B, eq. B-14 (fractional savings uncertainty), with the
/// autocorrelation correction of B-15:
///
/// ```text
/// ΔE_save / E_save = t · 1.26 · CV(RMSE) · sqrt( (n/n′) · (1 + 2/n′) · (1/m) ) / F
/// n′ = n · (1 − ρ) / (1 + ρ)
/// ```
///
/// with F = E_save / E_baseline the fractional savings, n the baseline observations, ρ the
/// lag-1 autocorrelation of the baseline residuals (taken as 0 when negative), m the
/// reporting-period observations and t Student's t at n′ − p degrees of freedom. Multiplying
/// by E_save cancels F:
///
/// ```text
/// ΔE_save = t · 1.26 · CV(RMSE) · E_baseline · sqrt( (n/n′) · (1 + 2/n′) / m )
/// ```
///
/// where E_baseline is the adjusted baseline of the reporting period (litres).
pub fn savings_uncertainty(
    fit: &Fit,
    confidence: Confidence,
    adjusted_baseline_litres: f64,
    reporting_observations: usize,
) -> f64 {
    if reporting_observations == 0 {
        return 0.0;
    }
    let n = fit.observations as f64;
    let n_eff = fit.effective_observations.max(1.0);
    let m = reporting_observations as f64;
    t_value(confidence, n_eff - fit.parameters as f64)
        * 1.26
        * fit.cv_rmse
        * adjusted_baseline_litres.abs()
        * ((n / n_eff) * (1.0 + 2.0 / n_eff) / m).sqrt()
}

/// A day's metered use (China Standard Time calendar day).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayUse {
    pub day: NaiveDate,
    pub litres: i64,
    pub readings: i64,
    pub estimated: i64,
    /// The flags by which the M&V plan's quality rules leave the day out
    /// (`metering::QualityRules`, and `flag::CORRECTED_OUT`, `flag::UNCONFIRMED`); 0 when it
    /// is used.
    pub excluded: i32,
    /// Billing data: the first day of the billing period the day's use was spread from (the
    /// observation it belongs to); `None` for days metered by themselves.
    pub billed_from: Option<NaiveDate>,
}

impl DayUse {
    /// Whether the model and the savings use this day.
    pub fn usable(&self) -> bool {
        self.excluded == 0
    }
}

/// The days the quality rule left out among `days` inside `[start, end]`, and a note naming
/// them by flag ("2 days left out by the quality rule (spike 1, register decreased 1)");
/// `None` when there are none.
pub fn exclusions(days: &[DayUse], start: NaiveDate, end: NaiveDate) -> (i64, Option<String>) {
    use crate::metering::flag;
    let out: Vec<&DayUse> = days
        .iter()
        .filter(|d| d.day >= start && d.day <= end && !d.usable())
        .collect();
    if out.is_empty() {
        return (0, None);
    }
    let by_flag: Vec<String> = flag::ALL
        .iter()
        .map(|(_, bit)| *bit)
        .chain([flag::CORRECTED_OUT, flag::UNCONFIRMED])
        .filter_map(|bit| {
            let n = out.iter().filter(|d| d.excluded & bit != 0).count();
            (n > 0).then(|| format!("{} {n}", flag::name(bit)))
        })
        .collect();
    let first: Vec<String> = out.iter().take(5).map(|d| d.day.to_string()).collect();
    let n = out.len() as i64;
    (
        n,
        Some(format!(
            "{n} day{} left out by the quality rule ({}): {}{}",
            if n == 1 { "" } else { "s" },
            by_flag.join(", "),
            first.join(", "),
            if n > 5 { ", …" } else { "" }
        )),
    )
}

/// Whether the baseline data suffice (CalTRACK habits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sufficiency {
    pub baseline_days: i64,
    pub missing_days: i64,
    pub coverage_bp: i64,
    pub estimated_readings: i64,
    /// Days the quality rule left out (counted among the missing).
    pub excluded_days: i64,
    pub ok: bool,
    pub notes: Vec<String>,
}

/// Minimum baseline length and largest share of missing days (CalTRACK 2.0, section 2.2).
pub const MIN_BASELINE_DAYS: i64 = 365;
pub const MAX_MISSING_BP: i64 = 1000;

/// Checks the baseline `[start, end]` against the days that have data (`days` sorted or not).
pub fn sufficiency(days: &[DayUse], start: NaiveDate, end: NaiveDate) -> Sufficiency {
    let baseline_days = (end - start).num_days() + 1;
    let inside: Vec<&DayUse> = days
        .iter()
        .filter(|d| d.day >= start && d.day <= end)
        .collect();
    let with_data = inside.iter().filter(|d| d.usable()).count() as i64;
    let (excluded_days, excluded_note) = exclusions(days, start, end);
    let missing_days = (baseline_days - with_data).max(0);
    let coverage_bp = if baseline_days > 0 {
        with_data * 10_000 / baseline_days
    } else {
        0
    };
    let estimated_readings = inside.iter().map(|d| d.estimated).sum();
    let mut notes = Vec::new();
    if baseline_days < MIN_BASELINE_DAYS {
        notes.push(format!(
            "the baseline period has {baseline_days} days; at least {MIN_BASELINE_DAYS} are needed"
        ));
    }
    if missing_days * 10_000 > baseline_days * MAX_MISSING_BP {
        notes.push(format!(
            "{missing_days} of {baseline_days} baseline days have no usable readings; at most 10% may be missing"
        ));
    }
    let ok = notes.is_empty();
    notes.extend(excluded_note);
    if estimated_readings > 0 {
        notes.push(format!(
            "{estimated_readings} baseline readings are estimated"
        ));
    }
    Sufficiency {
        baseline_days,
        missing_days,
        coverage_bp,
        estimated_readings,
        excluded_days,
        ok,
        notes,
    }
}

/// A driver's values by day (occupancy, production, degree days …).
pub type DriverDays = std::collections::HashMap<NaiveDate, f64>;

/// One observation: use per day, the drivers' values (per day, averaged over a month), and
/// the days with data it stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub y: f64,
    pub x: Vec<f64>,
    pub days: i64,
    /// Litres metered on those days.
    pub litres: i64,
}

/// The observations of the baseline (or of a reporting period) in `[start, end]`. A day
/// counts when it has readings, none the quality rule leaves out, and a value of every
/// driver; the others drop out (of both the baseline and the actual use of a period, so they
/// compare like with like).
pub fn observations(
    days: &[DayUse],
    start: NaiveDate,
    end: NaiveDate,
    granularity: Granularity,
    drivers: &[&DriverDays],
) -> Vec<Observation> {
    let usable = days
        .iter()
        .filter(|d| d.day >= start && d.day <= end && d.usable())
        .filter_map(|d| {
            let x: Option<Vec<f64>> = drivers.iter().map(|v| v.get(&d.day).copied()).collect();
            x.map(|x| (d, x))
        });
    match granularity {
        Granularity::Daily => usable
            .map(|(d, x)| Observation {
                y: d.litres as f64,
                x,
                days: 1,
                litres: d.litres,
            })
            .collect(),
        Granularity::Billing => {
            // One observation per billing period (a day metered by itself is its own).
            let mut months: Vec<(NaiveDate, Observation)> = Vec::new();
            for (d, x) in usable {
                let key = d.billed_from.unwrap_or(d.day);
                match months.last_mut() {
                    Some((k, o)) if *k == key => {
                        o.litres += d.litres;
                        o.days += 1;
                        o.x.iter_mut().zip(&x).for_each(|(a, b)| *a += b);
                    }
                    _ => months.push((
                        key,
                        Observation {
                            y: 0.0,
                            x,
                            days: 1,
                            litres: d.litres,
                        },
                    )),
                }
            }
            months
                .into_iter()
                .map(|(_, mut o)| {
                    let n = o.days as f64;
                    o.y = o.litres as f64 / n;
                    o.x.iter_mut().for_each(|v| *v /= n);
                    o
                })
                .collect()
        }
    }
}

/// Fits the baseline on `[start, end]`: use per day on the named drivers (intercept-only
/// when there are none).
pub fn fit_baseline(
    days: &[DayUse],
    start: NaiveDate,
    end: NaiveDate,
    granularity: Granularity,
    drivers: &[(String, &DriverDays)],
) -> Result<Fit, FitError> {
    let values: Vec<&DriverDays> = drivers.iter().map(|(_, v)| *v).collect();
    let names: Vec<String> = drivers.iter().map(|(n, _)| n.clone()).collect();
    let obs = observations(days, start, end, granularity, &values);
    let ys: Vec<f64> = obs.iter().map(|o| o.y).collect();
    let weights: Vec<f64> = obs.iter().map(|o| o.days as f64).collect();
    let xs: Vec<Vec<f64>> = obs.into_iter().map(|o| o.x).collect();
    let weighted = (granularity == Granularity::Billing).then_some(&weights[..]);
    fit_weighted(&names, &ys, &xs, weighted, granularity)
}

/// One reporting period's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeriodFigures {
    pub adjusted_baseline_litres: i64,
    pub actual_litres: i64,
    pub non_routine_adjustment_litres: i64,
    pub dispute_adjustment_litres: i64,
    pub savings_litres: i64,
    pub savings_bp: i64,
    pub uncertainty_68_litres: i64,
    pub uncertainty_90_litres: i64,
    pub days: i64,
    pub days_with_data: i64,
    /// m: the reporting observations the savings stand on (days, or months of data), which
    /// the uncertainty of several periods together takes as their sum.
    pub observations: i64,
    pub notes: Vec<String>,
}

/// The savings of `[start, end]`: adjusted baseline (the model over the period's days with
/// data and driver values, at those values) + non-routine adjustment − actual (on the same
/// days) + dispute adjustment. `drivers` are the fit's drivers' values, in its order.
pub fn period_figures(
    fit: &Fit,
    days: &[DayUse],
    start: NaiveDate,
    end: NaiveDate,
    drivers: &[&DriverDays],
    non_routine_litres: i64,
    dispute_litres: i64,
) -> Result<PeriodFigures, Overflow> {
    let obs = observations(days, start, end, fit.granularity, drivers);
    let period_days = (end - start).num_days() + 1;
    let days_with_data: i64 = obs.iter().map(|o| o.days).sum();
    let baseline: f64 = obs.iter().map(|o| fit.predict(&o.x) * o.days as f64).sum();
    let actual = Litres::sum(obs.iter().map(|o| Litres(o.litres)), "actual_litres")?.0;
    // A float cast saturates silently: a model predicting beyond any real volume is refused.
    if !baseline.is_finite() || baseline.abs() > MAX_LITRES as f64 {
        return Err(Overflow {
            what: "adjusted_baseline_litres",
        });
    }
    let adjusted_baseline_litres = baseline.round() as i64;
    let savings = Litres(adjusted_baseline_litres)
        .checked_add(Litres(non_routine_litres), "savings_litres")?
        .checked_sub(Litres(actual), "savings_litres")?
        .checked_add(Litres(dispute_litres), "savings_litres")?;
    let savings_litres = savings.0;
    let savings_bp = savings
        .share_of(Litres(adjusted_baseline_litres), "savings_bp")?
        .0;
    let mut notes = Vec::new();
    if days_with_data < period_days {
        notes.push(format!(
            "{} of {period_days} days have no usable readings (or no driver values); baseline and actual both cover the other {days_with_data}",
            period_days - days_with_data
        ));
    }
    notes.extend(exclusions(days, start, end).1);
    // Of the rounded baseline the period shows, so that its figures and the sums of several
    // periods (contract years) are recomputed from what is shown, exactly.
    let u =
        |c| savings_uncertainty(fit, c, adjusted_baseline_litres as f64, obs.len()).round() as i64;
    Ok(PeriodFigures {
        adjusted_baseline_litres,
        actual_litres: actual,
        non_routine_adjustment_litres: non_routine_litres,
        dispute_adjustment_litres: dispute_litres,
        savings_litres,
        savings_bp,
        uncertainty_68_litres: u(Confidence::P68),
        uncertainty_90_litres: u(Confidence::P90),
        days: period_days,
        days_with_data,
        observations: obs.len() as i64,
        notes,
    })
}

/// The reporting periods from `first_day` on, each `months` long, that end on or before
/// `last_day`.
pub fn reporting_periods(
    first_day: NaiveDate,
    months: u32,
    last_day: NaiveDate,
) -> Vec<(NaiveDate, NaiveDate)> {
    let mut out = Vec::new();
    let months = months.max(1);
    let mut k = 0u32;
    while let (Some(start), Some(next)) = (
        first_day.checked_add_months(chrono::Months::new(k * months)),
        first_day.checked_add_months(chrono::Months::new((k + 1) * months)),
    ) {
        let Some(end) = next.pred_opt() else { break };
        if end > last_day || out.len() > 1200 {
            break;
        }
        out.push((start, end));
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn a_line_fitted_by_hand() {
        // x = 1..5, y = 2, 4, 5, 4, 5. By hand: x̄ = 3, ȳ = 4, Sxx = 10, Sxy = 6,
        // b1 = 0.6, b0 = 4 − 0.6·3 = 2.2; ŷ = 2.8, 3.4, 4.0, 4.6, 5.2;
        // residuals ŷ−y = 0.8, −0.6, −1.0, 0.6, 0.2: SSE = 0.64+0.36+1+0.36+0.04 = 2.4;
        // SST = 4+0+1+0+1 = 6; R² = 0.6; RMSE = sqrt(2.4/3) = 0.894427; CV = 0.223607;
        // NMBE = 0 (OLS with an intercept); SE(b1) = sqrt(0.8/10) = 0.282843,
        // SE(b0) = sqrt(0.8·(1/5 + 9/10)) = 0.938083.
        let xs: Vec<Vec<f64>> = (1..=5).map(|x| vec![x as f64]).collect();
        let ys = [2.0, 4.0, 5.0, 4.0, 5.0];
        let f = fit(&["occupancy".into()], &ys, &xs, Granularity::Billing).expect("fits");
        assert!(close(f.coefficients[0], 2.2, 1e-9), "{:?}", f.coefficients);
        assert!(close(f.coefficients[1], 0.6, 1e-9));
        assert!(close(f.r_squared, 0.6, 1e-9));
        assert!(close(f.cv_rmse, 0.223_606_797_749_979, 1e-9));
        assert!(f.nmbe.abs() < 1e-12);
        assert!(close(f.standard_errors[1], 0.282_842_712_474_619, 1e-9));
        assert!(close(f.standard_errors[0], 0.938_083_151_964_686, 1e-9));
        assert_eq!(f.names, vec!["intercept", "occupancy"]);
        // CV 22% fails the monthly 15% threshold, passes the daily 30%.
        assert!(!f.g14_pass);
        let daily = fit(&["occupancy".into()], &ys, &xs, Granularity::Daily).expect("fits");
        assert!(daily.g14_pass);
    }

    #[test]
    fn two_drivers_recover_an_exact_plane() {
        // y = 100 + 3·a − 2·b exactly: the fit finds it, with no error.
        let xs: Vec<Vec<f64>> = [(1.0, 5.0), (2.0, 3.0), (4.0, 4.0), (7.0, 1.0), (3.0, 9.0)]
            .iter()
            .map(|(a, b)| vec![*a, *b])
            .collect();
        let ys: Vec<f64> = xs.iter().map(|x| 100.0 + 3.0 * x[0] - 2.0 * x[1]).collect();
        let f = fit(&["a".into(), "b".into()], &ys, &xs, Granularity::Daily).expect("fits");
        assert!(close(f.coefficients[0], 100.0, 1e-9));
        assert!(close(f.coefficients[1], 3.0, 1e-9));
        assert!(close(f.coefficients[2], -2.0, 1e-9));
        assert!(f.cv_rmse < 1e-9);
        assert!(close(f.r_squared, 1.0, 1e-9));
    }

    #[test]
    fn intercept_only_is_the_mean_and_its_spread() {
        // Spreadsheet-style: y = 90, 100, 110, 100. ȳ = 100; SSE = 100+0+100+0 = 200;
        // n − p = 3; CV = sqrt(200/3)/100 = 0.0816497.
        let ys = [90.0, 100.0, 110.0, 100.0];
        let f = fit(&[], &ys, &[], Granularity::Billing).expect("fits");
        assert!(close(f.coefficients[0], 100.0, 1e-12));
        assert!(close(f.cv_rmse, (200.0_f64 / 3.0).sqrt() / 100.0, 1e-12));
        assert_eq!(f.r_squared, 0.0);
        assert!(f.g14_pass);
        // SE of the mean = s/sqrt(n) = sqrt(200/3)/2.
        assert!(close(
            f.standard_errors[0],
            (200.0_f64 / 3.0).sqrt() / 2.0,
            1e-12
        ));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            fit(&[], &[5.0], &[], Granularity::Daily),
            Err(FitError::TooFewObservations { n: 1, p: 1 })
        );
        let xs = vec![vec![1.0], vec![1.0], vec![1.0]];
        assert!(matches!(
            fit(&["x".into()], &[1.0, 2.0, 3.0], &xs, Granularity::Daily),
            Err(FitError::Singular(_))
        ));
        assert!(matches!(
            fit(&[], &[0.0, 0.0, 0.0], &[], Granularity::Daily),
            Err(FitError::NoUse(_))
        ));
    }

    #[test]
    fn t_values_match_the_tables() {
        // Student's t tables: t(0.95; 10) = 1.8125, t(0.95; 30) = 1.6973, t(0.95; 5) = 2.0150;
        // large samples tend to the normal 1.6449 and 0.9945.
        // Exact now: to the tables' four decimals, from 1 degree of freedom (6.3138) up.
        assert!((t_value(Confidence::P90, 10.0) - 1.8125).abs() < 1e-4);
        assert!((t_value(Confidence::P90, 30.0) - 1.6973).abs() < 1e-4);
        assert!((t_value(Confidence::P90, 5.0) - 2.0150).abs() < 1e-4);
        assert!((t_value(Confidence::P90, 1.0) - 6.3138).abs() < 1e-4);
        assert!((t_value(Confidence::P90, 100_000.0) - 1.6449).abs() < 1e-4);
        assert!((t_value(Confidence::P68, 100_000.0) - 0.9945).abs() < 1e-4);
        assert!(t_value(Confidence::P68, 10.0) > t_value(Confidence::P68, 100.0));
    }

    #[test]
    fn uncertainty_follows_guideline_14_b14() {
        // n = 12 monthly observations, intercept only; CV(RMSE) from the data; m = 3 months.
        let ys = [
            100.0, 104.0, 96.0, 102.0, 98.0, 100.0, 101.0, 99.0, 103.0, 97.0, 100.0, 100.0,
        ];
        let f = fit(&[], &ys, &[], Granularity::Billing).expect("fits");
        // SSE = 0+16+16+4+4+0+1+1+9+9+0+0 = 60; CV = sqrt(60/11)/100.
        let cv = (60.0_f64 / 11.0).sqrt() / 100.0;
        assert!(close(f.cv_rmse, cv, 1e-12));
        let baseline = 9_000.0;
        let expected90 = 1.795_884_8 * 1.26 * cv * baseline * ((1.0 + 2.0 / 12.0) / 3.0_f64).sqrt();
        let got = savings_uncertainty(&f, Confidence::P90, baseline, 3);
        // t(0.95; 11) = 1.7959 from the tables.
        assert!(close(got, expected90, 1e-3), "{got} vs {expected90}");
        assert!(savings_uncertainty(&f, Confidence::P68, baseline, 3) < got);
        // These residuals alternate (ρ < 0): no correction, n′ = n.
        assert!(f.autocorrelation < 0.0);
        assert_eq!(f.effective_observations, 12.0);
    }

    /// Issue 12: the uncertainty left out Annex B's autocorrelation correction and so
    /// understated it on real daily water data (ρ of 0.3–0.7).
    #[test]
    fn autocorrelated_residuals_widen_the_uncertainty_as_annex_b_says() {
        // A slow wave around 100: residuals (ŷ − y with ŷ = 100) −2 −4 −3 −1 +1 +3 +4 +2, sums
        // Σ e² = 4+16+9+1+1+9+16+4 = 60, Σ eᵢeᵢ₋₁ = 8+12+3−1+3+12+8 = 45: ρ = 0.75.
        let ys = [102.0, 104.0, 103.0, 101.0, 99.0, 97.0, 96.0, 98.0];
        let f = fit(&[], &ys, &[], Granularity::Billing).expect("fits");
        assert!(close(f.autocorrelation, 0.75, 1e-12));
        // n′ = 8 · 0.25 / 1.75 = 8/7.
        assert!(close(f.effective_observations, 8.0 / 7.0, 1e-12));
        let cv = (60.0_f64 / 7.0).sqrt() / 100.0;
        let n_eff = 8.0 / 7.0;
        // t at n′ − p = 1/7 degree of freedom is taken at 1: t(0.95; 1) = 6.3138.
        let expected = t_value(Confidence::P90, 1.0)
            * 1.26
            * cv
            * 900.0
            * ((8.0 / n_eff) * (1.0 + 2.0 / n_eff) / 3.0_f64).sqrt();
        let got = savings_uncertainty(&f, Confidence::P90, 900.0, 3);
        assert!(close(got, expected, 1e-9), "{got} vs {expected}");
        // Against the same fit without the correction (n′ = n, t at n − p = 7 → 1.8946):
        let uncorrected = 1.8946 * 1.26 * cv * 900.0 * ((1.0 + 2.0 / 8.0) / 3.0_f64).sqrt();
        assert!(got > 5.0 * uncorrected, "{got} vs {uncorrected}");
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn series(from: &str, n: i64, litres: impl Fn(i64) -> i64) -> Vec<DayUse> {
        (0..n)
            .map(|i| DayUse {
                day: day(from) + chrono::Duration::days(i),
                litres: litres(i),
                readings: 1,
                estimated: 0,
                excluded: 0,
                billed_from: None,
            })
            .collect()
    }

    /// Issue 12: a ×20 spike in the baseline was flagged and still fitted (CV(RMSE) 131.6%);
    /// a register going back counted its day as 0 use. Both days are left out now: of the
    /// fit, of the savings, and counted among the missing days, with a note naming them.
    #[test]
    fn days_the_quality_rule_leaves_out_are_not_modelled_nor_saved() {
        use crate::metering::flag;
        // A steady 1,000 L a day through 2024, the 2024-03-10 reading a ×20 spike.
        let mut days = series("2024-01-01", 366, |_| 1000);
        days[69].litres = 20_000;
        days[69].excluded = flag::SPIKE;
        let fit = fit_baseline(
            &days,
            day("2024-01-01"),
            day("2024-12-31"),
            Granularity::Daily,
            &[],
        )
        .expect("fit");
        // Without the spike the mean is 1,000 exactly and nothing varies.
        assert_eq!(fit.observations, 365);
        assert!(close(fit.coefficients[0], 1000.0, 1e-9));
        assert!(fit.cv_rmse < 1e-12 && fit.g14_pass);
        let s = sufficiency(&days, day("2024-01-01"), day("2024-12-31"));
        assert_eq!((s.missing_days, s.excluded_days), (1, 1));
        assert!(
            s.notes
                .iter()
                .any(|n| n == "1 day left out by the quality rule (spike 1): 2024-03-10"),
            "{:?}",
            s.notes
        );
        // January 2025: 800 L a day, one day's register going back (stored as 0 use).
        let mut period = series("2025-01-01", 31, |_| 800);
        period[4].litres = 0;
        period[4].excluded = flag::REGISTER_DECREASED;
        let p = period_figures(
            &fit,
            &period,
            day("2025-01-01"),
            day("2025-01-31"),
            &[],
            0,
            0,
        )
        .expect("figures");
        // 30 days of (1,000 − 800) L: 6,000 L, not 6,800 L with the 0-use day as saved.
        assert_eq!(p.days_with_data, 30);
        assert_eq!(p.savings_litres, 6_000);
        assert!(
            p.notes
                .iter()
                .any(|n| n.starts_with("1 day left out by the quality rule (register decreased 1)")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn sufficiency_counts_missing_days() {
        let mut days = series("2024-01-01", 366, |_| 1000);
        let full = sufficiency(&days, day("2024-01-01"), day("2024-12-31"));
        assert!(full.ok, "{:?}", full.notes);
        assert_eq!(full.coverage_bp, 10_000);
        // Drop 40 days: 40 > 36.6 (10% of 366).
        days.retain(|d| chrono::Datelike::ordinal(&d.day) > 40);
        let gappy = sufficiency(&days, day("2024-01-01"), day("2024-12-31"));
        assert!(!gappy.ok);
        assert_eq!(gappy.missing_days, 40);
        assert_eq!(gappy.coverage_bp, 326 * 10_000 / 366);
        let short = sufficiency(&days, day("2024-06-01"), day("2024-12-31"));
        assert!(!short.ok);
        assert!(short.notes[0].contains("at least 365"));
    }

    #[test]
    fn a_period_spreadsheet_style() {
        // Baseline 2024: alternating 1000 and 1200 L/day (mean 1100; 366 days).
        let mut days = series("2024-01-01", 366, |i| if i % 2 == 0 { 1000 } else { 1200 });
        // Reporting: January 2025 at 880 L/day, with 2025-01-10 missing.
        days.extend(
            series("2025-01-01", 31, |_| 880)
                .into_iter()
                .filter(|d| d.day != day("2025-01-10")),
        );
        let f = fit_baseline(
            &days,
            day("2024-01-01"),
            day("2024-12-31"),
            Granularity::Daily,
            &[],
        )
        .expect("fits");
        assert!(close(f.mean_use, 1100.0, 1e-12));
        // SSE = 366·100², dof 365: CV = sqrt(366·10⁴/365)/1100.
        let cv = (366.0_f64 * 10_000.0 / 365.0).sqrt() / 1100.0;
        assert!(close(f.cv_rmse, cv, 1e-12));
        let p = period_figures(
            &f,
            &days,
            day("2025-01-01"),
            day("2025-01-31"),
            &[],
            3000,
            -500,
        )
        .expect("figures");
        // 30 days with data: baseline 30·1100 = 33,000; actual 30·880 = 26,400.
        assert_eq!(p.adjusted_baseline_litres, 33_000);
        assert_eq!(p.actual_litres, 26_400);
        assert_eq!(p.days_with_data, 30);
        assert_eq!(p.savings_litres, 33_000 + 3000 - 26_400 - 500);
        assert_eq!(
            p.savings_bp,
            (9_100.0_f64 * 10_000.0 / 33_000.0).round() as i64
        );
        // Alternating residuals: ρ < 0, no correction (n′ = n).
        let u90 = t_value(Confidence::P90, 365.0)
            * 1.26
            * cv
            * 33_000.0
            * ((1.0 + 2.0 / 366.0) / 30.0_f64).sqrt();
        assert_eq!(p.uncertainty_90_litres, u90.round() as i64);
        assert!(p.notes[0].contains("1 of 31 days"));
    }

    #[test]
    fn billing_observations_are_use_per_day_of_each_bill() {
        // Two bills, 2024-01-15 … 02-14 (31 days at 310 L) and 02-15 … 03-14 (29 at 290).
        let mut days = series("2024-01-15", 60, |i| if i < 31 { 310 } else { 290 });
        for (i, d) in days.iter_mut().enumerate() {
            d.billed_from = Some(if i < 31 {
                day("2024-01-15")
            } else {
                day("2024-02-15")
            });
        }
        let obs = observations(
            &days,
            day("2024-01-15"),
            day("2024-03-14"),
            Granularity::Billing,
            &[],
        );
        let got: Vec<(f64, i64)> = obs.iter().map(|o| (o.y, o.days)).collect();
        assert_eq!(got, vec![(310.0, 31), (290.0, 29)]);
    }

    #[test]
    fn billing_periods_weigh_by_their_days() {
        // Intercept only: the weighted mean, Σw·y/Σw = (31·310 + 29·290)/60, not 300.
        let ys = [310.0, 290.0, 300.0];
        let w = [31.0, 29.0, 30.0];
        let f = fit_weighted(&[], &ys, &[], Some(&w), Granularity::Billing).expect("fits");
        let mean = (31.0 * 310.0 + 29.0 * 290.0 + 30.0 * 300.0) / 90.0;
        assert!(
            close(f.coefficients[0], mean, 1e-9),
            "{}",
            f.coefficients[0]
        );
        // Weights scaled to a mean of 1 (31/30, 29/30, 1): SSE = Σw·e², CV = sqrt(SSE/2)/ȳ.
        let sse: f64 = ys
            .iter()
            .zip(w)
            .map(|(y, w)| w / 30.0 * (y - mean) * (y - mean))
            .sum();
        assert!(close(f.cv_rmse, (sse / 2.0).sqrt() / mean, 1e-12));
        // Unweighted, the plain mean.
        let plain = fit(&[], &ys, &[], Granularity::Billing).expect("fits");
        assert!(close(plain.coefficients[0], 300.0, 1e-9));
    }

    #[test]
    fn a_driver_adjusts_the_baseline_to_the_period() {
        // Baseline: use = 500 + 2·occupancy exactly, occupancy 100..=465 over 366 days.
        let start = day("2024-01-01");
        let occupancy: DriverDays = (0..400)
            .map(|i| (start + chrono::Duration::days(i), 100.0 + (i % 366) as f64))
            .collect();
        let mut days = series("2024-01-01", 366, |i| 500 + 2 * (100 + i));
        // Reporting: 10 days at occupancy 300, 1,000 L a day actual; one day lacks occupancy.
        let mut occupancy = occupancy;
        for i in 0..10 {
            occupancy.insert(day("2025-01-01") + chrono::Duration::days(i), 300.0);
        }
        occupancy.remove(&day("2025-01-05"));
        days.extend(series("2025-01-01", 10, |_| 1_000));
        let f = fit_baseline(
            &days,
            start,
            day("2024-12-31"),
            Granularity::Daily,
            &[("occupancy".to_string(), &occupancy)],
        )
        .expect("fits");
        assert!(close(f.coefficients[0], 500.0, 1e-9));
        assert!(close(f.coefficients[1], 2.0, 1e-9));
        let p = period_figures(
            &f,
            &days,
            day("2025-01-01"),
            day("2025-01-10"),
            &[&occupancy],
            0,
            0,
        )
        .expect("figures");
        // 9 days with occupancy: baseline 9 × (500 + 2·300) = 9,900; actual 9 × 1,000.
        assert_eq!(p.days_with_data, 9);
        assert_eq!(p.adjusted_baseline_litres, 9_900);
        assert_eq!(p.actual_litres, 9_000);
        assert_eq!(p.savings_litres, 900);
    }

    #[test]
    fn periods_are_calendar_steps() {
        let p = reporting_periods(day("2025-01-01"), 1, day("2025-03-30"));
        assert_eq!(
            p,
            vec![
                (day("2025-01-01"), day("2025-01-31")),
                (day("2025-02-01"), day("2025-02-28"))
            ]
        );
        let q = reporting_periods(day("2025-01-01"), 3, day("2025-12-31"));
        assert_eq!(q.len(), 4);
        assert_eq!(q[3], (day("2025-10-01"), day("2025-12-31")));
    }
}
