"""Pooled Membership Inference (PMI): lossless fingerprinting of neural networks.

A companion package to the book *pmi-tutorial*.  The modules follow the paper
(H. Wu, "Robust and Lossless Fingerprinting of Deep Neural Networks via Pooled Membership
Inference"): ``mmd`` (Eq. 7-11), ``clustering`` (Algorithm 1), ``pmi`` (Eq. 5-6 and one trial),
``batched`` (the same arithmetic for many trials at once), ``fingerprint`` (Eq. 13-15),
``stats`` (p-values), ``experiments`` (the paper's tables and the study beyond them) and
``files`` (result files).  Import them by name: ``from pmi_tutorial import fingerprint``.
"""

from importlib import import_module

__version__ = "0.1.0"

_SUBMODULES = (
    "attacks", "batched", "checkpoint", "clustering", "data", "experiments", "features", "files",
    "fingerprint", "membership", "ownership", "pools_file", "suspects", "verification",
    "mmd", "models", "plotting", "pmi", "profiles", "stats", "training",
)


def __getattr__(name):
    # Lazy: `import pmi_tutorial` stays cheap, `pmi_tutorial.fingerprint` works without an import.
    if name in _SUBMODULES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pmi_tutorial' has no attribute {name!r}")


__all__ = list(_SUBMODULES)
