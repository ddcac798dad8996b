"""wgf — Wasserstein gradient flows solved two ways and compared.

The package ties the numerical folders together: :mod:`wgf.cases` (what to solve),
:mod:`wgf.meshes`, :mod:`wgf.solvers` (how), :mod:`wgf.postprocess` (what came out).  This
package holds the parts they share at run time: the time loop (:mod:`wgf.run`), the
results file writer and the command line.  Scripts and notebooks use :mod:`wgf.api`
(``from wgf import api``); its names are not re-exported here, because ``wgf.run`` is
the driver module.
"""

__version__ = "0.1.0"
