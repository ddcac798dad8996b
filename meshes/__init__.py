"""Mesh builders: boxes, disks, mesh files, the unit circle and sphere; distributed over MPI.

The circle and the sphere are manifold meshes (cells of a lower dimension than the space).

:func:`build_mesh` is the one entry point; it reads the ``[domain]`` table of a case.
Errors (a missing or unreadable file) are detected on rank 0 and raised as the same
:class:`~wgf.cases.errors.UserError` on every rank, so that no rank is left waiting.
"""

from __future__ import annotations

# dolfinx_solver must be imported before dolfinx (it orders MPI ahead of the bindings).
import dolfinx_solver  # noqa: F401

import contextlib
import io
from pathlib import Path

import basix.ufl
import dolfinx.mesh
import numpy as np
import ufl
from mpi4py import MPI
from scipy.spatial import cKDTree

from wgf.cases.errors import UserError

_MESHIO_CELLS = {  # meshio name -> (dolfinx cell, node permutation into DOLFINx order)
    "line": ("interval", None),
    "triangle": ("triangle", None),
    "quad": ("quadrilateral", [0, 1, 3, 2]),
    "tetra": ("tetrahedron", None),
    "hexahedron": ("hexahedron", [0, 1, 3, 2, 4, 5, 7, 6]),
}


def build_mesh(domain: dict, comm: MPI.Comm) -> dolfinx.mesh.Mesh:
    """Build the mesh of a ``[domain]`` table.

    Args:
        domain: The resolved ``[domain]`` table of a case.
        comm: The communicator the mesh is distributed over.

    Returns:
        The distributed mesh.
    """
    shape = domain["shape"]
    if shape == "box":
        mesh = box_mesh(
            comm, domain["lower"], domain["upper"], domain["cells"], domain["cell_type"]
        )
    elif shape == "disk":
        mesh = disk_mesh(comm, domain["center"], domain["radius"], domain["h"])
    elif shape in MANIFOLD_CELLS:
        # Refined here, not by dolfinx.mesh.refine: new vertices must lie on the sphere.
        cells = manifold_cells(domain) * 2 ** (domain.get("refinements") or 0)
        return circle_mesh(comm, cells) if shape == "circle" else sphere_mesh(comm, cells)
    else:
        mesh = read_mesh(comm, Path(domain["path"]))
    return refine_uniformly(mesh, domain.get("refinements") or 0)


def coarser_domain(domain: dict) -> dict | None:
    """The ``[domain]`` table of a mesh that this one refines (every edge doubled), or None.

    One uniform refinement fewer, or, for a box without refinements, half the cells on
    every axis (all even).  A box's fine and coarse meshes are nested for simplices in 1-D
    and 2-D ("right" diagonals split alike at both levels); in 3-D they share the coarse
    vertices only.  None for the manifolds, a mesh file without refinements and an odd
    box.
    """
    if domain["shape"] in MANIFOLD_CELLS:
        return None
    if domain.get("refinements"):
        return {**domain, "refinements": domain["refinements"] - 1}
    cells = domain.get("cells")
    if domain["shape"] != "box" or not cells or any(n % 2 for n in cells):
        return None
    return {**domain, "cells": [n // 2 for n in cells]}


#: Default resolution of the manifold meshes (``domain.cells = [n]``): circle, n arcs;
#: sphere, n subdivisions of each icosahedron edge (20 n² triangles, 10 n² + 2 vertices).
MANIFOLD_CELLS = {"circle": 256, "sphere": 16}


def manifold_cells(domain: dict) -> int:
    """The n of a circle or sphere ``[domain]`` (``cells = [n]``, else the default)."""
    cells = domain.get("cells")
    return int(cells[0]) if cells else MANIFOLD_CELLS[domain["shape"]]


def refine_uniformly(mesh: dolfinx.mesh.Mesh, times: int) -> dolfinx.mesh.Mesh:
    """Split every edge of a simplex mesh ``times`` times (:func:`dolfinx.mesh.refine`).

    Each refinement halves every edge, so h → h/2 and the number of cells grows by 2ᵈ;
    the vertices of the coarse mesh stay, so the domain (a polygon read from a file) is
    the same at every level.  This is how a mesh that is only given as a file is refined
    for a convergence study (``wgf converge --refine h``).  The refined cells stay on the
    rank of their parent cell.

    Raises:
        UserError: For a quadrilateral or hexahedral mesh (DOLFINx refines simplices only).
    """
    if times <= 0:
        return mesh
    if mesh.topology.cell_type not in (
        dolfinx.mesh.CellType.interval,
        dolfinx.mesh.CellType.triangle,
        dolfinx.mesh.CellType.tetrahedron,
    ):
        raise UserError(
            f"case key 'domain.refinements': a {mesh.topology.cell_type.name} mesh cannot be "
            "refined (DOLFINx refines interval, triangle and tetrahedron meshes)"
        )
    for _ in range(times):
        mesh.topology.create_entities(1)
        mesh = dolfinx.mesh.refine(mesh)[0]
    return mesh


def box_mesh(
    comm: MPI.Comm,
    lower: list[float],
    upper: list[float],
    cells: list[int],
    cell_type: str = "simplex",
) -> dolfinx.mesh.Mesh:
    """Interval, rectangle or box mesh; ``cell_type`` is ``"simplex"`` or ``"hypercube"``."""
    dim = len(lower)
    if dim == 1:
        return dolfinx.mesh.create_interval(comm, cells[0], [lower[0], upper[0]])
    simplex = cell_type == "simplex"
    if dim == 2:
        ct = dolfinx.mesh.CellType.triangle if simplex else dolfinx.mesh.CellType.quadrilateral
        # "right" diagonals give right triangles: a non-obtuse mesh, so the P1
        # stiffness matrix is an M-matrix and lumped schemes keep ρ ≥ 0.
        return dolfinx.mesh.create_rectangle(
            comm, [lower, upper], cells, ct, diagonal=dolfinx.mesh.DiagonalType.right
        )
    ct = dolfinx.mesh.CellType.tetrahedron if simplex else dolfinx.mesh.CellType.hexahedron
    return dolfinx.mesh.create_box(comm, [lower, upper], cells, ct)


def disk_mesh(
    comm: MPI.Comm,
    center: list[float],
    radius: float,
    h: float,
) -> dolfinx.mesh.Mesh:
    """Triangle mesh of a disk, generated by gmsh on rank 0 and distributed."""
    import gmsh
    from dolfinx.io import gmsh as gmshio

    if not gmsh.isInitialized():
        gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    try:
        model = None
        if comm.rank == 0:
            gmsh.model.add("disk")
            disk = gmsh.model.occ.addDisk(center[0], center[1], 0.0, radius, radius)
            gmsh.model.occ.synchronize()
            gmsh.model.addPhysicalGroup(2, [disk], tag=1)
            gmsh.option.setNumber("Mesh.CharacteristicLengthMin", h)
            gmsh.option.setNumber("Mesh.CharacteristicLengthMax", h)
            gmsh.model.mesh.generate(2)
            model = gmsh.model
        data = gmshio.model_to_mesh(model, comm, 0, gdim=2)
    finally:
        gmsh.finalize()
    return data.mesh


def circle_mesh(comm: MPI.Comm, n: int) -> dolfinx.mesh.Mesh:
    """The unit circle S¹ ⊂ ℝ² as n equal chords (interval cells, gdim 2, tdim 1).

    Vertices x_k = (cos θ_k, sin θ_k), θ_k = 2πk/n, lie on the circle; cell k joins
    x_k and x_{k+1 mod n}.  UFL's ``grad`` on this mesh is the tangential derivative
    along the chords.  Built on rank 0 and distributed.
    """
    x, cells = np.empty((0, 2)), np.empty((0, 2), dtype=np.int64)
    if comm.rank == 0:
        theta = 2.0 * np.pi * np.arange(n) / n
        x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        k = np.arange(n, dtype=np.int64)
        cells = np.stack([k, (k + 1) % n], axis=1)
    element = basix.ufl.element("Lagrange", "interval", 1, shape=(2,))
    return dolfinx.mesh.create_mesh(comm, cells, ufl.Mesh(element), x)


def icosphere(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, 3) and triangles (20 n², 3) of the frequency-n geodesic icosphere.

    Each face of the icosahedron is split into n² triangles by the lattice of points
    (i a + j b + (n - i - j) c)/n, and every point is projected radially onto S² (its
    neighbours' shared edge points coincide, and are merged).  Every angle lies between
    54° and 72° for every n (so the cells are acute: the P1 transmissibilities are
    positive, as the fitted flux and the LJKO graph need), the edges differ by less than
    a factor 1.5, and h ≈ 1.32/n.
    """
    g = (1.0 + np.sqrt(5.0)) / 2.0
    corners = np.array(
        [[-1, g, 0], [1, g, 0], [-1, -g, 0], [1, -g, 0], [0, -1, g], [0, 1, g],
         [0, -1, -g], [0, 1, -g], [g, 0, -1], [g, 0, 1], [-g, 0, -1], [-g, 0, 1]],
        dtype=float,
    )  # fmt: skip
    faces = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
    )  # fmt: skip
    # Lattice (i, j) of one face, i + j ≤ n; its local triangles, up and down.
    ij = [(i, j) for i in range(n + 1) for j in range(n + 1 - i)]
    local = {p: k for k, p in enumerate(ij)}
    tris = [(local[i, j], local[i + 1, j], local[i, j + 1]) for i, j in ij if i + j < n]
    tris += [
        (local[i + 1, j], local[i + 1, j + 1], local[i, j + 1]) for i, j in ij if i + j < n - 1
    ]
    weights = np.array([[i, j, n - i - j] for i, j in ij], dtype=float) / n
    tris = np.array(tris, dtype=np.int64)
    points = np.concatenate([weights @ corners[f[[1, 2, 0]]] for f in faces])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    cells = np.concatenate([tris + k * len(ij) for k in range(len(faces))])
    # Merge the copies of the points on shared edges: they agree to round-off, and
    # distinct points are ≥ 0.8/n apart.  Each copy maps to the lowest index of its group.
    groups = cKDTree(points).query_ball_point(points, r=0.1 / n)
    representative = np.array([min(g) for g in groups])
    kept, renumber = np.unique(representative, return_inverse=True)
    return points[kept], renumber.ravel()[cells]


def sphere_mesh(comm: MPI.Comm, n: int) -> dolfinx.mesh.Mesh:
    """The unit sphere S² ⊂ ℝ³ as the frequency-n icosphere (:func:`icosphere`).

    Flat triangles (tdim 2) in ℝ³ (gdim 3): a manifold mesh, on which UFL's ``grad`` is
    the tangential gradient.  Built on rank 0 and distributed.
    """
    x, cells = np.empty((0, 3)), np.empty((0, 3), dtype=np.int64)
    if comm.rank == 0:
        x, cells = icosphere(n)
    element = basix.ufl.element("Lagrange", "triangle", 1, shape=(3,))
    return dolfinx.mesh.create_mesh(comm, cells, ufl.Mesh(element), x)


#: Topological dimension of meshio's cell families (the name without its node count).
_CELL_DIM = {
    "vertex": 0,
    "line": 1,
    "triangle": 2,
    "quad": 2,
    "polygon": 2,
    "tetra": 3,
    "hexahedron": 3,
    "wedge": 3,
    "pyramid": 3,
}
#: meshio names of second-order cells (more nodes than vertices; the rest are higher order).
_SECOND_ORDER = {
    "line3",
    "triangle6",
    "quad8",
    "quad9",
    "tetra10",
    "hexahedron20",
    "hexahedron27",
    "wedge15",
    "wedge18",
    "pyramid13",
    "pyramid14",
}


def _top_cell_type(path: Path, types: list[str]) -> str:
    """The one linear cell type of the top dimension among meshio's cell blocks.

    Lower-dimensional blocks (boundary lines, vertices: gmsh writes them for physical
    groups) are ignored.  A DOLFINx mesh has a single cell type, and its coordinate
    element here is linear, so reading only one of several top-dimensional types would
    silently drop part of the domain, and reading the vertices of curved cells would
    mis-place their mid-edge nodes: both are refused with the reason.

    Raises:
        UserError: No supported cells; mixed types; higher-order or unsupported cells.
    """
    family = {t: t.rstrip("0123456789") for t in types}
    dims = {t: _CELL_DIM.get(family[t], -1) for t in types}
    top = max(dims.values(), default=-1)
    if top < 1:
        raise UserError(f"mesh file '{path}' has no line, triangle, quad, tetra or hex cells")
    names = sorted({t for t in types if dims[t] == top})
    if len({family[t] for t in names}) > 1:
        listed = " and ".join(sorted({family[t] for t in names}))
        raise UserError(
            f"mesh file '{path}': mixed {listed} cells: DOLFINx meshes have one cell type; "
            "split or convert them (e.g. gmsh -format msh22 with recombination off)"
        )
    # Curved cells beside linear ones of the same family are refused too.
    name = next((t for t in names if t != family[t]), names[0])
    if name != family[name]:
        order = "second-order" if name in _SECOND_ORDER else "higher-order"
        raise UserError(
            f"mesh file '{path}': {name}: {order} cells are not supported, export linear cells"
        )
    if name not in _MESHIO_CELLS:
        raise UserError(
            f"mesh file '{path}': {name} cells are not supported "
            "(line, triangle, quad, tetra and hexahedron are)"
        )
    return name


def _read_on_root(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    import meshio

    if not path.is_file():
        raise UserError(f"mesh file '{path}' does not exist")
    # meshio prints its own complaint and may even call sys.exit: keep it quiet and
    # turn every failure into one line.
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            mesh = meshio.read(path)
    except (Exception, SystemExit) as err:
        why = str(err) if str(err) not in ("", "1") else sink.getvalue().strip()
        why = " ".join(why.split()) or type(err).__name__
        raise UserError(f"mesh file '{path}' cannot be read: {why}") from None
    name = _top_cell_type(path, [c.type for c in mesh.cells])
    cells = np.concatenate([c.data for c in mesh.cells if c.type == name]).astype(np.int64)
    tdim = _CELL_DIM[name]
    points = np.asarray(mesh.points, dtype=np.float64)
    gdim = tdim
    # Drop trailing coordinates that are identically zero (2-D meshes stored with z = 0).
    if points.shape[1] > gdim and np.any(points[:, gdim:] != 0.0):
        raise UserError(f"mesh file '{path}': a {tdim}-D mesh that is not flat is not supported")
    used = np.unique(cells)
    renumber = np.full(len(points), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    perm = _MESHIO_CELLS[name][1]
    cells = renumber[cells]
    if perm is not None:
        cells = cells[:, perm]
    return _MESHIO_CELLS[name][0], np.ascontiguousarray(points[used, :gdim]), cells


def read_mesh(comm: MPI.Comm, path: Path) -> dolfinx.mesh.Mesh:
    """Read a meshio-readable mesh file on rank 0 and distribute it."""
    payload, error = None, None
    if comm.rank == 0:
        try:
            payload = _read_on_root(path)
        except UserError as err:
            error = str(err)
    error = comm.bcast(error, root=0)
    if error is not None:
        raise UserError(error)
    cell_name, gdim = comm.bcast(
        (payload[0], payload[1].shape[1]) if payload is not None else None, root=0
    )
    if payload is not None:
        x, cells = payload[1], payload[2]
    else:
        nodes = {
            "interval": 2,
            "triangle": 3,
            "quadrilateral": 4,
            "tetrahedron": 4,
            "hexahedron": 8,
        }[cell_name]
        x, cells = np.empty((0, gdim)), np.empty((0, nodes), dtype=np.int64)
    element = basix.ufl.element("Lagrange", cell_name, 1, shape=(gdim,))
    return dolfinx.mesh.create_mesh(comm, cells, ufl.Mesh(element), x)


def bounding_box(mesh: dolfinx.mesh.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Global (lower, upper) corners of the mesh, identical on every rank."""
    gdim = mesh.geometry.dim
    x = mesh.geometry.x[:, :gdim]
    lower = x.min(axis=0) if len(x) else np.full(gdim, np.inf)
    upper = x.max(axis=0) if len(x) else np.full(gdim, -np.inf)
    mesh.comm.Allreduce(MPI.IN_PLACE, lower, op=MPI.MIN)
    mesh.comm.Allreduce(MPI.IN_PLACE, upper, op=MPI.MAX)
    return lower, upper
