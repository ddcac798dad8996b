"""A pvbatch script that shows the runs of a comparison side by side in ParaView.

``wgf compare --paraview`` writes ``compare_paraview.py`` into the output folder: the
script of :mod:`wgf.postprocess.pvbatch_compare` with the list of runs filled in.  Run it
with ``xvfb-run -a pvbatch compare_paraview.py`` (or plain ``pvbatch`` with a display); it
writes ``compare_paraview.png`` and ``compare_paraview.json`` (the time shown and the
shared colour range) next to itself.  The runs' field files are named relative to the
script's folder, so the folder can be moved together with the runs it names.

Each run's field file is the ``/fields`` attribute of its results file: the FE density as
DOLFINx XDMF, or the particle cloud as XDMF Polyvertex with a per-particle density.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

#: The template: a complete pvbatch script but for its list of runs.
TEMPLATE = Path(__file__).with_name("pvbatch_compare.py")
#: The template's line that :func:`write_script` replaces with the runs.
RUNS_LINE = "RUNS = []  # filled in by wgf compare --paraview\n"


def fields_file(results: Path) -> tuple[Path, str, int] | None:
    """A run's ParaView file, its kind ("mesh" or "particles") and dimension, or None."""
    with h5py.File(results, "r") as f:
        name = f["fields"].attrs.get("xdmf") if "fields" in f else None
        kind = "particles" if "particles/positions" in f else "mesh"
        dim = int(f.attrs.get("dim", 2))
    return (results.parent / str(name), kind, dim) if name else None


def pane_title(label: str, results: Path) -> str:
    """The label (solver) and the results file, unless the label names the file already."""
    return label if results.stem in label else f"{label}  {results.name}"


def write_script(results: list[Path], labels: list[str], out_dir: Path) -> Path:
    """Write ``compare_paraview.py`` showing every run that has a field file.

    Args:
        results: The runs' results files.
        labels: One label per run (:func:`~wgf.postprocess.labels.run_labels`).
        out_dir: Where the script goes; the runs are named relative to it.

    Returns:
        The script's path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for path, label in zip(results, labels, strict=True):
        found = fields_file(path)
        if found is not None:
            xdmf, kind, dim = found
            relative = os.path.relpath(xdmf.resolve(), out_dir.resolve())
            runs.append((pane_title(label, path), relative, kind, dim))
    text = TEMPLATE.read_text()
    if RUNS_LINE not in text:
        raise RuntimeError(f"{TEMPLATE} lost its line {RUNS_LINE.strip()!r}")
    lines = "".join(f"    {run!r},\n" for run in runs)
    text = text.replace(RUNS_LINE, f"RUNS = [\n{lines}]\n")
    script = out_dir / "compare_paraview.py"
    script.write_text(text)
    return script
