#!/usr/bin/env python3
"""An independent measurement of savings, for the tests: ordinary least squares by statsmodels,
the ASHRAE Guideline 14 statistics, and the savings' uncertainty of Annex B (B-14 with the
autocorrelation correction), from the raw daily data, nothing of cwsm's code.

Reads JSON on stdin:
  {"drivers": ["students", ...],
   "baseline": [{"litres": 123, "x": [..]}, ...],      # in time order
   "periods": [[{"litres": .., "x": [..]}, ...], ...]}  # each reporting period's observations
An observation may carry "days" (a billing period's): it is then its use per day, weighted by
its days (weighted least squares, CalTRACK's billing method), and the drivers are its days'
means. Writes JSON on stdout: the fit and, per period, its figures.
"""
import json
import sys

import numpy as np
import statsmodels.api as sm
from scipy import stats
from statsmodels.tsa.stattools import acf


def main():
    data = json.load(sys.stdin)
    baseline = data["baseline"]
    days = np.array([d.get("days", 1) for d in baseline], dtype=float)
    y = np.array([d["litres"] for d in baseline], dtype=float) / days
    x = np.array([d["x"] for d in baseline], dtype=float).reshape(len(y), -1)
    X = sm.add_constant(x, has_constant="add")
    weighted = any("days" in d for d in baseline)
    if weighted:
        # Weights scaled to a mean of 1: the statistics stay per observation.
        w = days / days.mean()
        model = sm.WLS(y, X, weights=w).fit()
    else:
        w = np.ones(len(y))
        model = sm.OLS(y, X).fit()
    n, p = len(y), model.df_model + 1
    mean = float((w * y).sum() / w.sum())
    resid = model.resid
    # Guideline 14: CV(RMSE) and NMBE over n − p (weighted sums of squares); ŷ − y for the bias.
    cv = np.sqrt(model.ssr / (n - p)) / mean
    nmbe = -(w * resid).sum() / ((n - p) * mean)
    # Lag-1 autocorrelation of the residuals, n′ = n(1 − ρ)/(1 + ρ) for ρ ≥ 0: statsmodels'
    # acf for OLS (whose residuals average 0); Σeᵢeᵢ₋₁/Σeᵢ² as Annex B writes it for WLS.
    if weighted:
        rho = float((resid[1:] * resid[:-1]).sum() / (resid * resid).sum())
    else:
        rho = float(acf(resid, nlags=1, fft=False)[1])
    r = min(max(rho, 0.0), 0.99)
    n_eff = n * (1 - r) / (1 + r)
    periods = []
    for obs in data["periods"]:
        py = np.array([d["litres"] for d in obs], dtype=float)
        pdays = np.array([d.get("days", 1) for d in obs], dtype=float)
        px = np.array([d["x"] for d in obs], dtype=float).reshape(len(py), -1)
        per_day = model.predict(sm.add_constant(px, has_constant="add"))
        e_base = round(float((per_day * pdays).sum()))
        m = len(py)
        out = {
            "adjusted_baseline_litres": e_base,
            "actual_litres": int(py.sum()),
            "savings_litres": e_base - int(py.sum()),
            "observations": m,
        }
        for level, one_sided in (("68", 0.84), ("90", 0.95)):
            t = stats.t.ppf(one_sided, max(n_eff - p, 1.0))
            u = t * 1.26 * cv * abs(e_base) * np.sqrt((n / n_eff) * (1 + 2 / n_eff) / m)
            out["uncertainty_" + level + "_litres"] = round(float(u))
        periods.append(out)
    json.dump(
        {
            "coefficients": [float(v) for v in model.params],
            "standard_errors": [float(v) for v in model.bse],
            "observations": n,
            "r_squared": float(model.rsquared),
            "cv_rmse": float(cv),
            "nmbe": float(nmbe),
            "autocorrelation": rho,
            "effective_observations": n_eff,
            "periods": periods,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
