"""Reading wgf results files (DESIGN §6) into plain NumPy arrays."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from wgf.errors import UserError
from wgf.results import SCHEMA


@dataclass
class Results:
    """The contents of one results file."""

    path: Path
    attrs: dict
    config: dict
    time: np.ndarray
    diagnostics: dict[str, np.ndarray]
    snapshot_time: np.ndarray
    snapshot_density: np.ndarray
    sample_points: np.ndarray


def read_results(path: str | Path) -> Results:
    """Read a results file; raise :class:`UserError` if it is not a wgf results file."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as err:
        raise UserError(f"'{path}' is not a readable HDF5 file: {err}") from None
    with f:
        if f.attrs.get("schema") != SCHEMA:
            raise UserError(
                f"'{path}' is not a {SCHEMA} results file (schema {f.attrs.get('schema')!r})"
            )
        n = f["time"].shape[0]
        return Results(
            path=path,
            attrs={k: v for k, v in f.attrs.items() if k != "config"},
            config=json.loads(f.attrs["config"]),
            time=f["time"][()],
            diagnostics={k: v[:n] for k, v in f["diagnostics"].items()},
            snapshot_time=f["snapshots/time"][()],
            snapshot_density=f["snapshots/density"][()],
            sample_points=f["samples/points"][()],
        )
