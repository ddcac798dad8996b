r"""pvbatch script: tokens (blob) and the FE density (fem-implicit) on S² in one picture.

    wgf run tokens_sphere_sa --solver fem-implicit --solver blob --out runs \
        --set energy.interaction.normalization=usa --set initial.kind=perturbed_uniform \
        --set initial.mode=3 --set initial.amplitude=0.5 --set domain.cells=[16] \
        --set time.t_end=0.4 --set time.tau=0.02 --set output.snapshots=5
    xvfb-run -a pvbatch docs/img/tokens_sphere.py runs docs/img/tokens_sphere.png

Both runs at their last time: the density of fem-implicit on the icosphere mesh, and the
blob tokens as white points just above the surface (scaled by 1.03 so that the surface
does not hide them).  Written by hand for the README, not run by the tests.
"""

import sys

from paraview.simple import (
    ColorBy,
    GetActiveViewOrCreate,
    GetColorTransferFunction,
    GetScalarBar,
    SaveScreenshot,
    Show,
    Transform,
    Xdmf3ReaderS,
)

runs, picture = sys.argv[1], sys.argv[2]
fe = Xdmf3ReaderS(FileName=[f"{runs}/tokens_sphere_sa_fem-implicit_fields.xdmf"])
tokens = Xdmf3ReaderS(FileName=[f"{runs}/tokens_sphere_sa_blob_fields.xdmf"])
for reader in (fe, tokens):
    reader.UpdatePipelineInformation()
t_end = min(fe.TimestepValues[-1], tokens.TimestepValues[-1])

view = GetActiveViewOrCreate("RenderView")
view.ViewSize = [900, 800]
view.ViewTime = t_end
view.OrientationAxesVisibility = 0
view.Background = [0.12, 0.12, 0.16]

surface = Show(fe, view)
ColorBy(surface, ("POINTS", "density"))
surface.RescaleTransferFunctionToDataRange(True, False)
lut = GetColorTransferFunction("density")
lut.ApplyPreset("Viridis (matplotlib)", True)
bar = GetScalarBar(lut, view)
bar.Title = f"FE density, t = {t_end:g}"
bar.ComponentTitle = ""
surface.SetScalarBarVisibility(view, True)

lifted = Transform(Input=tokens)
lifted.Transform.Scale = [1.03, 1.03, 1.03]
points = Show(lifted, view)
ColorBy(points, None)
points.SetRepresentationType("Points")
# Square points: pvbatch 5.11 under xvfb hid half of the tokens rendered as spheres.
points.RenderPointsAsSpheres = 0
points.PointSize = 6
points.AmbientColor = points.DiffuseColor = [1.0, 1.0, 1.0]

# Facing the lobe at azimuth 0 (the harmonic Re((x + iy)³) has three, 120° apart).
view.CameraPosition = [5.0, 0.8, 2.2]
view.CameraFocalPoint = [0.0, 0.0, 0.0]
view.CameraViewUp = [0.0, 0.0, 1.0]
view.ResetCamera(False)
camera = view.GetActiveCamera()
camera.Dolly(1.4)
SaveScreenshot(picture, view, ImageResolution=[900, 800])
print("wrote", picture, "at t =", t_end)
