"""The ParameterSchedulers.jl schedules against their documented formulas (0-based t)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torchdeck.schedules._jl import (Exp, Inv, Poly, Sin, SinDecay2, SinExp, Step, Triangle, TriangleDecay2,
                                     TriangleExp)
from torchdeck.schedules._spec import schedule_from_spec

N = 200


# -- references: one plain loop each, from the documented formulas -----------------------------
def ref_step(start, decay, sizes, n):
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    out = []
    for t in range(n):
        k, boundary, i = 0, sizes[0], 0
        while t >= boundary:
            k += 1
            i = min(i + 1, len(sizes) - 1)
            boundary += sizes[i]
        out.append(start * decay ** k)
    return out


def ref_exp(start, decay, n):
    return [start * decay ** t for t in range(n)]


def ref_poly(start, degree, max_iter, n):
    return [start * (1 - t / max_iter) ** degree if t < max_iter else 0.0 for t in range(n)]


def ref_inv(start, decay, degree, n):
    return [start / (1 + t * decay) ** degree for t in range(n)]


def tri_piecewise(t, period):
    phase = t % period
    return 2 * phase / period if 2 * phase <= period else 2 * (period - phase) / period


def tri_doc(t, period):
    return (2 / math.pi) * abs(math.asin(math.sin(math.pi * t / period)))


def sin_doc(t, period):
    return abs(math.sin(math.pi * t / period))


def ref_cyclic(wave, l0, l1, period, n, amp=lambda t: 1.0):
    return [abs(l0 - l1) * wave(t, period) * amp(t) + min(l0, l1) for t in range(n)]


CASES = [
    (Step(1.0, 0.5, 7), ref_step(1.0, 0.5, 7, N)),
    (Step(0.3, 0.1, [3, 5]), ref_step(0.3, 0.1, [3, 5], N)),
    (Step(2.0, 0.9, [10, 1, 4]), ref_step(2.0, 0.9, [10, 1, 4], N)),
    (Exp(0.1, 0.97), ref_exp(0.1, 0.97, N)),
    (Poly(1e-2, 2, 150), ref_poly(1e-2, 2, 150, N)),
    (Poly(1.0, 0.9, 37), ref_poly(1.0, 0.9, 37, N)),
    (Inv(1e-2, 0.05, 1), ref_inv(1e-2, 0.05, 1, N)),
    (Inv(1.0, 0.3, 2.5), ref_inv(1.0, 0.3, 2.5, N)),
    (Triangle(1e-4, 1e-2, 20), ref_cyclic(tri_piecewise, 1e-4, 1e-2, 20, N)),
    (Triangle(0.9, 0.1, 7), ref_cyclic(tri_piecewise, 0.9, 0.1, 7, N)),
    (TriangleDecay2(0.0, 1.0, 10), ref_cyclic(tri_piecewise, 0.0, 1.0, 10, N, lambda t: 2.0 ** -(t // 10))),
    (TriangleExp(0.1, 1.0, 9, 0.99), ref_cyclic(tri_piecewise, 0.1, 1.0, 9, N, lambda t: 0.99 ** t)),
    (Sin(1e-4, 1e-2, 20), ref_cyclic(sin_doc, 1e-4, 1e-2, 20, N)),
    (Sin(0.0, 1.0, 7), ref_cyclic(sin_doc, 0.0, 1.0, 7, N)),
    (SinDecay2(0.2, 1.0, 12), ref_cyclic(sin_doc, 0.2, 1.0, 12, N, lambda t: 2.0 ** -(t // 12))),
    (SinExp(0.0, 0.5, 5, 0.95), ref_cyclic(sin_doc, 0.0, 0.5, 5, N, lambda t: 0.95 ** t)),
]
IDS = [str(s) for s, _ in CASES]


@pytest.mark.parametrize(("s", "ref"), CASES, ids=IDS)
def test_values_match_the_documented_formula(s, ref):
    # atol only absorbs the reference's sin(π·t/period) rounding (≈ t·1e-16) at its zeros, where
    # the schedule reduces the phase first and gives an exact 0.
    np.testing.assert_allclose(s.values(np.arange(N)), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(("s", "ref"), CASES, ids=IDS)
def test_values_equal_the_scalar_path(s, ref):
    ts = np.arange(N)
    vec = s.values(ts)
    assert vec.shape == ts.shape
    assert vec.tolist() == [s(int(t)) for t in ts] == s.values(ts.tolist()).tolist()


@pytest.mark.parametrize(("s", "ref"), CASES, ids=IDS)
def test_spec_round_trip(s, ref):
    assert schedule_from_spec(s.to_spec()) == s
    yaml = pytest.importorskip("yaml")
    assert schedule_from_spec(yaml.safe_load(yaml.safe_dump(s.to_spec()))) == s


@pytest.mark.parametrize("period", [1, 2, 7, 20, 1000])
def test_triangle_is_the_documented_asin_sin_formula(period):
    # (2/π)|asin(sin(x))| loses ~sqrt(eps) near the peaks, so this check is absolute and looser.
    s = Triangle(0.0, 1.0, period)
    ts = range(0, 3 * period + 5)
    np.testing.assert_allclose(s.values(list(ts)), [tri_doc(t, period) for t in ts], rtol=0, atol=1e-7)


def test_cyclic_convention_starts_at_the_minimum_peaks_at_half_period():
    for cls in (Triangle, Sin):
        s = cls(0.9, 0.1, 10)
        assert s(0) == s(10) == s(20) == pytest.approx(0.1, abs=0)
        assert s(5) == s(15) == pytest.approx(0.9, rel=1e-15)
    d = TriangleDecay2(0.0, 1.0, 10)
    assert d(5) == 1.0 and d(15) == 0.5 and d(25) == 0.25


def test_step_boundaries_and_lengths():
    assert [Step(1.0, 0.5, 3)(t) for t in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert [Step(1.0, 0.5, [2, 3])(t) for t in range(9)] == [1, 1, .5, .5, .5, .25, .25, .25, .125]
    assert Step(1.0, 0.5, [2, 3]).to_spec() == {"step": {"start": 1.0, "decay": 0.5, "step_sizes": [2, 3]}}
    assert Step(1.0, 0.5, [2, 3]).length is None and Exp(1.0, 0.5).length is None
    assert Triangle(0.0, 1.0, 3).length is None and Inv(1.0, 0.1).length is None


def test_poly_has_a_length_and_fits_an_open_one():
    p = Poly(1.0, 2, 10)
    assert p.length == 10 and p(10) == 0.0 and p(50) == 0.0 and p(0) == 1.0
    assert p.fit_to(99) is p
    open_ = Poly(1.0, 2)
    assert open_.length is None and open_.fit_to(30) == Poly(1.0, 2, 30)
    with pytest.raises(ValueError, match=r"^poly: max_iter is null; call fit_to"):
        open_(3)


@pytest.mark.parametrize(("make", "pattern"), [
    (lambda: Triangle(0.0, 1.0, 0), r"^triangle: period must be a positive integer, got 0$"),
    (lambda: Triangle(0.0, 1.0, -3), r"^triangle: period must be a positive integer, got -3$"),
    (lambda: Sin(0.0, 1.0, 2.5), r"^sin: period must be a positive integer, got 2\.5$"),
    (lambda: SinDecay2(0.0, 1.0, None), r"^sin_decay2: period must be a positive integer, got None$"),
    (lambda: TriangleDecay2(-1.0, 1.0, 4), r"^triangle_decay2: l0 must be >= 0\.0, got -1\.0$"),
    (lambda: Triangle(1.0, "x", 4), r"^triangle: l1 must be a number, got 'x'$"),
    (lambda: TriangleExp(0.0, 1.0, 4, 1.5), r"^triangle_exp: decay must be in \(0, 1\], got 1\.5$"),
    (lambda: SinExp(0.0, 1.0, 4, 0.0), r"^sin_exp: decay must be in \(0, 1\], got 0\.0$"),
    (lambda: Exp(-0.1, 0.9), r"^exp: start must be >= 0\.0, got -0\.1$"),
    (lambda: Exp(0.1, 0), r"^exp: decay must be in \(0, 1\], got 0$"),
    (lambda: Step(0.1, 2.0, 3), r"^step: decay must be in \(0, 1\], got 2\.0$"),
    (lambda: Step(0.1, 0.5, 0), r"^step: step_sizes must be a positive integer, got 0$"),
    (lambda: Step(0.1, 0.5, [3, -1]), r"^step: step_sizes\[1\] must be a positive integer, got -1$"),
    (lambda: Step(0.1, 0.5, []), r"^step: step_sizes must be a positive integer or a non-empty list of them, got \[\]$"),
    (lambda: Poly(1.0, 0, 10), r"^poly: degree must be > 0, got 0$"),
    (lambda: Poly(1.0, 2, 0), r"^poly: max_iter must be a positive integer or null .*, got 0$"),
    (lambda: Poly(-1.0, 2, 10), r"^poly: start must be >= 0\.0, got -1\.0$"),
    (lambda: Inv(1.0, -0.1), r"^inv: decay must be >= 0\.0, got -0\.1$"),
    (lambda: Inv(1.0, 0.1, float("nan")), r"^inv: degree must be a number, got nan$"),
    (lambda: Exp(1.0, 0.5).values([-1]), r"^schedule steps must be >= 0"),
])
def test_errors_name_the_schedule_argument_value_and_allowed(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_spec_errors_name_the_place():
    with pytest.raises(ValueError, match=r"^schedule\.triangle: period must be a positive integer, got 0$"):
        schedule_from_spec({"triangle": {"l0": 0.0, "l1": 1.0, "period": 0}})


rates = st.floats(0, 10, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(l0=rates, l1=rates, period=st.integers(1, 60), decay=st.floats(0.5, 1.0),
       kind=st.sampled_from([Triangle, TriangleDecay2, TriangleExp, Sin, SinDecay2, SinExp]))
def test_cyclic_values_stay_within_the_endpoints(l0, l1, period, decay, kind):
    s = kind(l0, l1, period, decay) if kind in (TriangleExp, SinExp) else kind(l0, l1, period)
    v = s.values(np.arange(4 * period + 3))
    lo, hi = min(l0, l1), max(l0, l1)
    slack = 1e-12 * max(hi, 1.0)
    assert np.all(v >= lo - slack) and np.all(v <= hi + slack)
