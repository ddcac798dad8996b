"""W∗ρ on a P1 mesh: the interaction's first variation at every vertex.

With the vertex quadrature rule the mass of ρ_h is Σ_j m_j ρ_j δ_{x_j}, so

    (W∗ρ_h)(x_i) ≈ Σ_{j≠i} m_j ρ_j W_δ(|x_i − x_j|),   F_W = ½ Σ_i m_i ρ_i (W∗ρ_h)(x_i):

the free-space convolution over the domain (not a Neumann Poisson problem), and exactly
the interaction of the lumped measure, whose first variation it is.  The sums are
:meth:`wgf.solvers.energy.FreeEnergy.interaction_potential`'s: direct for small meshes,
the particle-mesh FFT (O(N log N)) above :data:`DIRECT_PAIRS` pairs.  A singular kernel
(log r, r^{-a}) is mollified at the mesh size, δ = h_min: its error, W'(r)δ²/(2r) for
r ≫ δ, integrates to O(h² log h) against a bounded density, so W∗ρ_h converges with h.
Every rank evaluates its own vertices (owned and ghost) against all vertices, gathered
once per evaluation: the result does not depend on the number of ranks.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from wgf.solvers.energy import FreeEnergy

#: Above this many target–source pairs on a rank the sums go through the particle mesh.
DIRECT_PAIRS = 2e7


class MeshConvolution:
    """W∗ρ_h at the vertices of a P1 space (see the module docstring).

    Args:
        energy: The free energy (its interaction term).
        coords: Coordinates of this rank's dofs, owned first, (n_local, d).
        masses: Lumped masses of this rank's dofs, (n_local,).
        n_owned: How many of them this rank owns.
        h: The smallest cell diameter (the mollifier of a singular kernel).
        comm: The mesh's communicator.
    """

    def __init__(
        self,
        energy: FreeEnergy,
        coords: np.ndarray,
        masses: np.ndarray,
        n_owned: int,
        h: float,
        comm: MPI.Comm,
    ) -> None:
        self.energy, self.comm, self.n_owned = energy, comm, n_owned
        self.targets, self.masses = coords, masses
        self.sources = np.concatenate(comm.allgather(coords[:n_owned]))
        self.source_masses = np.concatenate(comm.allgather(masses[:n_owned]))
        self.delta = energy.interaction_mollifier(h)
        pairs = len(coords) * len(self.sources)
        self.method = "direct" if pairs <= DIRECT_PAIRS else "mesh"

    def __call__(self, rho: np.ndarray) -> np.ndarray:
        """(W∗ρ_h) at this rank's dofs, from the nodal values ``rho`` (owned first)."""
        values = np.concatenate(self.comm.allgather(rho[: self.n_owned]))
        return self.energy.interaction_potential(
            self.targets, self.sources, self.source_masses * values, self.delta, self.method
        )

    def energy_of(self, rho: np.ndarray, potential: np.ndarray | None = None) -> float:
        """½ Σ_i m_i ρ_i (W∗ρ_h)(x_i) over all vertices; ``potential``: W∗ρ_h if known."""
        potential = self(rho) if potential is None else potential
        own = slice(0, self.n_owned)
        local = 0.5 * float(self.masses[own] @ (rho[own] * potential[own]))
        return self.comm.allreduce(local, op=MPI.SUM)
