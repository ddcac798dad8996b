"""wgf compare: the runs side by side in ParaView (written by ``wgf compare --paraview``).

    xvfb-run -a pvbatch compare_paraview.py   render compare_paraview.png without a display
    pvbatch compare_paraview.py               the same, with a display (or a headless build)

Every run is shown at the same time: the last time all of them reached.  2-D runs get one
pane each, on an equal grid, coloured by one colour map whose range is the smallest and
largest density of all runs at that time; particle runs show each particle as a disc
coloured by the density estimate at it.  1-D runs share one line chart, density against
x (a particle run: the curve through its particles' density estimates).  The range and
the time go to compare_paraview.json (and stdout), next to the picture.

Debian's ParaView (5.11) renders through X only (no EGL or OSMesa): without a display the
script writes the JSON, prints "no display: run under xvfb-run -a pvbatch ..." and
renders nothing.
"""

import json
import math
import os
import sys

from paraview import servermanager
from paraview.simple import (
    AddCameraLink,
    CreateLayout,
    CreateView,
    GetColorTransferFunction,
    GetScalarBar,
    LoadPalette,
    ProgrammableFilter,
    SaveScreenshot,
    Show,
    Slice,
    Text,
    UpdatePipeline,
    Xdmf3ReaderS,
)
from vtkmodules.util.numpy_support import vtk_to_numpy

#: (title, field file relative to this script, "mesh" | "particles", dimension) per run.
RUNS = []  # filled in by wgf compare --paraview


def here():
    """This script's folder: the runs are named relative to it.

    pvbatch and pvpython set ``__file__``; where it is missing (a script pasted into a
    Python shell), the working directory is taken.
    """
    if "__file__" in globals():
        return os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(os.path.dirname(sys.argv[0]) if sys.argv and sys.argv[0] else ".")


HERE = here()
STEM = "compare_paraview"
#: Size of one pane of the picture, in pixels.
PANE = (520, 460)
#: Size of the picture when it is a line chart alone.
CHART_ALONE = (760, 460)
#: The 2-D panes and the chart zoom on where the density is above this fraction of its peak
#: (a Gaussian: within 3 standard deviations, 99 % of the mass in 2-D).
VISIBLE = 1e-2
#: A sequential map, inverted so that it is near-white at zero: where there is no mass
#: the pane is blank, so the title above and the colour bar below the data sit on white.
COLOUR_MAP = "GnBu"
#: Matplotlib's tab10 colours, for the chart's curves.
COLOURS = [
    (0.12, 0.47, 0.71),
    (1.0, 0.5, 0.05),
    (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16),
    (0.58, 0.4, 0.74),
    (0.55, 0.34, 0.29),
]
#: Sorts a 1-D run's points by x into a table (x, density), so the chart draws a curve.
SORT_BY_X = """
import numpy as np
from vtkmodules.numpy_interface import dataset_adapter as dsa
data = dsa.WrapDataObject(self.GetInputDataObject(0, 0))
x = np.asarray(data.Points)[:, 0]
order = np.argsort(x, kind="stable")
table = dsa.WrapDataObject(self.GetOutputDataObject(0))
table.RowData.append(x[order], "x")
table.RowData.append(np.asarray(data.PointData["density"])[order], "density")
"""


def can_render():
    """Whether this ParaView can open a render window here (a display, EGL or OSMesa)."""
    try:
        from paraview.modules.vtkRemotingViews import vtkPVRenderingCapabilitiesInformation
    except ImportError:  # an older ParaView: only the display says
        return bool(os.environ.get("DISPLAY"))
    info = vtkPVRenderingCapabilitiesInformation()
    info.CopyFromObject(None)
    return bool(info.Supports(vtkPVRenderingCapabilitiesInformation.RENDERING))


def snapshot_time(times, t):
    """The run's last snapshot at or before t (times of two runs may differ in the last bit)."""
    return max(s for s in times if s <= t + 1e-9 * max(1.0, abs(t)))


def load(run):
    """Open one run; return its reader and snapshot times."""
    title, path = run[:2]
    reader = Xdmf3ReaderS(registrationName=title, FileName=[os.path.join(HERE, path)])
    reader.UpdatePipelineInformation()
    return reader, list(reader.TimestepValues or [0.0])


def arrays_at(reader, t):
    """The points (n, 3) and the point arrays of a reader at time t, as numpy arrays."""
    UpdatePipeline(time=t, proxy=reader)
    data = servermanager.Fetch(reader)
    points = vtk_to_numpy(data.GetPoints().GetData())
    pd = data.GetPointData()
    arrays = {
        pd.GetArrayName(i): vtk_to_numpy(pd.GetArray(i)) for i in range(pd.GetNumberOfArrays())
    }
    return points, arrays


def visible_box(points, density, peak, axes):
    """Bounds (lo, hi) along ``axes`` of the points whose density is above VISIBLE·peak."""
    keep = density >= VISIBLE * peak
    chosen = points[keep] if keep.any() else points
    return chosen[:, axes].min(axis=0), chosen[:, axes].max(axis=0)


def gather(runs, readers):
    """Per run at the time shown: snapshot time, points, density and weights."""
    t_shown = min(times[-1] for _, times in readers)
    found = []
    for run, (reader, times) in zip(runs, readers, strict=True):
        t = snapshot_time(times, t_shown)
        points, arrays = arrays_at(reader, t)
        found.append({"run": run, "reader": reader, "time": t, "points": points, **arrays})
    return t_shown, found


def summary(t_shown, found):
    """The shared colour range and, per run, its time and data range (for the JSON).

    The colour range runs from 0 (or the lowest density, if some run undershoots) to the
    largest density of all runs at the time shown: white is "no mass" in every pane.
    """
    runs = [
        {
            "title": f["run"][0],
            "file": f["run"][1],
            "time": f["time"],
            "range": [float(f["density"].min()), float(f["density"].max())],
        }
        for f in found
    ]
    lo = min(r["range"][0] for r in runs)
    hi = max(r["range"][1] for r in runs)
    return {"time": t_shown, "range": [min(0.0, lo), hi], "data_range": [lo, hi], "runs": runs}


def title_text(view, text, size=15):
    """A title at the top centre of a view (above the data, see ``place_camera``)."""
    display = Show(Text(Text=text), view)
    display.WindowLocation = "Upper Center"
    display.FontSize = size


def place_camera(view, lo, hi, aspect):
    """Look along z at the box (lo, hi), leaving the top 14 % and bottom 22 % of the pane free.

    The title sits in the top band and the colour bar in the bottom one, so neither covers
    the data; the parallel scale is half the visible height.
    """
    width, height = hi[0] - lo[0], hi[1] - lo[1]
    visible_height = max(height / 0.62, width / (0.92 * aspect), 1e-12)
    cx, cy = 0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1])
    # The box's centre sits at 53 % of the pane height: (0.22 + 0.86)/2 + a margin.
    cy_view = cy - 0.03 * visible_height
    view.CameraPosition = [cx, cy_view, 1.0]
    view.CameraFocalPoint = [cx, cy_view, 0.0]
    view.CameraViewUp = [0.0, 1.0, 0.0]
    view.CameraParallelProjection = 1
    view.CameraParallelScale = 0.5 * visible_height
    view.InteractionMode = "2D"


def spatial_view(f, lut, lo, hi):
    """One pane: a 2-D (or 3-D, sliced or projected) run coloured by the shared map."""
    title, _, kind, dim = f["run"]
    view = CreateView("RenderView")
    view.OrientationAxesVisibility = 0
    view.ViewSize = list(PANE)
    view.ViewTime = f["time"]
    source = f["reader"]
    note = ""
    if kind == "mesh" and dim == 3:
        source = Slice(Input=source)
        source.SliceType.Normal = [0.0, 0.0, 1.0]
        source.SliceType.Origin = list(0.5 * (f["points"].min(axis=0) + f["points"].max(axis=0)))
        note = " (slice z = mid)"
    elif dim == 3:
        note = " (seen along z)"
    display = Show(source, view)
    display.ColorArrayName = ["POINTS", "density"]
    display.LookupTable = lut
    # Unlit: the colour is the density's, not shaded by a light.
    display.Ambient, display.Diffuse = 1.0, 0.0
    if kind == "particles":
        # A disc per particle, of radius half the local spacing (w/ρ)^(1/d): the discs
        # about tile the plane, so the picture reads as a density, not as dots.
        spacing = (f["weight"] / f["density"]) ** (1.0 / dim)
        display.SetRepresentationType("Point Gaussian")
        display.ShaderPreset = "Plain circle"
        display.GaussianRadius = 0.8 * float(sorted(spacing)[len(spacing) // 2])
    bar = GetScalarBar(lut, view)
    bar.Title = "density"
    bar.ComponentTitle = ""
    bar.Orientation = "Horizontal"
    bar.WindowLocation = "Lower Center"
    bar.ScalarBarLength = 0.7
    bar.RangeLabelFormat = "%-#.3g"
    bar.Visibility = 1
    title_text(view, f"{title}{note}\nt = {f['time']:.4g}")
    place_camera(view, lo, hi, PANE[0] / PANE[1])
    return view


def chart_view(found, lo, hi, top, size):
    """One line chart of density against x for the 1-D runs, x zoomed on (lo, hi)."""
    view = CreateView("XYChartView")
    view.ViewSize = list(size)
    times = sorted({f["time"] for f in found})
    # The chart's filters run at the view's time: the latest snapshot time, which every
    # run's reader maps to its own snapshot (its last one at or before it).
    view.ViewTime = times[-1]
    view.ChartTitle = "density at t = " + ", ".join(f"{t:.4g}" for t in times)
    view.LeftAxisTitle = "density"
    view.BottomAxisTitle = "x"
    view.LegendLocation = "TopRight"
    view.LeftAxisUseCustomRange = 1
    view.LeftAxisRangeMinimum = min(0.0, lo[1])
    # Head room above the peak for the legend, which ParaView draws inside the axes.
    view.LeftAxisRangeMaximum = 1.35 * top
    pad = 0.05 * (hi[0] - lo[0])
    view.BottomAxisUseCustomRange = 1
    view.BottomAxisRangeMinimum = lo[0] - pad
    view.BottomAxisRangeMaximum = hi[0] + pad
    for k, f in enumerate(found):
        title = f["run"][0]
        table = ProgrammableFilter(Input=f["reader"], OutputDataSetType="vtkTable")
        table.Script = SORT_BY_X
        UpdatePipeline(time=f["time"], proxy=table)
        display = Show(table, view)
        display.UseIndexForXAxis = 0
        display.XArrayName = "x"
        display.SeriesVisibility = ["density"]
        display.SeriesLabel = ["density", title]
        display.SeriesColor = ["density", *(str(c) for c in COLOURS[k % len(COLOURS)])]
        display.SeriesLineThickness = ["density", "2"]
        # Solid, dashed, dotted, dash-dotted: curves that agree stay told apart.
        display.SeriesLineStyle = ["density", str(1 + k % 4)]
    return view


def equal_grid(views):
    """A layout with the views on an equal grid: up to 3 in a row, then square-ish."""
    n = len(views)
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    layout = CreateLayout("wgf compare")
    layout.SeparatorWidth = 3

    def split(cell, count, vertical):
        """Split ``cell`` into ``count`` equal parts; return the leaf cells in order."""
        if count == 1:
            return [cell]
        splitter = layout.SplitVertical if vertical else layout.SplitHorizontal
        first = splitter(cell, 1.0 / count)
        return [first, *split(first + 1, count - 1, vertical)]

    cells = [leaf for row in split(0, rows, True) for leaf in split(row, cols, False)]
    # A last row may have more cells than views: those stay empty.
    for cell, view in zip(cells, views, strict=False):
        layout.AssignView(cell, view)
    return layout, [cols * PANE[0], rows * PANE[1]]


def render(found, colours):
    """Build the views, save the PNG next to this script; return its path."""
    LoadPalette(paletteName="WhiteBackground")
    lut = GetColorTransferFunction("density")
    lut.ApplyPreset(COLOUR_MAP, True)
    lut.InvertTransferFunction()
    lut.AutomaticRescaleRangeMode = "Never"
    lut.RescaleTransferFunction(*colours["range"])
    peak = colours["range"][1]
    spatial = [f for f in found if f["run"][3] >= 2]
    lines = [f for f in found if f["run"][3] == 1]
    views = []
    if spatial:
        boxes = [visible_box(f["points"], f["density"], peak, [0, 1]) for f in spatial]
        lo = [min(b[0][k] for b in boxes) for k in (0, 1)]
        hi = [max(b[1][k] for b in boxes) for k in (0, 1)]
        views += [spatial_view(f, lut, lo, hi) for f in spatial]
        for other in views[1:]:
            AddCameraLink(views[0], other, f"camera{len(views)}_{id(other)}")
    if lines:
        boxes = [visible_box(f["points"], f["density"], peak, [0]) for f in lines]
        lo = [min(b[0][0] for b in boxes), colours["range"][0]]
        hi = [max(b[1][0] for b in boxes), peak]
        alone = not spatial
        views.append(chart_view(lines, lo, hi, peak, CHART_ALONE if alone else PANE))
    layout, size = equal_grid(views)
    if not spatial:
        size = list(CHART_ALONE)
    png = os.path.join(HERE, STEM + ".png")
    SaveScreenshot(png, layout, ImageResolution=size)
    return png


def main():
    """Load every run, write the colour range, and render if this ParaView can."""
    readers = [load(run) for run in RUNS]
    t_shown, found = gather(RUNS, readers)
    colours = summary(t_shown, found)
    with open(os.path.join(HERE, STEM + ".json"), "w") as out:
        json.dump(colours, out, indent=1)
    print("TIME", t_shown)
    print("RANGE", *colours["range"])
    for run in colours["runs"]:
        print("RUN", run["title"], "time", run["time"], "range", *run["range"])
    if not can_render():
        print(f"no display: run under xvfb-run -a pvbatch {STEM}.py")
        return
    print("wrote", render(found, colours))


main()
