"""Geodesic W2 on the circle (postprocess/circle.py): LP references and closed forms."""

import math

import numpy as np
import ot
import pytest

from tests.conftest import run_case
from wgf.postprocess.circle import CircleMeasure, geodesic_cost, optimal_shift, w2_circle
from wgf.postprocess.compare import compare, load_runs
from wgf.postprocess.w2 import w2

TWO_PI = 2.0 * math.pi


def _atoms(theta, weights=None):
    weights = np.ones(len(theta)) if weights is None else weights
    return CircleMeasure.from_points(np.asarray(theta, dtype=float), weights)


def _lp(theta, a, phi, b):
    """W2 by POT's exact LP on the full matrix of squared arc lengths."""
    return math.sqrt(ot.emd2(a / a.sum(), b / b.sum(), geodesic_cost(theta, phi)))


@pytest.mark.parametrize("layout", ["uniform", "clustered_across_zero", "equal_weights"])
def test_atoms_match_the_lp_with_the_geodesic_cost(layout):
    """Random small sets, against ot.emd2 with d(θ, φ)² = min(|θ - φ|, 2π - |θ - φ|)²."""
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(60):
        n, m = rng.integers(1, 13, size=2)
        if layout == "equal_weights":
            m = n
        theta, phi = rng.uniform(0.0, TWO_PI, n), rng.uniform(0.0, TWO_PI, m)
        if layout == "clustered_across_zero":  # mass on both sides of the cut at 0
            theta = np.mod(rng.normal(0.0, 0.6, n), TWO_PI)
            phi = np.mod(rng.normal(3.0, 1.5, m), TWO_PI)
        a, b = rng.uniform(0.1, 1.0, n), rng.uniform(0.1, 1.0, m)
        if layout == "equal_weights":
            a, b = np.ones(n), np.ones(m)
        value = w2_circle(_atoms(theta, a), _atoms(phi, b))
        worst = max(worst, abs(value - _lp(theta, a, phi, b)))
    assert worst < 1e-10


@pytest.mark.parametrize("rotation", [0.003, -0.02, 0.06])
def test_equally_spaced_atoms_rotated_by_theta_are_theta_apart(rotation):
    """N equal atoms 2π/N apart, rotated by |θ| < π/N: each atom moves by θ, W2 = |θ|."""
    n = 50
    theta = TWO_PI * np.arange(n) / n + 0.4
    assert w2_circle(_atoms(theta), _atoms(theta + rotation)) == pytest.approx(
        abs(rotation), abs=1e-13
    )


@pytest.mark.parametrize(
    ("x", "y", "distance"),
    [(0.5, 2.0, 1.5), (0.1, TWO_PI - 0.2, 0.3), (1.0, 1.0 + math.pi, math.pi), (6.0, 0.5, 0.78)],
)
def test_dirac_masses_are_their_arc_distance_apart(x, y, distance):
    """W2(δ_x, δ_y) = d(x, y), the shorter arc, also across the cut at 0."""
    expected = min(abs(x - y), TWO_PI - abs(x - y)) if distance == 0.78 else distance
    assert w2_circle(_atoms([x]), _atoms([y])) == pytest.approx(expected, abs=1e-13)
    # as points in ℝ², through the public entry point
    px, py = np.array([[math.cos(x), math.sin(x)]]), np.array([[math.cos(y), math.sin(y)]])
    value, method = w2(px, np.ones(1), py, np.ones(1), shape="circle")
    assert method == "circle"
    assert value == pytest.approx(expected, abs=1e-13)


def test_atoms_against_a_sampled_density_closed_forms():
    """Densities as uniform arcs (cells of a sample grid), against closed forms.

    * δ_a against the uniform density: W2² = (1/2π)∫_{-π}^{π} s² ds = π²/3;
    * the n cell midpoints (equal atoms) against the uniform density on the n cells: each
      atom spreads over its own cell of half-length h = π/n, W2² = h²/3;
    * the uniform density on an arc of length L against the same arc rotated by s: W2 = |s|.
    """
    n = 200
    centres = TWO_PI * (np.arange(n) + 0.5) / n
    uniform = CircleMeasure.from_points(centres, np.ones(n), arc=TWO_PI / n)
    assert w2_circle(_atoms([1.0]), uniform) == pytest.approx(math.pi / math.sqrt(3), rel=1e-12)
    assert w2_circle(_atoms(centres), uniform) == pytest.approx(
        math.pi / n / math.sqrt(3), rel=1e-10
    )
    cells, length, shift = 30, 1.2, 0.05
    mids = 5.8 + length * (np.arange(cells) + 0.5) / cells  # the arc crosses the angle 0
    arc = CircleMeasure.from_points(mids, np.ones(cells), arc=length / cells)
    moved = CircleMeasure.from_points(mids + shift, np.ones(cells), arc=length / cells)
    assert w2_circle(arc, moved) == pytest.approx(shift, rel=1e-10)


def test_particles_against_a_density_converge_to_the_lp_on_refined_cells():
    """A non-uniform density on 40 cells against 15 weighted particles.

    Splitting each cell into R atoms at its sub-cell midpoints moves the density by at
    most W2 ≤ cell/(2√3 R) (each sub-cell to its midpoint), so the LP value on the
    refined atoms is within that of the exact arc value.
    """
    rng = np.random.default_rng(11)
    cells, refine = 40, 50
    h = TWO_PI / cells
    mids = h * (np.arange(cells) + 0.5)
    rho = 1.0 + 0.8 * np.cos(2.0 * mids - 1.0)
    theta, a = rng.uniform(0.0, TWO_PI, 15), rng.uniform(0.2, 1.0, 15)
    exact = w2_circle(_atoms(theta, a), CircleMeasure.from_points(mids, rho, arc=h))
    sub = (mids[:, None] + h * ((np.arange(refine) + 0.5) / refine - 0.5)[None, :]).ravel()
    lp = _lp(theta, a, sub, np.repeat(rho / refine, refine))
    bound = h / (2.0 * math.sqrt(3.0) * refine)
    assert abs(exact - lp) <= bound
    assert exact > 10.0 * bound  # a comparison that means something


def test_the_shift_minimises_the_lifted_cost():
    """C(α) at the returned α is below C on a fine grid of shifts (convex in α)."""
    from wgf.postprocess.circle import shifted_cost

    rng = np.random.default_rng(5)
    mu = _atoms(rng.uniform(0, TWO_PI, 9), rng.uniform(0.1, 1, 9))
    cells = TWO_PI * (np.arange(20) + 0.5) / 20
    nu = CircleMeasure.from_points(cells, rng.uniform(0.0, 1.0, 20), arc=TWO_PI / 20)
    alpha, best = optimal_shift(mu, nu)
    grid = np.array([shifted_cost(mu, nu, s) for s in np.linspace(alpha - 1.5, alpha + 1.5, 601)])
    assert best <= grid.min() + 1e-13
    assert np.all(np.diff(np.diff(grid)) >= -1e-9)  # convex


def test_overlapping_arcs_are_refused():
    """Overlapping cells would give a non-monotone 'quantile function': refused."""
    with pytest.raises(ValueError, match="overlap"):
        CircleMeasure.from_points(np.array([0.2, 0.3]), np.ones(2), arc=0.3)


def test_compare_uses_the_geodesic_w2_on_the_circle(tmp_path):
    """`wgf compare` of two token runs on S¹ reports the exact circle W2 of the particles."""
    sets = ["time.t_end=0.2", "solver.blob.particles=60", "solver.langevin.particles=60"]
    for solver in ("blob", "langevin"):
        run_case("tokens_circle_usa", sets, tmp_path, solver=solver)
    runs = load_runs(sorted(tmp_path.glob("tokens_circle_usa_*.h5")))
    rows = [r for r in compare(runs).rows if r["against"] != "exact"]
    assert rows and all(r["w2_method"] == "circle" for r in rows)
    last = rows[-1]
    first, second = runs
    expected = w2_circle(
        CircleMeasure.from_points(first.positions[-1], first.weights),
        CircleMeasure.from_points(second.positions[-1], second.weights),
    )
    assert last["w2"] == pytest.approx(expected, rel=1e-12)
    assert last["w2"] > 0.0
    # The sample cells are arcs of 2π/n (not the spacing of x-coordinates): unit mass.
    for run in runs:
        assert run.sample_cell_areas() == pytest.approx(np.full(200, TWO_PI / 200))
        mass = run.snapshot_density @ run.sample_cell_areas()
        np.testing.assert_allclose(mass, 1.0, atol=1e-4)


def test_sphere_sample_cells_are_the_latitude_bands(tmp_path):
    """On S² the sample-cell areas are the grid's bands (they sum to 4π), not one volume."""
    sets = ["time.t_end=0.5", "solver.blob.particles=100"]
    run = load_runs([run_case("tokens_sphere_sa", sets, tmp_path, solver="blob").path])[0]
    areas = run.sample_cell_areas()
    assert areas.sum() == pytest.approx(4.0 * math.pi, rel=1e-12)
    assert areas.max() / areas.min() > 10.0
