"""W∗ρ on a P1 mesh: the interaction's first variation at every vertex.

With the vertex quadrature rule the mass of ρ_h is Σ_j m_j ρ_j δ_{x_j}, so

    (W∗ρ_h)(x_i) ≈ Σ_{j≠i} m_j ρ_j W_δ(|x_i − x_j|),   F_W = ½ Σ_i m_i ρ_i (W∗ρ_h)(x_i):

the free-space convolution over the domain (not a Neumann Poisson problem), and exactly
the interaction of the lumped measure, whose first variation it is.  Three ways to the sums
(:attr:`MeshConvolution.method`):

* ``"lattice"``: the vertices form a uniform tensor lattice (box meshes, any cells on the
  lattice's vertices).  The sum is then a discrete convolution of the nodal masses m_j ρ_j
  with the kernel sampled at the lattice offsets (0 at the origin), computed by FFT on the
  lattice zero-padded to 2n - 1 points per axis (no periodic images): the direct sum to
  round-off at O(N log N).  The kernel's transform is computed once (:meth:`prepare`);
  each evaluation is one scatter, one forward and one inverse real FFT.
* ``"direct"``: other meshes up to :data:`DIRECT_PAIRS` target–source pairs on a rank,
  :meth:`wgf.solvers.energy.interaction.Interaction.potential_at`'s direct sum.
* ``"mesh"``: other meshes above that, its particle-mesh FFT (O(N log N), its near-origin
  cells averaged, the self pair included by the grid rather than by the term below).

Distinct vertices are at least h_min apart, so a singular
kernel (log r, r^{-a} with a < d) needs no mollifier there; the self pair j = i, where W
is infinite, is replaced by the kernel's average over the ball of the vertex's own mass,
m_i ρ_i · W̄(a_i) with |B(a_i)| = m_i (a cell average as Carrillo–Chertock–Huang use).
Both the pair sum and the self term then converge with h (O(h² log h) for log r).
A term whose sums already take the self pair (attention: smooth, its value at 0 is finite
and part of the model, :attr:`includes_self_pair`) gets no such average.  On a manifold
mesh (the circle, the sphere) the distances are chords in the ambient space, which is
what attention's ⟨x, y⟩ = 1 - r²/2 asks for, and the balls of the self average have the
cells' dimension.
Every rank evaluates its own vertices (owned and ghost) against all vertices, gathered
once per evaluation: the result does not depend on the number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mpi4py import MPI
from scipy import fft

from wgf.solvers.energy import FreeEnergy

#: Above this many target–source pairs on a rank the sums go through the particle mesh.
DIRECT_PAIRS = 2e7
#: Gauss–Legendre points of the radial average W̄ (the integrand r^{d-1}W(r) is at worst
#: r log r or r^{d-1-a} at 0, which Gauss points, all inside (0, a), integrate well).
AVERAGE_POINTS = 64


def ball_average(W: Callable[[np.ndarray], np.ndarray], radius: np.ndarray, dim: int) -> np.ndarray:
    """W̄(a) = (1/|B(a)|) ∫_{B(a)} W(|z|) dz for each radius a (1-D: the interval [-a, a])."""
    nodes, weights = np.polynomial.legendre.leggauss(AVERAGE_POINTS)
    s, w = 0.5 * (nodes + 1.0), 0.5 * weights  # on (0, 1)
    # ∫_B W = |S^{d-1}| ∫_0^a W(r) r^{d-1} dr and |B| = |S^{d-1}| a^d/d: the ratio is
    # d ∫_0^1 W(a s) s^{d-1} ds.
    r = np.outer(radius, s)
    return dim * (W(r) * s ** (dim - 1)) @ w


#: Coordinates closer than this (relative to the extent) are one lattice line.
LATTICE_RTOL = 1e-9


class Lattice:
    """A uniform tensor lattice that holds every point exactly once.

    Attributes:
        lower: The lattice's lowest corner, (d,).
        h: Its spacing per axis, (d,).
        counts: Its points per axis (n_k + 1), (d,).
        index: The flat (C-order) lattice index of each point, (N,).
    """

    def __init__(
        self, lower: np.ndarray, h: np.ndarray, counts: tuple[int, ...], index: np.ndarray
    ):
        self.lower, self.h, self.counts, self.index = lower, h, counts, index

    @classmethod
    def find(cls, points: np.ndarray) -> Lattice | None:
        """The lattice of ``points`` (N, d), or None if they are not one."""
        lower, extent = points.min(axis=0), np.ptp(points, axis=0)
        if not np.all(extent > 0.0):
            return None
        # Lines: runs of sorted coordinates without a gap above the tolerance.
        counts = [
            1 + int(np.count_nonzero(np.diff(np.unique(x)) > LATTICE_RTOL * e))
            for x, e in zip(points.T, extent, strict=True)
        ]
        if int(np.prod(counts)) != len(points) or min(counts) < 2:
            return None
        h = extent / (np.array(counts) - 1)
        u = (points - lower) / h
        k = np.rint(u)
        if np.abs(u - k).max() > 1e-6:
            return None
        index = np.ravel_multi_index(tuple(k.astype(np.int64).T), counts)
        if len(np.unique(index)) != len(points):
            return None
        return cls(lower, h, tuple(counts), index)

    def offsets(self, padded: tuple[int, ...]) -> np.ndarray:
        """|o·h| on the padded grid (index o ≥ P/2 stands for o - P), shape ``padded``."""
        axes = [
            np.where(np.arange(p) < (p + 1) // 2, np.arange(p), np.arange(p) - p) for p in padded
        ]
        grids = np.meshgrid(*[a * h for a, h in zip(axes, self.h, strict=True)], indexing="ij")
        return np.sqrt(sum(g * g for g in grids))


class MeshConvolution:
    """W∗ρ_h at the vertices of a P1 space (see the module docstring).

    Args:
        energy: The free energy (its interaction term).
        coords: Coordinates of this rank's dofs, owned first, (n_local, d).
        masses: Lumped masses of this rank's dofs, (n_local,).
        n_owned: How many of them this rank owns.
        global_index: Their global indices (the owned ranges of the ranks, in rank order).
        comm: The mesh's communicator.
        method: ``"auto"`` (``"lattice"`` if the vertices are one, else ``"direct"`` up to
            :data:`DIRECT_PAIRS` pairs, else ``"mesh"``), or one of those to force it.
        cell_dim: The dimension of the cells (of the balls of the self-pair average): that
            of ``coords`` by default, less on a manifold mesh (the circle's 1, the sphere's 2).
    """

    def __init__(
        self,
        energy: FreeEnergy,
        coords: np.ndarray,
        masses: np.ndarray,
        n_owned: int,
        global_index: np.ndarray,
        comm: MPI.Comm,
        method: str = "auto",
        cell_dim: int | None = None,
    ) -> None:
        self.energy, self.comm, self.n_owned = energy, comm, n_owned
        self.masses = masses
        self.sources = np.concatenate(comm.allgather(coords[:n_owned]))
        # A ghost's own coordinates differ from its owner's in the last bits: taken from
        # the gathered sources, the self pair sits at distance exactly 0 and is skipped.
        self.targets = self.sources[global_index]
        self.source_masses = np.concatenate(comm.allgather(masses[:n_owned]))
        self.global_index = global_index
        self.lattice = Lattice.find(self.sources) if method in ("auto", "lattice") else None
        if method == "lattice" and self.lattice is None:
            raise ValueError("the vertices are not a uniform tensor lattice")
        pairs = len(coords) * len(self.sources)
        if self.lattice is not None:
            self.method = "lattice"
        elif method == "auto":
            self.method = "direct" if pairs <= DIRECT_PAIRS else "mesh"
        else:
            self.method = method
        self.cell_dim = coords.shape[1] if cell_dim is None else cell_dim
        self.self_term = np.zeros(len(coords))
        if self.method != "mesh" and not energy.interaction.includes_self_pair:
            self.self_term = self.self_coefficients()
        self._kernel_hat: np.ndarray | None = None

    def self_coefficients(self) -> np.ndarray:
        """m_i W̄(a_i), |B(a_i)| = m_i: the self pair's share of (W∗ρ_h)(x_i) per unit ρ_i."""
        dim = self.cell_dim
        unit_ball = {1: 2.0, 2: np.pi, 3: 4.0 * np.pi / 3.0}[dim]
        radius = (self.masses / unit_ball) ** (1.0 / dim)
        return self.masses * ball_average(self.energy.interaction.W, radius, dim)

    def prepare(self) -> None:
        """The FFT of the kernel on the padded lattice (once; ``"lattice"`` only)."""
        if self.lattice is None or self._kernel_hat is not None:
            return
        padded = tuple(fft.next_fast_len(2 * n - 1, real=True) for n in self.lattice.counts)
        r = self.lattice.offsets(padded)
        with np.errstate(all="ignore"):  # W(0) may be infinite: that entry is the self term's
            kernel = self.energy.interaction.W(r)
        kernel[(0,) * r.ndim] = 0.0
        self._padded = padded
        self._kernel_hat = fft.rfftn(kernel)

    def __call__(self, rho: np.ndarray) -> np.ndarray:
        """(W∗ρ_h) at this rank's dofs, from the nodal values ``rho`` (owned first)."""
        values = np.concatenate(self.comm.allgather(rho[: self.n_owned]))
        if self.lattice is not None:
            pairs = self._lattice_sum(self.source_masses * values)
        else:
            pairs = self.energy.interaction.potential_at(
                self.targets, self.sources, self.source_masses * values, 0.0, self.method
            )
        return pairs + self.self_term * rho

    def _lattice_sum(self, weights: np.ndarray) -> np.ndarray:
        """Σ_{j≠i} w_j W(|x_i − x_j|) at this rank's dofs, by the padded FFT."""
        self.prepare()
        assert self.lattice is not None and self._kernel_hat is not None
        grid = np.zeros(self.lattice.counts)
        grid.ravel()[self.lattice.index] = weights
        field = fft.irfftn(fft.rfftn(grid, s=self._padded) * self._kernel_hat, s=self._padded)
        inside = field[tuple(slice(0, n) for n in self.lattice.counts)]
        return inside.ravel()[self.lattice.index[self.global_index]]

    def energy_of(self, rho: np.ndarray, potential: np.ndarray | None = None) -> float:
        """½ Σ_i m_i ρ_i (W∗ρ_h)(x_i) over all vertices; ``potential``: W∗ρ_h if known."""
        potential = self(rho) if potential is None else potential
        own = slice(0, self.n_owned)
        local = 0.5 * float(self.masses[own] @ (rho[own] * potential[own]))
        return self.comm.allreduce(local, op=MPI.SUM)
