"""A pvpython script that shows the runs of a comparison side by side in ParaView.

``wgf compare --paraview`` writes ``compare_paraview.py``.  Open it with
``pvpython compare_paraview.py`` (or load it in the ParaView GUI's Python shell); with a
display (or under ``xvfb-run``) ``pvbatch compare_paraview.py`` renders
``compare_paraview.png``.  Without a display it only loads every run and prints what it
read (Debian's ParaView needs an X server to render).
Each run's field file (``/fields`` attribute of its results file: the FE density, or the
particle cloud as XDMF Polyvertex) gets its own view, linked in camera and time.
"""

from __future__ import annotations

from pathlib import Path

import h5py

TEMPLATE = '''"""ParaView state for wgf compare (generated).

pvpython {name}        open the runs side by side (needs a display)
pvbatch {name}         render {png_name} when a display is available (e.g. xvfb-run)
"""
import os

from paraview.simple import (AddCameraLink, AssignViewToLayout, ColorBy, CreateLayout,
                             CreateView, GetAnimationScene, Render, ResetCamera,
                             SaveScreenshot, Show, Text, UpdatePipeline, Xdmf3ReaderS)

RUNS = {runs!r}
readers = []
for label, path, is_particles in RUNS:
    reader = Xdmf3ReaderS(registrationName=label, FileName=[path])
    reader.UpdatePipelineInformation()
    times = list(reader.TimestepValues or [0.0])
    UpdatePipeline(time=times[-1], proxy=reader)
    info = reader.GetDataInformation()
    print("RUN", label, "points", info.GetNumberOfPoints(), "times", len(times),
          "arrays", ",".join(reader.PointData.keys()))
    readers.append((label, reader, is_particles))

if os.environ.get("DISPLAY"):
    layout = CreateLayout("wgf compare")
    views = []
    for label, reader, is_particles in readers:
        view = CreateView("RenderView")
        AssignViewToLayout(view=view, layout=layout)
        display = Show(reader, view)
        if is_particles:
            display.SetRepresentationType("Points")
            display.PointSize = 3.0
        arrays = reader.PointData.keys()
        if arrays:
            ColorBy(display, ("POINTS", arrays[0]))
            display.SetScalarBarVisibility(view, True)
        Show(Text(Text=label), view)
        view.InteractionMode = "2D"
        ResetCamera(view)
        views.append(view)
    for other in views[1:]:
        AddCameraLink(views[0], other, "camera_" + str(id(other)))
    scene = GetAnimationScene()
    scene.UpdateAnimationUsingDataTimeSteps()
    scene.AnimationTime = scene.EndTime
    Render()
    SaveScreenshot("{png}", layout, ImageResolution=[600 * len(views), 500])
'''


def fields_file(results: Path) -> tuple[Path, bool] | None:
    """The ParaView file of a run and whether it is a particle cloud, or None."""
    with h5py.File(results, "r") as f:
        name = f["fields"].attrs.get("xdmf") if "fields" in f else None
        particles = "particles/positions" in f
    return (results.parent / str(name), particles) if name else None


def write_script(results: list[Path], labels: list[str], out_dir: Path) -> Path:
    """Write ``compare_paraview.py`` showing every run that has a field file."""
    runs = []
    for path, label in zip(results, labels, strict=True):
        found = fields_file(path)
        if found is not None:
            runs.append((label, str(found[0].resolve()), found[1]))
    out_dir.mkdir(parents=True, exist_ok=True)
    script = out_dir / "compare_paraview.py"
    png = (out_dir / "compare_paraview.png").resolve()
    script.write_text(TEMPLATE.format(name=script.name, runs=runs, png=png, png_name=png.name))
    return script
