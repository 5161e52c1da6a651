"""The course editions of the book: exercises numbered per chapter, solutions shown or hidden.

sphinx-exercise builds the exercises and solutions; its setting ``hide_solutions`` (in
``_config.yml``, ``sphinx.config``; ``scripts/course.py`` overrides it for the student edition)
chooses the edition:

* ``hide_solutions: false``: the instructor edition, every solution shown (folded);
* ``hide_solutions: true``: the student edition, no solution text and no solution code.

Two things sphinx-exercise does not do itself, done here:

* With ``hide_solutions`` on, a *gated* solution (``{solution-start}`` ... ``{solution-end}``,
  used when a solution holds code cells) loses only its opening text; the code cells and a
  stray end node stay. Here the whole gated block, start to end, is removed.
* Exercise numbers restart at 1 in every chapter (Sphinx numbers them through the whole book
  unless the table of contents is numbered), so "Exercise 2" in a chapter is the second
  exercise of that chapter, as in its reader notebook and its assignment.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.transforms import SphinxTransform


class _HiddenSolutionStart(nodes.Element):
    """Marks where a gated solution began in the student edition; removed with its block."""


def _solution_start_directive():
    from sphinx_exercise.directive import SolutionStartDirective

    class GatedSolutionStart(SolutionStartDirective):
        def run(self):
            result = super().run()
            if self.env.app.config.hide_solutions:
                return [_HiddenSolutionStart()]
            return result

    return GatedSolutionStart


class RemoveHiddenGatedSolutions(SphinxTransform):
    """Student edition: drop every gated solution from its start marker to its end node."""

    default_priority = 5  # before sphinx-exercise's checks and merge of gated solutions

    def apply(self):
        from sphinx_exercise.nodes import solution_end_node

        if not self.app.config.hide_solutions:
            return
        for start in list(self.document.findall(_HiddenSolutionStart)):
            parent = start.parent
            i = parent.index(start)
            j = i
            while j < len(parent.children) and not isinstance(parent.children[j], solution_end_node):
                j += 1
            if j == len(parent.children):
                raise ValueError(f"{self.env.docname}: a {{solution-start}} has no {{solution-end}} "
                                 "in the same section; close it before the next heading")
            for child in parent.children[i:j + 1]:
                parent.remove(child)
        # sphinx-exercise's own structure check counts the gated directives it saw; they are gone
        registry = getattr(self.env, "sphinx_exercise_gated_registry", {})
        entry = registry.get(self.env.docname)
        if entry and entry.get("type") == "solution":
            registry.pop(self.env.docname)


def renumber_exercises_per_chapter(app, env):
    """Exercise numbers restart at 1 in each document (runs after Sphinx assigned them)."""
    for docname, by_type in env.toc_fignumbers.items():
        numbers = by_type.get("exercise")
        if not numbers:
            continue
        ordered = sorted(numbers, key=lambda ident: numbers[ident])
        by_type["exercise"] = {ident: (k + 1,) for k, ident in enumerate(ordered)}
    return []


def setup(app):
    app.setup_extension("sphinx_exercise")
    app.add_node(_HiddenSolutionStart)
    app.add_directive("solution-start", _solution_start_directive(), override=True)
    app.add_transform(RemoveHiddenGatedSolutions)
    app.connect("env-get-updated", renumber_exercises_per_chapter, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
