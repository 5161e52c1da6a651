"""How the chapters show a result file's provenance and the active profile: one compact line,
the details folded.

``provenance(result)`` returns an object that Jupyter, Colab and the book show as a single
line (command, profile, commit, date, hardware) with the full record folded under it in an
HTML ``<details>`` block; printed as text it is the line alone.  ``profile_line(profile)`` does
the same for the profile a chapter runs in: its name and how many settings it reduces, with the
full banner (:meth:`pmi_tutorial.profiles.Profile.banner`) folded.
"""

from __future__ import annotations

from html import escape


class Provenance:
    """A one-line summary with folded details (``_repr_html_`` for notebooks, ``str`` for text)."""

    def __init__(self, line: str, details: str):
        self.line = line
        self.details = details

    def __str__(self) -> str:
        return self.line

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return (f'<details class="pmi-provenance"><summary>{escape(self.line)}</summary>'
                f"<pre>{escape(self.details)}</pre></details>")


def _device(hw: dict) -> str:
    if hw.get("gpu"):
        return str(hw["gpu"])
    cpus = hw.get("cpu_count")
    return f"{hw.get('processor') or 'CPU'}" + (f" ({cpus} CPUs)" if cpus else "")


def provenance_line(result: dict) -> str:
    """``command · profile P · commit C · date · hardware`` of a result file's latest run."""
    if not isinstance(result, dict):
        raise ValueError(f"provenance: expected a result file's dict, got {type(result).__name__}")
    runs = result.get("runs") or ([result["provenance"]] if result.get("provenance") else [])
    if not runs:
        raise ValueError("provenance: the result has neither 'runs' nor 'provenance'; "
                         "pass a result file written by pmi_tutorial")
    run = runs[-1]
    settings = result.get("settings") or {}
    profile = (settings.get("profile") or {}).get("name") if isinstance(settings.get("profile"), dict) \
        else settings.get("profile")
    profile = profile or result.get("profile") or settings.get("name") or "?"
    parts = [str(run.get("command", "?")), f"profile {profile}",
             f"commit {str(run.get('git_commit', '?'))[:12]}",
             str(run.get("started", "?"))[:10], _device(run.get("hardware") or {})]
    if len(runs) > 1:
        parts.append(f"{len(runs)} runs")
    return " · ".join(parts)


def provenance(result: dict, details: str | None = None) -> Provenance:
    """The result's provenance as one line with ``details`` folded (default: every run, every
    model and every reduced setting, :func:`pmi_tutorial.experiments.report.provenance_text`)."""
    line = provenance_line(result)
    if details is None:
        from .experiments.report import provenance_text

        details = provenance_text(result)
    return Provenance(line, details)


def profile_line(profile=None) -> Provenance:
    """The active profile (default: ``PMI_PROFILE``, :func:`pmi_tutorial.profiles.get_profile`)
    as one line, ``Profile quick (PMI_PROFILE): 6 settings reduced from the paper's``, with its full
    banner folded; what every chapter shows after its objectives."""
    from .profiles import Profile, get_profile

    if profile is None:
        profile = get_profile()
    if not isinstance(profile, Profile):
        raise ValueError(f"profile_line: expected a pmi_tutorial.profiles.Profile, got {type(profile).__name__}; "
                         "pass get_profile() or nothing")
    k = len(profile.reduced)
    what = (f"{k} setting{'s' if k != 1 else ''} reduced from the paper's" if k
            else "the paper's settings")
    return Provenance(f"Profile {profile.name} (PMI_PROFILE): {what}",
                      profile.banner())
