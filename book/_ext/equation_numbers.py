"""The book's equation numbers: the paper's equations carry the paper's numbers, the book's own
displays a scheme of their own.

* A display that is one of the paper's equations says so in its source with ``\\tag{N}`` (N the
  paper's number, e.g. ``\\tag{13}``; ``\\tag{10-11}`` for a display of two): the page shows
  "(N)" and ``{eq}`` references to it read "(N)".
* Every other labelled display is the book's own: it is numbered (B1), (B2), ... in the order of
  the book, a number no reader can take for one of the paper's.

Sphinx numbers labelled displays (1), (2), ... across the book; this extension records each
display's tag when a page is read (and removes the ``\\tag`` from the formula, so that MathJax
does not print the number twice), then replaces Sphinx's numbers once it has assigned them.
"""

from __future__ import annotations

import re

from docutils import nodes

OWN_PREFIX = "B"
_TAG = re.compile(r"\\tag\*?\{([^{}]*)\}")
_PAPER_TAG = re.compile(r"^\d+(?:\s*[-\u2013,]\s*\d+)?$")


def split_tag(latex: str) -> tuple[str, str | None]:
    """``(latex without its \\tag, the tag)``; the tag is None when there is none.

    >>> split_tag(r"acc_r - 1/m \\ge \\rho \\tag{13}")
    ('acc_r - 1/m \\\\ge \\\\rho', '13')
    """
    tags = _TAG.findall(latex)
    if not tags:
        return latex, None
    if len(tags) > 1:
        raise ValueError(f"a display has {len(tags)} \\tag{{}}s ({', '.join(tags)}); give it one, "
                         "e.g. \\tag{10-11} for a display of two of the paper's equations")
    tag = tags[0].strip()
    if not _PAPER_TAG.match(tag):
        raise ValueError(f"\\tag{{{tag}}}: a tag is the paper's equation number (digits, or a range "
                         "such as 10-11); leave the book's own displays untagged, they are numbered "
                         f"({OWN_PREFIX}1), ({OWN_PREFIX}2), ... by book/_ext/equation_numbers.py")
    return _TAG.sub("", latex).rstrip(), tag.replace(" ", "").replace("-", "\u2013")


def record_tags(app, doctree):
    """At read time: each labelled display's tag (or None), its ``\\tag`` removed from the formula."""
    env = app.env
    tags = env.pmi_equation_tags.setdefault(env.docname, {}) if hasattr(env, "pmi_equation_tags") else None
    if tags is None:
        env.pmi_equation_tags = {}
        tags = env.pmi_equation_tags.setdefault(env.docname, {})
    tags.clear()
    for node in doctree.findall(nodes.math_block):
        latex = node.astext()
        stripped, tag = split_tag(latex)
        if not node.get("label") or not node.get("ids"):
            continue  # unlabelled: unnumbered, and a \tag (if any) is left to MathJax
        if tag is not None:
            node.children = [nodes.Text(stripped)]
        tags[node["ids"][0]] = tag


def renumber(app, env):
    """After Sphinx numbered the displays: the paper's tags, and B1, B2, ... for the book's own."""
    tags = getattr(env, "pmi_equation_tags", {})
    own = []
    for docname, by_type in env.toc_fignumbers.items():
        numbers = by_type.get("displaymath")
        if not numbers:
            continue
        for ident, number in numbers.items():
            tag = tags.get(docname, {}).get(ident)
            if tag is not None:
                numbers[ident] = (tag,)
            else:
                own.append((tuple(number), docname, ident))
    for k, (_, docname, ident) in enumerate(sorted(own)):
        env.toc_fignumbers[docname]["displaymath"][ident] = (f"{OWN_PREFIX}{k + 1}",)
    return []


def purge(app, env, docname):
    getattr(env, "pmi_equation_tags", {}).pop(docname, None)


def merge(app, env, docnames, other):
    env.pmi_equation_tags = getattr(env, "pmi_equation_tags", {})
    for docname in docnames:
        if docname in getattr(other, "pmi_equation_tags", {}):
            env.pmi_equation_tags[docname] = other.pmi_equation_tags[docname]


def setup(app):
    app.connect("doctree-read", record_tags)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("env-get-updated", renumber, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
