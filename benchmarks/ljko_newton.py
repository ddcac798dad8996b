"""fem-jko's Newton against fem-implicit on the LJKO authors' porous-medium problem.

    .venv/bin/python benchmarks/ljko_newton.py [--vertices 7000] [--cells 80] [--monitor]

porous_medium_2d mapped to [0, 1]²: Barenblatt (m = 2) of mass 1/16 centred at
(½, ½), t0 = 6.25e-4, T = 6.25e-3, τ = 3.125e-4 (20 steps), the setting of the
Cancès–Gallouët–Todeschi LJKO benchmark.  Two meshes:

* an unstructured triangulation of about ``--vertices`` vertices by gmsh (Frontal-Delaunay,
  a uniform size; its largest angle is printed, the scheme clips the negative
  transmissibilities of obtuse cells);
* the ``--cells``² box mesh (right triangles).

Each solver is stepped here (not through the driver) so that every attempt is counted:
a step that raises :class:`SolverError` adds the iterations it spent
(``SolverError.iterations``) and is retried as two steps of τ/2, as the driver does.
Printed per solver and mesh: Newton iterations per step (mean and max over attempts,
failed ones included), the retries, the CPU time (``time.process_time``, set-up
excluded) and the L1 error at T; then fem-jko's iterations of every attempt in order, and
the CPU ratio fem-jko / fem-implicit of the same run.  Goals (issue 12): mean ≤ 4,
max ≤ 12, no retries, ratio ≤ 2, L1 ≤ 0.013 on 80².
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from mpi4py import MPI

from wgf import api
from wgf.cases.errors import SolverError
from wgf.run import build_solver

T0, T_END, TAU, MASS = 6.25e-4, 6.25e-3, 3.125e-4, 1.0 / 16.0
#: Retries of a failed step before the benchmark gives up (as the driver: τ/2, τ/4, τ/8).
HALVINGS = 3


def unit_square_mesh(path: Path, vertices: int) -> tuple[int, float]:
    """Write an unstructured triangulation of [0, 1]² by gmsh: its vertices, largest angle.

    Mesh size h from the vertex density of equilateral triangles, 2/(√3 h²) per unit area.
    """
    import gmsh
    import meshio

    h = math.sqrt(2.0 / (math.sqrt(3.0) * vertices))
    gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    try:
        gmsh.model.add("square")
        square = gmsh.model.occ.addRectangle(0.0, 0.0, 0.0, 1.0, 1.0)
        gmsh.model.occ.synchronize()
        gmsh.model.addPhysicalGroup(2, [square], tag=1)
        gmsh.option.setNumber("Mesh.Algorithm", 6)  # Frontal-Delaunay: near-equilateral
        gmsh.option.setNumber("Mesh.CharacteristicLengthMin", h)
        gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
        gmsh.model.mesh.generate(2)
        gmsh.model.mesh.optimize("Laplace2D")
        _, xyz, _ = gmsh.model.mesh.getNodes()
        types, _, nodes = gmsh.model.mesh.getElements(2)
        tags, _, _ = gmsh.model.mesh.getNodes()
    finally:
        gmsh.finalize()
    points = np.asarray(xyz).reshape(-1, 3)[:, :2]
    index = np.empty(int(np.max(tags)) + 1, dtype=np.int64)
    index[np.asarray(tags, dtype=np.int64)] = np.arange(len(tags))
    cells = index[np.asarray(nodes[list(types).index(2)], dtype=np.int64).reshape(-1, 3)]
    meshio.write(path, meshio.Mesh(points, [("triangle", cells)]))
    return len(points), largest_angle(points, cells)


def largest_angle(points: np.ndarray, cells: np.ndarray) -> float:
    """The largest interior angle of the triangles, in degrees."""
    x = points[cells]
    worst = 0.0
    for k in range(3):
        u, v = x[:, (k + 1) % 3] - x[:, k], x[:, (k + 2) % 3] - x[:, k]
        cos = np.sum(u * v, axis=1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
        worst = max(worst, float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).max()))
    return worst


def overrides(domain: dict, monitor: bool) -> dict:
    """The porous_medium_2d case on [0, 1]² with the LJKO benchmark's data."""
    sets = {
        "initial.mass": MASS,
        "initial.t0": T0,
        "initial.center": [0.5, 0.5],
        "time.t_end": T_END,
        "time.tau": TAU,
        "output.sample_cells": [200, 200],
        "solver.fem-jko.monitor": monitor,
    }
    sets.update({f"domain.{k}": v for k, v in domain.items()})
    return sets


class Counter:
    """Steps a solver to T, counting every attempt's iterations and the retries."""

    def __init__(self, solver) -> None:
        self.solver, self.attempts, self.retries = solver, [], 0

    def step(self, tau: float, halvings: int = HALVINGS) -> None:
        try:
            self.attempts.append(self.solver.step(tau))
        except SolverError as err:
            self.attempts.append(err.iterations)
            if halvings == 0:
                raise
            self.retries += 1
            self.step(tau / 2, halvings - 1)
            self.step(tau / 2, halvings - 1)


def run(case: api.Case, name: str) -> dict:
    """Step ``name`` to T on ``case``; CPU seconds of the steps, counts and the L1 error."""
    solver = build_solver(case, name, MPI.COMM_WORLD)
    steps = round(T_END / TAU)
    counter = Counter(solver)
    start = time.process_time()
    for _ in range(steps):
        counter.step(TAU)
    cpu = time.process_time() - start
    its = np.asarray(counter.attempts, dtype=float)
    return {
        "mean": its.mean(),
        "max": its.max(),
        "retries": counter.retries,
        "cpu": cpu,
        "l1": solver.diagnostics(T_END).get("l1_error", np.nan),
        "attempts": counter.attempts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vertices", type=int, default=7000)
    parser.add_argument("--cells", type=int, default=80)
    parser.add_argument("--monitor", action="store_true", help="print fem-jko's residuals")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "square.msh"
        vertices, angle = MPI.COMM_WORLD.bcast(
            unit_square_mesh(path, args.vertices) if MPI.COMM_WORLD.rank == 0 else None
        )
        meshes = {
            f"gmsh {vertices} vertices, max angle {angle:.1f}°": {
                "shape": "file",
                "path": str(path),
            },
            f"box {args.cells}²": {
                "shape": "box",
                "lower": [0.0, 0.0],
                "upper": [1.0, 1.0],
                "cells": [args.cells, args.cells],
            },
        }
        rows = []
        for label, domain in meshes.items():
            case = api.load("porous_medium_2d", overrides(domain, args.monitor))
            out = {name: run(case, name) for name in ("fem-implicit", "fem-jko")}
            rows.append((label, out))
    if MPI.COMM_WORLD.rank == 0:
        print(f"porous_medium_2d on [0,1]², tau = {TAU:g}, T = {T_END:g}")
        print(
            f"{'mesh':40s} {'solver':13s} {'its mean':>8s} {'max':>4s} {'retries':>7s} "
            f"{'CPU s':>7s} {'L1 err':>9s}"
        )
        for label, out in rows:
            for name, r in out.items():
                print(
                    f"{label:40s} {name:13s} {r['mean']:8.2f} {r['max']:4.0f} "
                    f"{r['retries']:7d} {r['cpu']:7.2f} {r['l1']:9.3e}"
                )
            print(f"{label:40s} fem-jko its per attempt: {out['fem-jko']['attempts']}")
            ratio = out["fem-jko"]["cpu"] / out["fem-implicit"]["cpu"]
            print(f"{label:40s} CPU fem-jko / fem-implicit: {ratio:.2f}")


if __name__ == "__main__":
    main()
