"""Pure statistics for the experiments: quantiles, summaries, the USL fit, the retry expectations.

Standard library only (numpy is not needed for a few thousand numbers), so the summaries exist even
where matplotlib and numpy are not installed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); `values` must be sorted and non-empty."""
    position = (len(values) - 1) * q
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def summary(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """n, p50/p95/p99, max and mean, in milliseconds."""
    values = sorted(seconds)
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    out: dict[str, float | int | None] = {"n": len(values)}
    for name, q in QUANTILES:
        out[name] = round(quantile(values, q) * 1000, 3)
    out["max"] = round(values[-1] * 1000, 3)
    out["mean"] = round(sum(values) / len(values) * 1000, 3)
    return out


def bootstrap_ci(seconds: Sequence[float], q: float, rng: random.Random, rounds: int = 400,
                 level: float = 0.95) -> tuple[float, float] | None:
    """A percentile-bootstrap confidence interval of quantile `q`, in milliseconds (None for under 10 values)."""
    if len(seconds) < 10:
        return None
    n = len(seconds)
    estimates = sorted(quantile(sorted(rng.choices(seconds, k=n)), q) for _ in range(rounds))
    tail = (1 - level) / 2
    return round(quantile(estimates, tail) * 1000, 3), round(quantile(estimates, 1 - tail) * 1000, 3)


def ecdf(seconds: Sequence[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF: sorted values and the fraction at or below each."""
    values = sorted(seconds)
    n = len(values)
    return values, [(i + 1) / n for i in range(n)]


def usl(workers: Sequence[int], throughput: Sequence[float]) -> dict[str, float | None] | None:
    """Fit the Universal Scalability Law X(N) = λN / (1 + σ(N-1) + κN(N-1)) with λ = X(1).

    With C(N) = X(N)/λ the law is linear in σ and κ: N/C - 1 = σ(N-1) + κN(N-1), so two normal equations
    solve it (least squares, no intercept). A negative coefficient is set to 0 and the other refitted:
    both are physical only at or above 0. Needs X(1) and at least two other points."""
    points = dict(zip(workers, throughput, strict=True))
    lam = points.get(1)
    if not lam or lam <= 0 or sum(1 for n in points if n > 1) < 2:
        return None
    rows = [(n - 1.0, n * (n - 1.0), n / (x / lam) - 1.0) for n, x in points.items() if n > 1 and x > 0]
    sigma, kappa = _two_parameter(rows)
    if sigma < 0 or kappa < 0:
        sigma, kappa = (0.0, _one_parameter([(b, y) for _, b, y in rows])) if sigma < 0 else (
            _one_parameter([(a, y) for a, _, y in rows]), 0.0)
        sigma, kappa = max(sigma, 0.0), max(kappa, 0.0)
    peak = math.sqrt((1 - sigma) / kappa) if kappa > 0 and sigma < 1 else None
    return {"lambda": round(lam, 3), "sigma": round(sigma, 5), "kappa": round(kappa, 6),
            "peak_workers": None if peak is None else round(peak, 1)}


def usl_throughput(fit: dict[str, float | None], n: float) -> float:
    lam, sigma, kappa = fit["lambda"] or 0.0, fit["sigma"] or 0.0, fit["kappa"] or 0.0
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def _two_parameter(rows: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    saa = sum(a * a for a, _, _ in rows)
    sab = sum(a * b for a, b, _ in rows)
    sbb = sum(b * b for _, b, _ in rows)
    say = sum(a * y for a, _, y in rows)
    sby = sum(b * y for _, b, y in rows)
    det = saa * sbb - sab * sab
    if abs(det) < 1e-12:
        return _one_parameter([(a, y) for a, _, y in rows]), 0.0
    return (say * sbb - sby * sab) / det, (saa * sby - sab * say) / det


def _one_parameter(rows: Sequence[tuple[float, float]]) -> float:
    denominator = sum(a * a for a, _ in rows)
    return sum(a * y for a, y in rows) / denominator if denominator else 0.0


def attempts_expected(p: float, max_attempts: int) -> dict[int, float]:
    """P(a task takes k attempts) when each attempt fails independently with probability p and the task is
    dead-lettered after max_attempts: a geometric distribution truncated at max_attempts (the last cell
    holds every task that failed the first max_attempts - 1 times)."""
    out = {k: p ** (k - 1) * (1 - p) for k in range(1, max_attempts)}
    out[max_attempts] = p ** (max_attempts - 1)
    return out


def total_variation(observed: dict[int, int], expected: dict[int, float]) -> float:
    """Half the L1 distance between the observed frequencies and the expected probabilities (0: identical)."""
    n = sum(observed.values())
    if n == 0:
        return 1.0
    keys = set(observed) | set(expected)
    return round(sum(abs(observed.get(k, 0) / n - expected.get(k, 0.0)) for k in keys) / 2, 4)


def spread(values: Sequence[float | None]) -> dict[str, float] | None:
    """min, median and max of one figure over repeats."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    return {"min": known[0], "median": round(quantile(known, 0.5), 3), "max": known[-1]}
