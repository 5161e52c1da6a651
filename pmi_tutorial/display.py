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


class Table:
    """A results table that the book, Jupyter and Colab show as an HTML table (``_repr_html_``)
    and that prints as aligned text.

    ``header``: the column titles; ``rows``: lists of cells, each a string or a
    :class:`Mark` (a cell to single out, e.g. a paper value outside our range: coloured in HTML,
    followed by ``mark`` in both); ``groups``: an optional row above the header of
    ``(title, number of columns)``; ``caption``: a title; ``legend``: what the mark means.
    """

    def __init__(self, header, rows, caption: str = "", legend: str = "", groups=None, mark: str = "\u2020"):
        header = [str(h) for h in header]
        rows = [list(r) for r in rows]
        for i, r in enumerate(rows):
            if len(r) != len(header):
                raise ValueError(f"Table: row {i} has {len(r)} cells but the header {len(header)}; "
                                 "give every row one cell per column")
        if groups is not None and sum(span for _, span in groups) != len(header):
            raise ValueError(f"Table: the groups span {sum(span for _, span in groups)} columns, "
                             f"the header has {len(header)}; make the spans add up")
        self.header, self.rows, self.caption, self.legend = header, rows, caption, legend
        self.groups, self.mark = groups, mark

    def _text(self, cell) -> str:
        return f"{cell.text}{self.mark}" if isinstance(cell, Mark) else str(cell)

    def __str__(self) -> str:
        cells = [self.header] + [[self._text(c) for c in r] for r in self.rows]
        widths = [max(len(r[j]) for r in cells) for j in range(len(self.header))]
        lines = [self.caption] if self.caption else []
        for k, r in enumerate(cells):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        if self.legend:
            lines.append(f"{self.mark} {self.legend}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        out = ['<table class="pmi-table">']
        if self.caption:
            out.append(f"<caption>{escape(self.caption)}</caption>")
        out.append("<thead>")
        if self.groups:
            out.append("<tr>" + "".join(f'<th colspan="{span}">{escape(title)}</th>' for title, span in self.groups)
                       + "</tr>")
        out.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in self.header) + "</tr></thead><tbody>")
        for r in self.rows:
            tds = []
            for c in r:
                if isinstance(c, Mark):
                    tds.append(f'<td class="pmi-mark">{escape(c.text)}{escape(self.mark)}</td>')
                else:
                    tds.append(f"<td>{escape(str(c))}</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table>")
        if self.legend:
            out.append(f'<p class="pmi-table-legend"><span class="pmi-mark">{escape(self.mark)}</span> '
                       f"{escape(self.legend)}</p>")
        return "".join(out)


class Mark:
    """A table cell to single out (see :class:`Table`)."""

    def __init__(self, text):
        self.text = str(text)

    def __repr__(self) -> str:
        return f"Mark({self.text!r})"


class Folded:
    """``summary`` as one line with ``content`` (anything with ``_repr_html_``, or text) folded
    under it; printed as text, both."""

    def __init__(self, summary: str, content):
        self.summary, self.content = summary, content

    def __str__(self) -> str:
        return f"{self.summary}\n{self.content}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        inner = self.content._repr_html_() if hasattr(self.content, "_repr_html_") \
            else f"<pre>{escape(str(self.content))}</pre>"
        return f'<details class="pmi-folded"><summary>{escape(self.summary)}</summary>{inner}</details>'


def comparison_table(rows, caption: str = "", seeds: int | None = None) -> Table:
    """Our cells of one of the paper's tables beside the paper's, as a :class:`Table`.

    ``rows``: dicts with ``model, m, n, r_opt, acc_r_opt, mean_acc_r`` and the paper's
    ``paper_r_opt, paper_acc_r_opt, paper_mean_acc_r`` (``experiments.report.comparison``);
    with ``acc_r_opt_range`` and ``mean_acc_r_range`` (``experiments.forensics.compare``: the
    range over ``seeds`` seeds of the draws), the ranges get columns of their own and every paper
    value outside its range is marked.
    """
    from .experiments.tables import MODEL_TITLES

    rows = list(rows)
    ranged = bool(rows) and "acc_r_opt_range" in rows[0]
    if ranged and not seeds:
        raise ValueError("comparison_table: rows with ranges over seeds need seeds=N (how many seeds)")
    span = f"{seeds} seeds" if ranged else None

    def paper(value, rng, fmt):
        text = format(value, fmt)
        if rng is None:
            return text
        return text if rng[0] - 1e-9 <= value <= rng[1] + 1e-9 else Mark(text)

    header = ["model", "m", "n", "1/m", "ours", "paper", "ours"] + ([span] if ranged else []) + ["paper", "ours"] \
        + ([span] if ranged else []) + ["paper"]
    groups = [("", 4), ("r_opt", 2), ("acc_r_opt", 3 if ranged else 2), ("mean acc_r", 3 if ranged else 2)]
    out, last = [], (None, None)
    for r in rows:
        model = MODEL_TITLES.get(r["model"], r["model"])
        shown_model = model if model != last[0] else ""
        shown_m = str(r["m"]) if (model, r["m"]) != last else ""
        last = (model, r["m"])
        opt_rng = r.get("acc_r_opt_range") if ranged else None
        mean_rng = r.get("mean_acc_r_range") if ranged else None
        row = [shown_model, shown_m, str(r["n"]), f"{1 / r['m']:.2f}", str(r["r_opt"]), str(r["paper_r_opt"]),
               f"{r['acc_r_opt']:.2f}"]
        if ranged:
            row.append(f"{opt_rng[0]:.2f}\u2013{opt_rng[1]:.2f}")
        row += [paper(r["paper_acc_r_opt"], opt_rng, ".2f"), f"{r['mean_acc_r']:.3f}"]
        if ranged:
            row.append(f"{mean_rng[0]:.3f}\u2013{mean_rng[1]:.3f}")
        row.append(paper(r["paper_mean_acc_r"], mean_rng, ".3f"))
        out.append(row)
    legend = (f"the paper's number lies outside the range of our {seeds} seeds of the draws" if ranged else "")
    return Table(header, out, caption=caption, legend=legend, groups=groups)
