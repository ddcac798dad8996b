"""Reading wgf results files (DESIGN §6) into plain NumPy arrays.

The layout facts that the reader and the writer (:mod:`wgf.results`) share live here, in
the lower layer: the schema name, and what each time series is indexed by.  Every
extendable dataset carries the attribute ``series``: ``"step"`` (one entry per time level,
like ``/time`` and ``/diagnostics/*``) or ``"snapshot"`` (one per snapshot, like
``/snapshots/*`` and ``/particles/positions``).  Resuming cuts every series back by that
attribute, so a new per-snapshot array anywhere in the file stays in step with the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from wgf.cases.case import Case
from wgf.cases.errors import UserError
from wgf.cases.sphere import MANIFOLD_SHAPES, sample_grid

SCHEMA = "wgf-results/1"

#: The attribute of an extendable dataset that names its index, and its two values.
SERIES = "series"
STEP, SNAPSHOT = "step", "snapshot"

#: Files written before the ``series`` attribute: the groups whose extendable datasets
#: are per-snapshot (everything else indexed by time level is ``/time`` or diagnostics).
_LEGACY_SNAPSHOT_GROUPS = ("snapshots/", "particles/")


def series_index(name: str, ds: h5py.Dataset) -> str | None:
    """What the dataset ``name`` is indexed by: :data:`STEP`, :data:`SNAPSHOT` or None.

    Reads the ``series`` attribute; a dataset without it (a file from before the
    attribute) is classified by where it sits, as those files were written.
    """
    index = ds.attrs.get(SERIES)
    if index is not None:
        return str(index)
    if name == "time" or name.startswith("diagnostics/"):
        return STEP
    extendable = ds.ndim > 0 and ds.maxshape[0] is None
    if extendable and name.startswith(_LEGACY_SNAPSHOT_GROUPS):
        return SNAPSHOT
    return None


@dataclass
class Results:
    """The contents of one results file.

    Attributes:
        path: The file.
        attrs: Root attributes (``case``, ``solver``, ``dim``, ``mpi_size``, ...).
        config: The resolved case it ran.
        time: Every time level.
        diagnostics: ``/diagnostics/<name>`` series.
        snapshot_time: Snapshot times.
        snapshot_density: Density on the sample grid at each snapshot, (n_snap, n_samples).
        sample_points: The sample grid, (n_samples, dim).
        positions: Particle positions at each snapshot, (n_snap, N, dim), or None (FE).
        weights: Particle weights, (N,), or None.
    """

    path: Path
    attrs: dict
    config: dict
    time: np.ndarray
    diagnostics: dict[str, np.ndarray]
    snapshot_time: np.ndarray
    snapshot_density: np.ndarray
    sample_points: np.ndarray
    positions: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def solver(self) -> str:
        """The solver that wrote the file."""
        return str(self.attrs["solver"])

    @property
    def case_name(self) -> str:
        """The case it ran."""
        return str(self.attrs["case"])

    @property
    def dim(self) -> int:
        """Spatial dimension."""
        return int(self.attrs["dim"])

    def case(self) -> Case:
        """The case, rebuilt from the stored configuration."""
        return Case(config=self.config, path=self.path, dim=self.dim)

    def exact(self) -> Callable[[float, np.ndarray], np.ndarray] | None:
        """The closed-form solution ρ(t, x) of the case, or None."""
        return self.case().exact_solution()

    def sample_cell_volume(self) -> float:
        """Volume of one cell of the sample grid (the points are its midpoints)."""
        pts = self.sample_points
        spacing = [
            np.diff(np.unique(pts[:, k]))[0] if len(np.unique(pts[:, k])) > 1 else 1.0
            for k in range(pts.shape[1])
        ]
        return float(np.prod(spacing))

    @property
    def shape(self) -> str:
        """The case's ``domain.shape`` (``box``, ``disk``, ``file``, ``circle``, ``sphere``)."""
        return str((self.config.get("domain") or {}).get("shape", "box"))

    def sample_cell_areas(self) -> np.ndarray:
        """The volume (area, arc length) of the sample cell of every sample point, (n,).

        A box grid's cells are equal (:meth:`sample_cell_volume`); on a circle or sphere
        the grid is that of :func:`wgf.cases.sphere.sample_grid`, whose latitude bands on
        the sphere differ in area.
        """
        if self.shape in MANIFOLD_SHAPES:
            areas = sample_grid(self.dim, self.case().sample_cells())[1]
            if len(areas) == len(self.sample_points):
                return areas
        return np.full(len(self.sample_points), self.sample_cell_volume())

    def snapshot_index(self, t: float) -> int:
        """Index of the snapshot at time t (within round-off)."""
        hits = np.flatnonzero(np.isclose(self.snapshot_time, t, rtol=1e-9, atol=1e-12))
        if not len(hits):
            raise UserError(f"'{self.path}' has no snapshot at t = {t}")
        return int(hits[0])


def is_results_file(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file whose ``schema`` root attribute names wgf results.

    Any ``wgf-results/*`` version counts (reading an unsupported one is then an error,
    not a silent skip); the heavy-data ``*_fields.h5`` of an XDMF pair has no schema.
    """
    try:
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema")
    except OSError:
        return False
    if isinstance(schema, bytes):
        schema = schema.decode(errors="replace")
    return isinstance(schema, str) and schema.startswith(SCHEMA.split("/")[0])


def read_results(path: str | Path) -> Results:
    """Read a results file; raise :class:`UserError` if it is not a wgf results file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"'{path}' does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"'{path}' is not a readable HDF5 file: {err}") from None
    with f:
        if f.attrs.get("schema") != SCHEMA:
            raise UserError(
                f"'{path}' is not a {SCHEMA} results file (schema {f.attrs.get('schema')!r})"
            )
        # A run killed mid-step may have grown some series of its last entry and not
        # others; /time and /snapshots/time are written last, so they set the lengths.
        n, n_snap = f["time"].shape[0], f["snapshots/time"].shape[0]
        has_particles = "particles/positions" in f
        return Results(
            path=path,
            attrs={k: v for k, v in f.attrs.items() if k != "config"},
            config=json.loads(f.attrs["config"]),
            time=f["time"][()],
            diagnostics={k: v[:n] for k, v in f["diagnostics"].items()},
            snapshot_time=f["snapshots/time"][()],
            snapshot_density=f["snapshots/density"][:n_snap],
            sample_points=f["samples/points"][()],
            positions=f["particles/positions"][:n_snap] if has_particles else None,
            weights=f["particles/weights"][()] if "particles/weights" in f else None,
        )
