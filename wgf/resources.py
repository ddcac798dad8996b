"""A rough memory estimate of a run, checked against the machine before anything is built.

A case with ``domain.cells = [3000, 3000]``, ``output.sample_cells = [20000, 20000]`` or
``solver.blob.particles = 5e7`` otherwise ends in a ``MemoryError`` (or the kernel's OOM
killer) after minutes of building.  The estimate is a sum of three terms, each a count
times a per-item constant:

    bytes ≈ BASE + C_cell · (mesh cells) + C_sample · (sample points) + C_particle · N,

with C_cell by the kind of cell (a hexahedron takes 12 times a triangle's memory).

The constants are rounded up from the peak resident size of small runs on one rank (the
difference between two sizes, so the interpreter and libraries cancel; the measurements
are in benchmarks/README.md).  They are meant to catch requests that are off by a large
factor, not to predict usage: a case is refused only when the estimate exceeds the
machine's total memory (``MemTotal``).  The ranks of an ``mpiexec`` run share the
machine, so the whole run's estimate is compared, whatever the number of ranks.
"""

from __future__ import annotations

import math
from pathlib import Path

from wgf.cases import Case
from wgf.cases.errors import UserError

#: The interpreter, DOLFINx, PETSc and numpy before any case data [bytes].
BASE_BYTES = 200e6
#: Per mesh cell of a finite-element solver (mesh, P1 spaces, matrices, the linear solver),
#: by the box's ``cell_type`` and the dimension; triangles for the other shapes.  A cell
#: with more vertices couples more pairs of them (and its vertex rule has more points).
CELL_BYTES = {
    ("simplex", 1): 1700.0,
    ("simplex", 2): 1700.0,
    ("simplex", 3): 3700.0,
    ("hypercube", 2): 3700.0,
    ("hypercube", 3): 20_000.0,
}
#: Per sample point: coordinates, the cell that holds it, the sampled values.
SAMPLE_BYTES = 250.0
#: Per particle, by solver; ``blob`` keeps neighbour lists (thousands of entries each).
PARTICLE_BYTES = {"blob": 12_000.0}
#: Per particle for the other particle solvers (positions, weights, work arrays).
PARTICLE_BYTES_DEFAULT = 200.0


def mem_total(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    """The machine's total memory in bytes (``MemTotal``), or None where it is not known."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024.0  # the value is in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def mesh_cells(case: Case) -> float:
    """Cells of the case's mesh (0 for a mesh file, whose size is known only once read).

    A simplex box splits each of its prod(cells) boxes into d! simplices; a disk of
    radius r meshed at size h has about 2.3 r²π / h² triangles (an equilateral triangle
    of side h covers √3 h²/4); each ``domain.refinements`` multiplies the count by 2^d.
    """
    dom = case.section("domain")
    if dom["shape"] == "box":
        simplices = math.factorial(case.dim) if dom["cell_type"] == "simplex" else 1
        cells = math.prod(dom["cells"]) * simplices
    elif dom["shape"] == "disk":
        cells = math.pi * dom["radius"] ** 2 / (math.sqrt(3) / 4 * dom["h"] ** 2)
    else:
        return 0.0
    return float(cells) * 2.0 ** (case.dim * (dom.get("refinements") or 0))


def cell_bytes(case: Case) -> float:
    """Bytes per mesh cell of the case's finite-element mesh (:data:`CELL_BYTES`)."""
    dom = case.section("domain")
    if dom["shape"] != "box":
        return CELL_BYTES[("simplex", 2)]
    kind = "simplex" if case.dim == 1 else dom["cell_type"]  # an interval either way
    return CELL_BYTES[(kind, case.dim)]


def estimate(case: Case, solver: str) -> dict[str, float]:
    """Estimated bytes of running ``solver`` on ``case``, by term (and their ``total``)."""
    params = case.solver_params(solver)
    parts = {"base": BASE_BYTES}
    if "particles" in params:  # a particle solver builds no finite-element mesh
        per = PARTICLE_BYTES.get(solver, PARTICLE_BYTES_DEFAULT)
        parts["particles"] = per * float(params["particles"] or 0)
    else:
        # A space-time solver (fem-bb) has time_cells layers of the spatial mesh.
        layers = params.get("time_cells") or 1
        parts["cells"] = cell_bytes(case) * mesh_cells(case) * layers
    parts["samples"] = SAMPLE_BYTES * math.prod(case.sample_cells())
    parts["total"] = sum(parts.values())
    return parts


def check_memory(case: Case, solver: str, available: float | None = None) -> None:
    """Refuse (one line, with the estimate) a run that cannot fit in the machine's memory.

    Args:
        case: The validated case.
        solver: The solver's name.
        available: Bytes to compare with; the machine's ``MemTotal`` when None.

    Raises:
        UserError: The estimate exceeds ``available``.
    """
    available = mem_total() if available is None else available
    if available is None:
        return
    parts = estimate(case, solver)
    if parts["total"] <= available:
        return
    # Only the terms that matter, largest first (the others are noise at this size).
    big = sorted(
        (
            (v, k)
            for k, v in parts.items()
            if k not in ("base", "total") and v > 0.05 * parts["total"]
        ),
        reverse=True,
    )
    terms = ", ".join(f"{name} {value / 1e9:.3g} GB" for value, name in big)
    raise UserError(
        f"{case.name} with {solver} needs about {parts['total'] / 1e9:.3g} GB ({terms}) but "
        f"this machine has {available / 1e9:.3g} GB: use fewer cells, sample points or particles"
    )
