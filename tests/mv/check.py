#!/usr/bin/env python3
"""An independent measurement of savings, for the tests: ordinary least squares by statsmodels,
the ASHRAE Guideline 14 statistics, and the savings' uncertainty of Annex B (B-14 with the
autocorrelation correction), from the raw daily data, nothing of cwsm's code.

Reads JSON on stdin:
  {"drivers": ["students", ...],
   "baseline": [{"litres": 123, "x": [..]}, ...],      # in time order
   "periods": [[{"litres": .., "x": [..]}, ...], ...]}  # each reporting period's days
Writes JSON on stdout: the fit and, per period, its figures.
"""
import json
import sys

import numpy as np
import statsmodels.api as sm
from scipy import stats
from statsmodels.tsa.stattools import acf


def main():
    data = json.load(sys.stdin)
    y = np.array([d["litres"] for d in data["baseline"]], dtype=float)
    x = np.array([d["x"] for d in data["baseline"]], dtype=float).reshape(len(y), -1)
    model = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    n, p = len(y), model.df_model + 1
    mean = y.mean()
    resid = model.resid
    # Guideline 14: CV(RMSE) and NMBE over n − p; ŷ − y for the bias.
    cv = np.sqrt(model.ssr / (n - p)) / mean
    nmbe = -resid.sum() / ((n - p) * mean)
    # Lag-1 autocorrelation of the residuals (statsmodels' acf), n′ = n(1 − ρ)/(1 + ρ) for ρ ≥ 0.
    rho = float(acf(resid, nlags=1, fft=False)[1])
    r = min(max(rho, 0.0), 0.99)
    n_eff = n * (1 - r) / (1 + r)
    periods = []
    for days in data["periods"]:
        py = np.array([d["litres"] for d in days], dtype=float)
        px = np.array([d["x"] for d in days], dtype=float).reshape(len(py), -1)
        baseline = float(model.predict(sm.add_constant(px, has_constant="add")).sum())
        e_base = round(baseline)
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
