"""The names of the suspects in result files: the owner and the attacks of the one registry
:data:`pmi_tutorial.attacks.ATTACKS` (chapters "Robustness" and "Beyond the paper").

Result files written before the registry name four attacks otherwise (the false-positive study
``pmi-tutorial-beyond`` and Dataset Inference on its models): :data:`ALIASES` maps each old name
to the registry's name of the same attack, and :func:`upgrade` applies it to a result file as it
is read (``files.check_result``, which every reader of a result file goes through), so the code
above speaks the registry's names only.  An old name still finds its entry in what was read
(:class:`ByKind`), so ``summary["attacks"]["distill"]`` and ``summary["attacks"]["distill_same"]``
are the same cell.

This module imports nothing (``files`` reads it); the titles are in
:mod:`pmi_tutorial.experiments.kinds`, beside the registry.
"""

from __future__ import annotations

OWNER = "owner"
OWNER_TITLE = "owner (no attack)"

#: old name -> the registry's name of the same attack (pruning at 50%, int8 weights,
#: distillation into the same architecture, probabilities only)
ALIASES = {"prune": "prune50", "quantize": "int8", "distill": "distill_same",
           "logprob": "probabilities"}

#: the result formats written with the old names (other formats are read unchanged: there
#: ``logprob`` is a feature, the log-probabilities, not an attack)
LEGACY_FORMATS = ("pmi-tutorial-beyond", "pmi-tutorial-dataset-inference")

#: where a suspect's kind sits in those files: the value of these keys (a name or a list of
#: names) and the keys of the dicts under these keys
_NAME_KEYS = ("kind", "attacks", "kinds")
_DICT_KEYS = ("attacks", "verdicts")


def canonical(name):
    """The registry's name for ``name`` (itself unless it is an old name of :data:`ALIASES`)."""
    return ALIASES.get(name, name) if isinstance(name, str) else name


class ByKind(dict):
    """A dict keyed by suspect kind that also answers to an old name of :data:`ALIASES`."""

    def __missing__(self, key):
        if isinstance(key, str) and key in ALIASES and ALIASES[key] in self:
            return self[ALIASES[key]]
        raise KeyError(key)

    def __contains__(self, key):
        return dict.__contains__(self, key) or (
            isinstance(key, str) and dict.__contains__(self, ALIASES.get(key, key)))

    def get(self, key, default=None):
        return self[key] if key in self else default


def _upgrade(obj):
    if isinstance(obj, list):
        return [_upgrade(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key in _NAME_KEYS and isinstance(value, str):
            value = canonical(value)
        elif key in _NAME_KEYS and isinstance(value, list):
            value = [canonical(v) for v in value]
        value = _upgrade(value)
        if key in _DICT_KEYS and isinstance(value, dict):
            value = ByKind((canonical(k), v) for k, v in value.items())
        out[key] = value
    return out


def upgrade(result: dict) -> dict:
    """``result`` with the registry's names where a file of :data:`LEGACY_FORMATS` has an old
    one (a new dict; the others are returned as they are)."""
    if not isinstance(result, dict) or result.get("format") not in LEGACY_FORMATS:
        return result
    return _upgrade(result)
