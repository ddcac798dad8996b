"""A step is accepted only if it is sound; rejected attempts are retried and counted."""

import math

import numpy as np
import pytest
from mpi4py import MPI

from tests.conftest import read
from wgf.cases.errors import SolverError
from wgf.run import EASY_ITERATIONS, GROW, run_flow
from wgf.solvers.acceptance import ALWAYS, ENERGY_RTOL, MASS_RTOL, check_step
from wgf.solvers.base import FlowSolver

SOUND = {"mass": 1.0, "energy": 2.0, "min_density": 0.0, "dissipation_gap": 0.0}


@pytest.mark.parametrize(
    "after, invariants, named",
    [
        ({**SOUND, "energy": math.nan}, ALWAYS, "non-finite energy"),
        ({**SOUND, "l1_error": math.inf}, ALWAYS, "non-finite l1_error"),
        ({**SOUND, "mass": 1.0 + 10 * MASS_RTOL}, ALWAYS, "mass changed"),
        ({**SOUND, "min_density": -1e-6}, ALWAYS | {"positivity"}, "negative density"),
        ({**SOUND, "energy": 2.0 + 1e-5}, ALWAYS | {"energy_decay"}, "energy rose"),
        ({**SOUND, "dissipation_gap": -1e-5}, ALWAYS | {"dissipation"}, "energy–dissipation"),
    ],
)
def test_each_check_names_what_failed(after, invariants, named):
    assert named in check_step(SOUND, after, invariants)


def test_sound_steps_and_unpromised_invariants_pass():
    rose = {**SOUND, "energy": 2.0 + 1e-5, "min_density": -1.0, "dissipation_gap": -1.0}
    assert check_step(SOUND, rose, ALWAYS) is None  # nothing promised beyond finite and mass
    within = {**SOUND, "energy": 2.0 * (1 + ENERGY_RTOL), "dissipation_gap": -ENERGY_RTOL}
    assert check_step(SOUND, within, ALWAYS | {"energy_decay", "dissipation"}) is None


class Relaxation(FlowSolver):
    """x' = -x for the energy F = x²; steps above ``tau_bad`` overshoot and raise F.

    ``step`` returns 2 iterations (an "easy" step) unless told otherwise, so that
    adaptive τ grows.
    """

    name = "relaxation"
    adaptive_tau = True

    def __init__(self, case, comm, tau_bad=math.inf, iterations=2, fail_after=None):
        super().__init__(case, comm, {})
        self.x, self.tau_bad, self.its, self.fail_after = 1.0, tau_bad, iterations, fail_after
        self.steps = 0

    def step(self, tau):
        self.steps += 1
        if self.fail_after is not None and self.steps > self.fail_after:
            raise SolverError("diverged", iterations=7)
        # Explicit Euler x ← (1 − τ)x, except that a step above tau_bad overshoots.
        self.x *= 1.0 - tau if tau <= self.tau_bad else -2.0
        return self.its

    def diagnostics(self, t):
        return {"energy": self.x**2, "mass": 1.0}

    def invariants(self):
        return frozenset({"energy_decay"})

    def bounding_box(self):
        return np.array([-1.0]), np.array([1.0])

    def prepare_sampling(self, points):
        self.n_samples = len(points)

    def sample(self):
        return np.full(self.n_samples, self.x)

    def state(self):
        return {"x": np.array([self.x])}

    def set_state(self, state):
        self.x = float(np.asarray(state["x"]).ravel()[0])


def _case(**time):
    from wgf.cases import load_case
    from wgf.solvers import solver_tables

    keys = {"time.t_end": 0.2, "time.tau": 0.02, "output.snapshots": 3}
    keys.update({f"time.{k}": v for k, v in time.items()})
    return load_case("heat_1d", keys, solver_tables())


def test_a_rejected_step_is_retried_in_halves_and_counted(tmp_path):
    case = _case()
    # τ = 0.02 raises F, τ/2 = 0.01 does not: every level takes two half steps.
    summary = run_flow(Relaxation(case, MPI.COMM_SELF, tau_bad=0.015), case, tmp_path)
    d = read(summary.path)
    assert summary.steps == 10 and summary.retries == 10
    np.testing.assert_array_equal(d["diagnostics/retries"][1:], 1.0)
    np.testing.assert_array_equal(d["diagnostics/iterations"][1:], 4.0)  # two accepted halves
    np.testing.assert_array_equal(d["diagnostics/iterations_total"][1:], 6.0)  # + the rejected
    np.testing.assert_allclose(d["diagnostics/tau"][1:], 0.02)
    assert np.all(np.diff(d["diagnostics/energy"]) < 0.0)
    np.testing.assert_allclose(d["diagnostics/energy"][-1], (1 - 0.01) ** 40, rtol=1e-12)


def test_a_step_unsound_at_the_smallest_tau_stops_the_run_and_keeps_the_steps(tmp_path):
    case = _case()
    solver = Relaxation(case, MPI.COMM_SELF, tau_bad=0.001)  # below τ/4: never sound
    with pytest.raises(SolverError, match=r"step 1 .*the energy rose.*--resume") as err:
        run_flow(solver, case, tmp_path)
    assert err.value.iterations == 3 * 2  # τ, τ/2, τ/4, each rejected after 2 iterations
    d = read(tmp_path / "heat_1d_relaxation.h5")
    assert d["time"].shape == (1,) and solver.x == 1.0  # the initial level, state restored


def test_a_failure_a_smaller_tau_cannot_cure_is_not_retried(tmp_path):
    class Hopeless(Relaxation):
        def step(self, tau):
            raise SolverError("the weight underflows", iterations=1, tau_helps=False)

    case = _case()
    with pytest.raises(SolverError, match="cannot help") as err:
        run_flow(Hopeless(case, MPI.COMM_SELF), case, tmp_path)
    assert err.value.iterations == 1 and "smaller τ>" not in str(err.value)
    assert "--resume" not in str(err.value)  # resuming would meet the same failure


def test_adaptive_tau_grows_after_easy_steps_and_lands_on_snapshots(tmp_path):
    case = _case(adaptive=True, tau_max=0.08)
    summary = run_flow(Relaxation(case, MPI.COMM_SELF, iterations=EASY_ITERATIONS), case, tmp_path)
    d = read(summary.path)
    tau, t = d["diagnostics/tau"][1:], d["time"]
    assert summary.steps < 10 and summary.retries == 0
    assert tau[1] == pytest.approx(GROW * tau[0]) and tau.max() <= 0.08 + 1e-15
    for snap in (0.1, 0.2):  # snapshots = 3: t = 0, 0.1, 0.2 hit exactly
        assert np.min(np.abs(t - snap)) < 1e-15
    np.testing.assert_allclose(np.cumsum(tau), t[1:], rtol=0, atol=1e-14)


def test_adaptive_tau_halves_after_a_rejection_and_stays_above_tau_min(tmp_path):
    case = _case(adaptive=True, tau_max=0.08, tau_min=0.005)
    summary = run_flow(Relaxation(case, MPI.COMM_SELF, tau_bad=0.03), case, tmp_path)
    d = read(summary.path)
    assert summary.retries >= 1 and d["diagnostics/tau"][1:].max() <= 0.03
    assert np.all(np.diff(d["diagnostics/energy"]) < 0.0)
    assert d["time"][-1] == pytest.approx(0.2, abs=1e-15)


def test_the_summary_table_shows_total_iterations_and_rejections(tmp_path, capsys):
    from wgf.summary import print_summary

    case = _case()
    summary = run_flow(Relaxation(case, MPI.COMM_SELF, tau_bad=0.015), case, tmp_path)
    assert "rejected (the energy rose" in capsys.readouterr().out  # the retry note
    print_summary(case, [summary])
    out = capsys.readouterr().out
    head, row = out.splitlines()[2], out.splitlines()[4]
    assert "its total" in head and "rejected" in head
    assert row.split()[-4:-2] == ["60", "10"]  # its total, rejected (then wall, status)
