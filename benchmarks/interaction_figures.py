"""The issue-11 figures of interaction runs, read from their results files.

For each results file given, by its case:

* ``keller_segel_2d``: the slope of ∫|x|²ρ against t (least squares over every level)
  against the exact 4DM − χM²/(2π), as a relative error;
* ``keller_segel_2d_supercritical``: the last completed time, and the bound
  T* = 2πM₂(0)/(M(χM − 8π)), M₂(0) that of the initial density (the blow-up line of
  the run names the time of the first unresolved level, one step later);
* ``swarm_2d``: at the final time, the second moment about the centre of mass against ½
  and the support radius against 1 (particles: the largest distance of a particle to the
  centre of mass; FE: the largest distance of a vertex value above 10⁻³ of the peak, from
  the snapshot on the sample grid).

Run:  .venv/bin/python benchmarks/interaction_figures.py OUT/keller_segel_2d_blob.h5 ...
"""

from __future__ import annotations

import math
import sys

import numpy as np

from wgf.postprocess.results import Results, is_results_file, read_results


def keller_segel(run: Results) -> str:
    """The measured slope of M₂ against the exact one."""
    energy, mass = run.config["energy"], run.config["initial"]["mass"]
    exact = 4 * energy["diffusivity"] * mass - energy["interaction"]["strength"] * mass**2 / (
        2 * math.pi
    )
    slope = float(np.polyfit(run.time, run.diagnostics["second_moment"], 1)[0])
    error = abs(slope - exact) / abs(exact)
    return f"slope {slope:.5f} against {exact:.5f}: relative error {error:.2%}"


def supercritical(run: Results) -> str:
    """The last completed time against the blow-up bound T*."""
    chi, mass = run.config["energy"]["interaction"]["strength"], run.config["initial"]["mass"]
    law = run.case().second_moment_law()
    assert law is not None
    t_star = 2 * math.pi * law(0.0) / (mass * (chi * mass - 8 * math.pi))
    peak, limit = run.diagnostics["peak_density"][-1], run.diagnostics["resolved_density"][-1]
    return (
        f"last completed t = {run.time[-1]:.4g} (next level unresolved), T* = {t_star:.4g}; "
        f"peak {peak:.4g} of the resolved {limit:.4g} there"
    )


def swarm(run: Results) -> str:
    """Second moment about the centre of mass and the support radius at the final time."""
    if run.positions is not None:
        x, w = run.positions[-1], run.weights
    else:
        rho = run.snapshot_density[-1]
        x, w = run.sample_points, rho * run.sample_cell_volume()
        x, w = x[rho > 1e-3 * rho.max()], w[rho > 1e-3 * rho.max()]
    centre = w @ x / w.sum()
    dist = np.linalg.norm(x - centre, axis=1)
    m2 = float(w @ dist**2 / w.sum())
    radius = float(dist.max())
    return (
        f"t = {run.time[-1]:.4g}: second moment {m2:.4f} (exact ½), radius {radius:.4f} (exact 1)"
    )


def main(paths: list[str]) -> None:
    """Print one line per results file."""
    figures = {
        "keller_segel_2d": keller_segel,
        "keller_segel_2d_supercritical": supercritical,
        "swarm_2d": swarm,
    }
    for path in filter(is_results_file, paths):  # a glob also matches the *_fields.h5
        run = read_results(path)
        figure = figures.get(run.case_name)
        text = figure(run) if figure else "no figure for this case"
        print(f"{run.case_name} {run.solver}: {text}")


if __name__ == "__main__":
    main(sys.argv[1:])
