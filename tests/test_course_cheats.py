"""The hidden parts of every assignment (all nine), graded on behaviour: three cheats score
zero on them, an honest near-miss keeps part of them, the solution all of them.

The cheats are the three of the course's review: rebind ``np.isclose`` and answer zeros; call
the package function the exercise forbids; hard-code what the public check expects. Each runs
through :func:`scripts.coursework.behaviour.run_parts`, as ``make grade`` runs it (the
submission's cells in a sandboxed process, the references computed by the grader)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts import course
from scripts.coursework import behaviour, forks

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
METHOD = ["membership_inference", "mmd", "clustering", "pmi_end_to_end", "robustness", "reproduce_tables"]
ASSIGNMENTS = ["intro", *METHOD, "calibrated_test", "dataset_inference"]
# the name each hard-coding cheat copies from a run of the solution: what the public check sees
PUBLIC_NAME = {"intro": "accuracies", "calibrated_test": "null_pvalues", "dataset_inference": "t_and_df"}


def _public_value(chapter):
    """The value the hard-coding cheat copies: for mmd the public check's comparison value, for
    the others the solution's answer on the exercise's own inputs (run here, in the test)."""
    if chapter not in PUBLIC_NAME:
        from pmi_tutorial import mmd

        _X, _Y = np.random.default_rng(11).standard_normal((2, 30, 4))
        return repr(float(mmd.mmd2_unbiased(_X, _Y)))
    e = _exercise(chapter)
    ns = {}
    exec(course.setup_code(BOOK / f"{chapter}.md") + "\n" + "\n".join(e.solution), ns)
    return repr(np.asarray(ns[PUBLIC_NAME[chapter]], dtype=float).tolist())


FORBIDDEN_CALL = {
    "intro": "def accuracy_by_shift(shifts):\n    out = []\n    for shift in shifts:\n"
             "        g = np.random.default_rng(0)\n        Q = g.standard_normal((2000, 10))\n"
             "        P = g.standard_normal((2000, 10))\n        P[:, 0] += shift\n"
             "        out.append(fingerprint.class_accuracy(P, Q, m=3, n=100, trials=200, seed=0))\n"
             "    return out\n\n\naccuracies = accuracy_by_shift([0.0, 0.1, 0.2, 0.4])\n",
    "calibrated_test": "def permutation_pvalue(P, Q, B, seed):\n    g = np.random.default_rng(seed)\n"
                       "    pooled = np.concatenate([P, Q])\n    null = []\n    for _ in range(B):\n"
                       "        x = g.permutation(pooled)\n        null.append(x[:len(P)].mean() - x[len(P):].mean())\n"
                       "    return stats.permutation_pvalue(null, P.mean() - Q.mean())\n\n\n"
                       "g = np.random.default_rng(1)\nnull_pvalues = np.array([permutation_pvalue("
                       "g.standard_normal(50), g.standard_normal(50), 199, k) for k in range(200)])\n",
    "dataset_inference": "from scipy.stats import ttest_ind\n\n\ndef welch(a, b):\n"
                         "    r = ttest_ind(a, b, equal_var=False)\n    return float(r.statistic), float(r.df)\n\n\n"
                         "g = np.random.default_rng(0)\nt_and_df = welch(g.normal(0.3, 1, 40), g.normal(0, 2, 60))\n",
    "membership_inference": "from scipy.stats import ks_2samp\n\n\ndef best_advantage(a, b):\n"
                            "    return float(ks_2samp(b, a, alternative='greater').statistic)\n",
    "mmd": "def unbiased_linear_mmd2(X, Y):\n    return mmd.mmd2_unbiased(X, Y)\n\n\n"
           "g = np.random.default_rng(0)\nnull_mean = np.mean([unbiased_linear_mmd2(g.standard_normal((50, 5)), "
           "g.standard_normal((50, 5))) for _ in range(500)])\n",
    "clustering": "def two_clusters_by_tree(D):\n"
                  "    return sorted(map(sorted, final_clusters(agglomerative(D, 'single'))), key=lambda g: (len(g), g))\n\n\n"
                  "groups = two_clusters_by_tree(squareform(pdist(np.random.default_rng(3).standard_normal((10, 2)))))\n",
    "pmi_end_to_end": "def pmi_guess(F):\n    G1, G2 = final_clusters(agglomerative(pairwise_mmd(normalize_features(F))))\n"
                      "    return (G1 if len(G1) == 1 else G2)[0]\n",
    "robustness": "import copy\n\n\ndef prune_per_layer(model, rate):\n"
                  "    return attacks.prune(copy.deepcopy(model), rate)\n",
    "reproduce_tables": "from scipy.stats import binom\n\n\ndef chance_max(a, m, t=100, classes=10, draws=100_000, seed=0):\n"
                        "    return float(1 - binom.cdf(np.ceil(a * t) - 1, t, 1 / m) ** classes)\n\n\n"
                        "p_040, p_050 = chance_max(0.40, 3), chance_max(0.50, 3)\n",
}

HARD_CODED = {
    "intro": "accuracies = {public}\n\n\ndef accuracy_by_shift(shifts):\n"
             "    table = dict(zip([0.0, 0.1, 0.2, 0.4], accuracies))\n"
             "    return [table.get(s, 1 / 3) for s in shifts]\n",
    "calibrated_test": "null_pvalues = np.array({public})\n\n\ndef permutation_pvalue(P, Q, B, seed):\n"
                       "    return 0.5\n",
    "dataset_inference": "t_and_df = {public}\n\n\ndef welch(a, b):\n    return t_and_df\n",
    "membership_inference": "def best_advantage(a, b):\n    return 1.0 if list(a) == [0.1, 0.2] else 0.0\n",
    "mmd": "def unbiased_linear_mmd2(X, Y):\n    return {public}\n\n\nnull_mean = 0.0\n",
    "clustering": "groups = [[3], [0, 1, 2, 4, 5, 6, 7, 8, 9]]\n\n\ndef two_clusters_by_tree(D):\n    return groups\n",
    "pmi_end_to_end": "_answers = iter([0, 1, 2])\n\n\ndef pmi_guess(F):\n    return next(_answers, 0)\n",
    "robustness": "import copy\n\nimport torch\n\n\ndef prune_per_layer(model, rate):\n    model = copy.deepcopy(model)\n"
                  "    for w in attacks.prunable_weights(model):\n        with torch.no_grad():\n"
                  "            w.view(-1)[: round(0.5 * w.numel())] = 0\n    return model\n",
    "reproduce_tables": "def chance_max(a, m, t=100, classes=10, draws=100_000, seed=0):\n"
                        "    return 1.0 if a <= 0 else 0.0 if a > 1 else 0.5\n\n\np_040, p_050 = 0.6, 0.5\n",
}

# an honest mistake in the solution: (right line, wrong line, the hidden parts it keeps)
NEAR_MISS = {
    "intro": ("    for shift in shifts:\n        g = np.random.default_rng(0)\n",
              "    g = np.random.default_rng(0)\n    for shift in shifts:\n", {"one_shift"}),  # one generator
    "calibrated_test": ("199, k)", "199, 0)", {"pvalue", "extremes"}),  # the same seed for every pair
    "dataset_inference": ("va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)", "va**2 / len(a) + vb**2 / len(b)",
                          {"statistic"}),  # n, not n - 1, in the degrees of freedom
    "membership_inference": ("last_of_tie = np.r_[values[1:] != values[:-1], True]",
                             "last_of_tie = np.ones(len(values), bool)", {"no_ties"}),  # ties split
    "mmd": ("(np.sum(D.sum(0) ** 2) - np.sum(D**2)) / (n * (n - 1))", "np.sum(D.sum(0) ** 2) / n**2",
            {"memory"}),  # the biased estimate
    "clustering": ("key=lambda g: (len(g), g)", "key=lambda g: (-len(g), g)",
                   {"single_linkage", "groups"}),  # the larger group first
    "pmi_end_to_end": ("Z = (F - mean) / np.where(sd > 0, sd, 1.0)", "Z = F",
                       {"guess", "one_component"}),  # no normalisation
    "robustness": ("    model = copy.deepcopy(model)\n", "", {"per_layer", "smallest"}),  # prunes the original
    "reproduce_tables": ("size=(draws, classes)", "size=(draws, 10)", {"closed_form", "values"}),  # ten classes
}


def _exercise(chapter):
    found = [e for e in course.autograded(BOOK / f"{chapter}.md") if e.parts]
    assert len(found) == 1, f"{chapter}: {len(found)} exercises with hidden parts"
    return found[0]


def _zeros(e):
    """The placeholder with zeros for answers, after rebinding numpy's comparisons."""
    code = "\n\n".join(course.prompt(c) for c in e.solution)
    code = re.sub(r"^(\s+)\.\.\.$", r"\1return 0", code, flags=re.M)
    code = re.sub(r"= \.\.\.", "= 0", code).replace("..., ...", "0, 0")
    return ("np.isclose = lambda *a, **k: True\nnp.allclose = lambda *a, **k: True\n"
            "np.array_equal = lambda *a, **k: True\n\n" + code)


def _grade(chapter, cells, seed=7):
    e = _exercise(chapter)
    setup = course.setup_code(BOOK / f"{chapter}.md")
    # as in a student notebook: the chapter's imports (its setup cell), then the answer
    results = behaviour.run_parts(course.parts_spec(BOOK / f"{chapter}.md", e), setup, [setup] + cells, seed)
    return {r.name: r for r in results}


def test_every_assignment_has_three_or_more_hidden_parts():
    autograded = {md.stem for md in course.mk.chapters(BOOK) if course.autograded(md)}
    assert autograded == set(ASSIGNMENTS)  # a new assignment joins the cheats below
    for chapter in ASSIGNMENTS:
        sp = course.parts_spec(BOOK / f"{chapter}.md", _exercise(chapter))
        assert len(sp.parts) >= 3, chapter
        assert all(p.description for p in sp.parts)
    assert set(ASSIGNMENTS) == set(FORBIDDEN_CALL) == set(HARD_CODED) == set(NEAR_MISS)


@pytest.mark.parametrize("chapter", ASSIGNMENTS)
def test_cheats_score_zero_and_a_near_miss_keeps_part(chapter):
    e = _exercise(chapter)
    solution = _grade(chapter, list(e.solution))
    assert all(r.score == 1 for r in solution.values()), {k: r.message for k, r in solution.items()}

    cheats = {"monkeypatch and zeros": [_zeros(e)],
              "the forbidden function": [FORBIDDEN_CALL[chapter]],
              "the public check's value": [HARD_CODED[chapter].replace("{public}", _public_value(chapter))]}
    graded = {what: _grade(chapter, cells) for what, cells in cheats.items()}
    for what, got in graded.items():
        assert sum(r.score for r in got.values()) == 0, (what, {k: r.score for k, r in got.items()})
        assert all(r.message for r in got.values()), what  # each failed part says why
    assert all("not to use" in r.message for r in graded["the forbidden function"].values())

    right, wrong, keeps = NEAR_MISS[chapter]
    cells = [c.replace(right, wrong) for c in e.solution]
    assert cells != list(e.solution), "the near-miss changes nothing"
    got = _grade(chapter, cells)
    assert {k for k, r in got.items() if r.score == 1} == keeps, {k: (r.score, r.message) for k, r in got.items()}


def test_the_cheats_really_pass_the_public_check():
    """The cheats are the real thing: each passes the public check the student runs (checked
    in the student's own process: the chapter's setup, the cheat and the public check run one
    after the other in one namespace, as in the student's notebook), yet scores nothing hidden
    (above)."""
    for chapter in ("mmd", "pmi_end_to_end", "reproduce_tables", "intro", "calibrated_test", "dataset_inference"):
        e = _exercise(chapter)
        public = "\n".join(code for code, hidden in e.checks if not hidden)
        setup = course.setup_code(BOOK / f"{chapter}.md")
        for cheat in (_zeros(e), HARD_CODED[chapter].replace("{public}", _public_value(chapter))):
            if chapter != "mmd" and cheat.startswith("np.isclose"):
                continue  # zeros fail these public checks; the monkeypatch matters for mmd's
            student = behaviour.Student(setup, [cheat, public], forbidden=[])
            try:
                assert student.errors == [], (chapter, cheat, student.errors)
            finally:
                student.close()
    # the check can fail: the untouched placeholder fails mmd's public check
    e = _exercise("mmd")
    student = behaviour.Student(course.setup_code(BOOK / "mmd.md"),
                                ["\n\n".join(course.prompt(c) for c in e.solution),
                                 "\n".join(code for code, hidden in e.checks if not hidden)], forbidden=[])
    try:
        assert [x.split(":")[0] for x in student.errors] == ["cell 2"]
    finally:
        student.close()


def test_forbidden_uses_sees_through_aliases_but_not_other_modules():
    forbidden = ["pmi_tutorial.attacks.prune"]
    setup = "from pmi_tutorial import attacks\nfrom torch.nn.utils import prune as torch_prune\n"
    ok = "def f(m):\n    torch_prune.l1_unstructured(m, 'weight', amount=0.5)\n    return attacks.PRUNABLE\n"
    assert behaviour.forbidden_uses([ok], forbidden, setup) == []
    for bad in ("attacks.prune(m, 0.5)", "import pmi_tutorial.attacks as a\na.prune(m, 0.5)",
                "from pmi_tutorial.attacks import prune as p\np(m, 0.5)", "getattr(attacks, 'prune')(m, 0.5)",
                "__import__('pmi_tutorial').attacks", "pmi_tutorial.attacks.prune(m, 0.5)"):
        assert behaviour.forbidden_uses([bad], forbidden, setup), bad


def test_the_student_notebooks_own_setup_cell_is_not_a_forbidden_use():
    """The student notebook repeats the chapter's imports, forbidden functions included (the
    clustering and PMI chapters import agglomerative): importing is allowed, calling is not."""
    for chapter in ASSIGNMENTS:
        md = BOOK / f"{chapter}.md"
        e = _exercise(chapter)
        sp = course.parts_spec(md, e)
        setup = course.setup_code(md)
        assert behaviour.forbidden_uses([setup] + list(e.solution), sp.forbidden, setup) == [], chapter
        assert behaviour.forbidden_uses([setup, FORBIDDEN_CALL[chapter]], sp.forbidden, setup), chapter


def test_a_part_that_hangs_or_crashes_the_process_scores_zero_with_a_reason():
    sp = behaviour.spec("def part_a(student, g):\n    assert student.f(1) == 2\n\n\n"
                        "def part_b(student, g):\n    assert student.f(2) == 3\n", "import numpy as np")
    hang = "def f(x):\n    if x == 1:\n        while True:\n            pass\n    return x + 1\n"
    got = behaviour.run_parts(sp, "import numpy as np", [hang], seed=0, timeout=3)
    assert [r.score for r in got] == [0.0, 1.0]  # a fresh process for the next part
    assert "no answer within 3 s" in got[0].message
    crash = "import os\n\n\ndef f(x):\n    os._exit(3)\n"
    got = behaviour.run_parts(sp, "import numpy as np", [crash], seed=0, timeout=3)
    assert [r.score for r in got] == [0.0, 0.0] and "process ended" in got[0].message


PROBE = """import os, resource
import numpy as np
np.isclose = lambda *a, **k: True  # a cheat's rebinding: it must not reach the next submission
facts = {"own_session": os.getsid(0) == os.getpid(), "cwd": os.getcwd(), "ppid": os.getppid(),
         "pid": os.getpid(), "memory": resource.getrlimit(resource.RLIMIT_AS)[0],
         "cpu": resource.getrlimit(resource.RLIMIT_CPU)[0], "test": os.environ.get("PYTEST_CURRENT_TEST"),
         "hash": hash("pmi"), "threads": os.environ.get("OMP_NUM_THREADS")}
"""


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "started afresh"])
def test_the_submissions_process_is_the_same_forked_or_started_afresh(fork, monkeypatch):
    """Forked from the fork server or started as ``python -c RUNNER``, the submission's process
    is one of its own in a session of its own, in its grading folder, under the limits, with the
    environment of the moment (pytest's name of the running test, changed for each, is the one
    variable whose change does not start a new server); what one submission rebinds never reaches the next."""
    if not fork:
        monkeypatch.setattr(forks, "forked", lambda *args: None)
    seen = []
    for probe in ("first", "second"):
        monkeypatch.setenv("PYTEST_CURRENT_TEST", f"{os.environ['PYTEST_CURRENT_TEST']} {probe}")
        student = behaviour.Student("import numpy as np", [PROBE, "fresh = np.isclose(0.0, 1.0)"]
                                    if probe == "second" else [PROBE], forbidden=[], timeout=7)
        try:
            assert student.errors == []
            assert isinstance(student.proc, forks.Forked) == fork
            facts = student.get("facts")
            if probe == "second":  # rebound in this process's cells: True; the first one's did not leak
                assert student.get("fresh") is True
            assert facts["cwd"] == student.workdir and facts["own_session"]
            assert facts["ppid"] != os.getpid() if fork else facts["ppid"] == os.getpid()
            assert facts["memory"] == behaviour.MEMORY_LIMIT and facts["cpu"] == 7 * 4 + 30
            assert facts["test"] == os.environ["PYTEST_CURRENT_TEST"] and facts["threads"] == "1"
            seen.append(facts)
        finally:
            student.close()
        with pytest.raises(ProcessLookupError):  # closed: the process is gone
            os.kill(facts["pid"], 0)
    assert seen[0]["pid"] != seen[1]["pid"] and seen[0]["hash"] == seen[1]["hash"]
    hashed = subprocess.run([sys.executable, "-c", "print(hash('pmi'))"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"}).stdout
    assert seen[0]["hash"] == int(hashed)  # PYTHONHASHSEED=0, as a fresh process has it


def test_a_submission_sees_none_of_the_preloaded_names_and_a_fresh_namespace():
    """The fork server's imports are in ``sys.modules`` only: the submission's namespace holds
    what its setup and cells define, and a name it never imported is a NameError."""
    student = behaviour.Student("import numpy as np", ["names = sorted(k for k in globals() if not k.startswith('__'))",
                                                       "t = torch.zeros(1)"], forbidden=[])
    try:
        assert student.get("names") == ["np"]
        assert student.errors == ["cell 2: NameError: name 'torch' is not defined"]
    finally:
        student.close()
