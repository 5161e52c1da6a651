"""What the tables call a suspect: the owner, or the title of its attack in the one registry
:data:`pmi_tutorial.attacks.ATTACKS` (an old name of :data:`pmi_tutorial.attack_names.ALIASES`
finds the title of its attack)."""

from __future__ import annotations

from ..attack_names import OWNER, OWNER_TITLE, ByKind, canonical
from ..attacks import ATTACKS


def title(kind: str) -> str:
    """What a table calls ``kind``: the owner, or the registry's title of the attack (an
    unknown kind is shown as it is)."""
    kind = canonical(kind)
    if kind == OWNER:
        return OWNER_TITLE
    return ATTACKS[kind].title if kind in ATTACKS else kind


def titles(kinds=None) -> dict:
    """``{kind: title}`` for the owner and ``kinds`` (default: every attack of the registry),
    answering to the old names too (:class:`ByKind`)."""
    kinds = list(ATTACKS) if kinds is None else [canonical(k) for k in kinds]
    return ByKind((k, title(k)) for k in [OWNER, *kinds])
