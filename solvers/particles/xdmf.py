"""A ParaView time series of moving particles: XDMF 3 Polyvertex grids + one HDF5 file.

Written by rank 0 with h5py.  ``<stem>.h5`` holds ``/weights`` (N,) and
``/connectivity`` (N, 1) (one vertex cell per particle) once, and per snapshot
``/positions/<k>`` (N, 3) (padded with zeros below 3-D, as XDMF's ``XYZ`` geometry wants;
above 3-D — tokens on S^{d-1}, d > 3 — the first three coordinates, a projection)
and ``/density/<k>`` (N,), the solver's density estimate at each particle;
``<stem>.xdmf`` is a temporal collection of Polyvertex grids, one per snapshot, with
``density`` and ``weight`` as point attributes.  ``density`` comes first, so ParaView
colours by it by default: the weights are constant in time (equal, for most solvers) and
say nothing about where the mass is.  The XML is rewritten after every
snapshot, so the file is valid whenever a run stops.  ParaView opens it with the
*Xdmf3ReaderS* reader.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

_GRID = """\
      <Grid Name="particles_{k}" GridType="Uniform">
        <Time Value="{t!r}"/>
        <Topology TopologyType="Polyvertex" NumberOfElements="{n}" NodesPerElement="1">
          <DataItem Dimensions="{n} 1" NumberType="Int" Precision="8" Format="HDF">\
{h5}:/connectivity</DataItem>
        </Topology>
        <Geometry GeometryType="XYZ">
          <DataItem Dimensions="{n} 3" NumberType="Float" Precision="8" Format="HDF">\
{h5}:/positions/{k}</DataItem>
        </Geometry>
        <Attribute Name="density" AttributeType="Scalar" Center="Node">
          <DataItem Dimensions="{n}" NumberType="Float" Precision="8" Format="HDF">\
{h5}:/density/{k}</DataItem>
        </Attribute>
        <Attribute Name="weight" AttributeType="Scalar" Center="Node">
          <DataItem Dimensions="{n}" NumberType="Float" Precision="8" Format="HDF">\
{h5}:/weights</DataItem>
        </Attribute>
      </Grid>
"""


class PolyvertexSeries:
    """Append particle snapshots to an XDMF/HDF5 pair (use on rank 0 only).

    Args:
        path: The ``.xdmf`` file; the heavy data go to the same name with ``.h5``.
        weights: The particle weights (constant in time).
    """

    def __init__(self, path: Path, weights: np.ndarray) -> None:
        self.path = Path(path)
        self.h5_path = self.path.with_suffix(".h5")
        self.n = len(weights)
        self.times: list[float] = []
        self.h5 = h5py.File(self.h5_path, "w")
        self.h5.create_dataset("weights", data=np.asarray(weights, dtype=float))
        # One vertex cell per particle, so ParaView's default representation shows them.
        self.h5.create_dataset("connectivity", data=np.arange(self.n, dtype=np.int64)[:, None])
        self.h5.create_group("positions")
        self.h5.create_group("density")
        self._write_xml()

    def append(self, t: float, positions: np.ndarray, density: np.ndarray) -> None:
        """Add the positions (N, d) and the densities at them (N,) at time t.

        The heavy data are flushed before the XML names them, so a reader never sees a
        grid whose arrays are missing.
        """
        xyz = np.zeros((self.n, 3))
        shown = min(3, positions.shape[1])
        xyz[:, :shown] = positions[:, :shown]
        k = str(len(self.times))
        self.h5["positions"].create_dataset(k, data=xyz)
        self.h5["density"].create_dataset(k, data=np.asarray(density, dtype=float))
        self.h5.flush()
        self.times.append(float(t))
        self._write_xml()

    def _write_xml(self) -> None:
        grids = "".join(
            _GRID.format(k=k, t=t, n=self.n, h5=self.h5_path.name) for k, t in enumerate(self.times)
        )
        xml = (
            '<?xml version="1.0"?>\n<Xdmf Version="3.0">\n  <Domain>\n'
            '    <Grid Name="particles" GridType="Collection" CollectionType="Temporal">\n'
            f"{grids}    </Grid>\n  </Domain>\n</Xdmf>\n"
        )
        tmp = self.path.with_suffix(".xdmf.tmp")
        tmp.write_text(xml)
        tmp.replace(self.path)

    def close(self) -> None:
        """Close the HDF5 file."""
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None
