r"""The owner's verification of a suspect: one calibrated verdict, the evidence, the paper's rule.

Chapter "Beyond the paper", section "The owner's verification".  :func:`verify_ownership`
runs a suspect (:mod:`pmi_tutorial.suspects`) once over the owner's pools
(:mod:`pmi_tutorial.pools_file`) and reports, in this order:

1. **the verdict**: "accused" or "not accused" at the level alpha by the primary test, both
   fixed in the pools file before any suspect was examined (default: the test the confirmatory
   study registered, the Bonferroni combination of the rank and the tail test (2%) on the
   log-odds of the true class, alpha = 0.01).  Its false-positive rate is at
   most alpha over the random draw of the pools, for every innocent suspect;
2. **the evidence**: each calibrated p-value (rank, tail, their Bonferroni combination, the
   directional permutation test) with one line on what it measures;
3. **for comparison, no false-positive guarantee**: the paper's rule (Eq. 13-14) and the mean
   of acc_r (Eq. 15).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from . import stats
from .stats import rejects, rejects_log10
from .pools_file import TESTS, OwnerPools, load_pools, revealed_is_small
from .suspects import is_one_hot, looks_like_probabilities, open_suspect, scores_of

OUTPUTS = ("auto", "logits", "probabilities")
SCORE_WORDS = {"logodds": "log-odds", "logprob": "log-probability"}
COMPARISON = "for comparison, no false-positive guarantee"
EVIDENCE = {
    "rank": "members rank above non-members in confidence at their class, over all samples",
    "tail": "members are rarely among the least confident (hard, memorised) samples",
    "rank+tail": "twice the smaller of the two: valid whatever their dependence",
    "permutation": "mean confidence of members minus non-members, max over classes, re-split",
}


def to_log_probabilities(out: np.ndarray, output: str) -> np.ndarray:
    """Log-probabilities from logits (log-softmax) or from probabilities (log, clipped at the
    smallest positive float32 so that a probability of 0 stays finite)."""
    if output == "logits":  # log-softmax, as scipy.special.log_softmax, in plain NumPy (faster)
        shifted = out - out.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return np.log(np.clip(out, np.finfo(np.float32).tiny, None))


def rows_by_class(y: np.ndarray, classes) -> dict:
    """``{r: the indices of the rows of class r, in increasing order}`` (as ``np.flatnonzero(y ==
    r)``), from one stable sort instead of a pass over ``y`` per class."""
    order = np.argsort(y, kind="stable")
    ys = y[order]
    return {r: order[np.searchsorted(ys, r, "left"):np.searchsorted(ys, r, "right")]
            for r in classes}


def _fmt_p(log10_p: float) -> str:
    if log10_p > -4:
        return f"{10 ** log10_p:.4g}"
    e = math.floor(log10_p)
    return f"{10 ** (log10_p - e):.2f}e{e}"


@dataclass
class OwnershipResult:
    """What :func:`verify_ownership` found: the verdict, the evidence, the paper's rule."""

    closed_form: stats.ClosedFormResult
    permutation: dict
    paper_rule: dict | None
    suspect: str
    output: str
    pools: dict
    closed_form_tail: stats.ClosedFormResult | None = None
    alpha: float = 0.01
    test: str = "rank+tail"
    small_revealed: int | None = None

    @property
    def log10_pvalue_both(self) -> float:
        """Bonferroni over the two closed-form tests: log10 min(1, 2 min(p_rank, p_tail))."""
        lps = [self.closed_form.log10_pvalue]
        if self.closed_form_tail is not None:
            lps.append(self.closed_form_tail.log10_pvalue)
        return min(0.0, min(lps) + math.log10(len(lps)))

    def log10_p(self, test: str | None = None) -> float:
        """log10 of the p-value of ``test`` (default: the primary test)."""
        test = self.test if test is None else test
        if test == "rank":
            return self.closed_form.log10_pvalue
        if test == "tail":
            return self.closed_form_tail.log10_pvalue
        if test == "rank+tail":
            return self.log10_pvalue_both
        return math.log10(self.permutation["pvalue"])

    @property
    def pvalue(self) -> float:
        if self.test == "permutation":
            return float(self.permutation["pvalue"])  # (k + 1) / (B + 1), exactly
        return 10.0 ** self.log10_p()

    @property
    def accused(self) -> bool:
        """The verdict: the primary test's p-value at most alpha (both fixed in the pools)."""
        if self.test == "permutation":
            return rejects(self.pvalue, self.alpha)
        return rejects_log10(self.log10_p(), self.alpha)

    @property
    def verdict(self) -> str:
        return "accused" if self.accused else "not accused"

    def verdict_line(self) -> str:
        return (f"{self.verdict} at alpha = {self.alpha:g} by {self.test} ({TESTS[self.test]}), "
                f"p = {_fmt_p(self.log10_p())}")

    def to_dict(self) -> dict:
        tail = self.closed_form_tail.to_dict() if self.closed_form_tail is not None else None
        out = {"verdict": self.verdict, "accused": self.accused, "alpha": self.alpha,
               "test": self.test, "test_description": TESTS[self.test], "p": self.pvalue,
               "log10_p": self.log10_p(),
               "guarantee": "an innocent suspect is accused with probability at most alpha, over "
                            "the random draw of the pools (null: P' and Q exchangeable for it)",
               "small_revealed": self.small_revealed,
               "calibrated": {"closed_form": self.closed_form.to_dict(),
                              "closed_form_tail": tail,
                              "closed_form_both": {"test": TESTS["rank+tail"],
                                                   "log10_pvalue": self.log10_pvalue_both},
                              "permutation": self.permutation},
               "paper_rule": self.paper_rule, "suspect": self.suspect, "output": self.output,
               "pools": self.pools}
        return out

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from .files import write_json_atomic

            write_json_atomic(path, self.to_dict())
        return text

    def report(self) -> str:
        cf, pm, pr = self.closed_form, self.permutation, self.paper_rule
        lines = [f"verdict: {self.verdict_line()}",
                 f"  (test and alpha fixed in the pools, digest {self.pools['digest'][:16]}...; "
                 + ("accused: an innocent suspect gets this far with probability at most alpha)"
                    if self.accused else "not accused: no evidence at this level, which is not "
                    "evidence of innocence)")]
        if self.small_revealed is not None:
            lines.append(f"warning: only {self.small_revealed} revealed members in a class: one "
                         "draw's luck moves the p-value by orders of magnitude; reveal 100 or "
                         "more per class for a stable verdict")
        lines += [
            f"suspect: {self.suspect} (outputs read as {self.output}); pools: {self.pools['dataset']}, "
            f"{self.pools['n_P']} revealed members, {self.pools['n_Q']} non-members",
            "evidence, calibrated (null: P' and Q exchangeable for the suspect; valid over the "
            f"draw of the pools; score: the {SCORE_WORDS.get(self.pools.get('score'), 'log-probability')} "
            "of the true class):",
            f"  rank, closed form (one-sided Mann-Whitney U per class, {cf.combine}): "
            f"p = {_fmt_p(cf.log10_pvalue)} (log10 p = {cf.log10_pvalue:.2f}): {EVIDENCE['rank']}",
        ]
        if self.closed_form_tail is not None:
            t = self.closed_form_tail
            lines += [
                f"  tail, closed form (members among the {t.fraction:g} least confident, exact "
                f"hypergeometric, {t.combine}): p = {_fmt_p(t.log10_pvalue)} "
                f"(log10 p = {t.log10_pvalue:.2f}): {EVIDENCE['tail']}",
                f"  rank+tail (Bonferroni): p = {_fmt_p(self.log10_pvalue_both)} "
                f"(log10 p = {self.log10_pvalue_both:.2f}): {EVIDENCE['rank+tail']}"]
        lines.append(f"  permutation (directional, B = {pm['B']}): p = {pm['pvalue']:.4g}, at least "
                     f"1/(B+1) = {1 / (pm['B'] + 1):.4g}: {EVIDENCE['permutation']}")
        if pr is not None:
            lines += [
                f"{COMPARISON}:",
                f"  paper's rule (Eq. 13-14, m = {pr['m']}, n = {pr['n']}, t = {pr['trials']}): "
                f"r_opt = {pr['r_opt']}, acc_r_opt = {pr['acc_opt']:.2f} vs 1/m + rho = "
                f"{1 / pr['m'] + pr['rho']:.3f} -> {'claim' if pr['verdict'] else 'no claim'}",
                f"  Eq. 15: mean acc_r = {pr['mean_acc']:.3f} (1/m = {1 / pr['m']:.3f} when the "
                "suspect cannot tell members from non-members)",
                *(f"  class {r}: acc_r = {a:.2f}" for r, a in pr["acc_by_class"].items())]
        return "\n".join(lines)


def _classes_and_B(pools: OwnerPools, classes, B, test):
    chosen = pools.classes if classes is None else tuple(int(r) for r in classes)
    for r in chosen:
        if r not in pools.classes:
            raise ValueError(f"class {r} is not in the pools (classes {list(pools.classes)}); "
                             "pick classes from that list")
    if B is None:
        B = pools.B
    elif test == "permutation" and B != pools.B:
        raise ValueError(f"the pools fix the permutation test with B = {pools.B}; drop --B (or "
                         "pass the registered value)")
    if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
        raise ValueError(f"B must be an integer >= 1, got {B!r}; e.g. B=999")
    most = pools.max_B(chosen)
    if B > most:
        raise ValueError(f"B = {B} permutations, but a class has {most + 1} pooled samples, "
                         f"{most} distinct re-splits of the test; lower B to <= {most}")
    return chosen, int(B)


def verify_ownership(suspect, pools, *, output: str = "auto", B: int | None = None, seed: int = 0,
                     m: int = 3, n: int = 100, trials: int = 100, rho: float = 0.1,
                     batch_size: int = 1024, classes=None, expect_digest: str | None = None,
                     paper_rule: bool = True) -> OwnershipResult:
    r"""Was ``suspect`` trained on the owner's revealed members?  One calibrated verdict first.

    ``suspect``: a pmi_tutorial checkpoint path (loaded pickle-free), a TorchScript or ONNX
    file, a torch model, or any callable mapping a batch of images (a float32 tensor
    (b, C, H, W), normalized as in :mod:`pmi_tutorial.data`) to a (b, c) array of logits or
    probabilities: a black-box API (:mod:`pmi_tutorial.suspects`).  A suspect that returns
    labels (one value, or a one-hot row, per image) is refused: the tests need scores.
    ``output``: ``"logits"``, ``"probabilities"``, or ``"auto"`` (probabilities when every row
    is non-negative and sums to 1, else logits).
    ``pools``: an :class:`~pmi_tutorial.pools_file.OwnerPools` or the path of a pools file
    (checksums and digest verified; ``expect_digest``: the registered digest, any other file
    refused).  The primary test, alpha, the tail share, the combination rule and B come from
    the pools (``B`` may be raised or lowered for the evidence unless the permutation test is
    the primary one).  Every input is checked before the suspect sees an image.

    The verdict (``accused``: the primary test's p <= alpha) comes with the evidence:
    :func:`~pmi_tutorial.stats.closed_form.closed_form_test` (rank and tail, no floor, in log space),
    their Bonferroni combination, and the directional permutation test (B re-splits), all valid
    over the random draw of the pools under the null "P' and Q are exchangeable for the
    suspect"; and, ``paper_rule=True``, the paper's rule (Eq. 13-14 on m, n, trials) and
    Eq. 15 for comparison, with no false-positive guarantee.
    """
    from . import fingerprint

    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; use one of {', '.join(map(repr, OUTPUTS))}")
    fingerprint.check_rho(rho, m)  # checks m and rho now
    if not isinstance(pools, OwnerPools):
        pools = load_pools(pools, expect_digest=expect_digest)
    elif expect_digest is not None:
        from .pools_file import check_digest

        if pools.digest != check_digest(expect_digest, "expect_digest"):
            raise ValueError(f"the pools have digest {pools.digest[:16]}..., not the registered "
                             f"{expect_digest[:16]}...; use the registered pools")
    chosen, B = _classes_and_B(pools, classes, B, pools.test)
    sus = open_suspect(suspect, batch_size)
    if sus.dataset is not None and pools.dataset != sus.dataset:
        raise ValueError(f"the pools are {pools.dataset} images, but the suspect is built for "
                         f"{sus.dataset}; pass the owner's {sus.dataset} pools")
    from .data import NUM_CLASSES

    c = NUM_CLASSES.get(pools.dataset, max(pools.classes) + 1)
    keepP = np.isin(pools.P_y, chosen)
    keepQ = np.isin(pools.Q_y, chosen)
    xP = pools.P_x if keepP.all() else pools.P_x[keepP]
    xQ = pools.Q_x if keepQ.all() else pools.Q_x[keepQ]
    outP = scores_of(sus.fn, xP, c, batch_size, sus.batches_itself)
    outQ = scores_of(sus.fn, xQ, c, batch_size, sus.batches_itself)
    yP, yQ = pools.P_y[keepP], pools.Q_y[keepQ]
    rowsP, rowsQ = rows_by_class(yP, chosen), rows_by_class(yQ, chosen)
    if output == "auto":
        if sus.output is not None:
            output = sus.output
        else:
            both = np.concatenate([outP, outQ])
            if is_one_hot(both):
                raise ValueError("the suspect returned one-hot rows (only the predicted label); "
                                 f"the calibrated tests need {c} logits or probabilities per "
                                 "image (a label-only API cannot be verified with them)")
            output = "probabilities" if looks_like_probabilities(both) else "logits"
    # log-probabilities only where something reads them (logits serve the log-odds and the
    # paper's rule as they are)
    need_lp = output == "probabilities" or pools.score == "logprob"
    lpP, lpQ = ((to_log_probabilities(outP, output), to_log_probabilities(outQ, output))
                if need_lp else (None, None))
    if pools.score == "logodds":  # z_r - logsumexp_{j != r} z_j in float64 (log-probabilities
        # give the same numbers): no rounding to 0 however confident the suspect is
        srcP, srcQ = (outP, outQ) if output == "logits" else (lpP, lpQ)
        loP, loQ = stats.log_odds(srcP, yP), stats.log_odds(srcQ, yQ)
        scores = {r: (loP[rowsP[r]], loQ[rowsQ[r]]) for r in chosen}
    else:
        scores = {r: (lpP[rowsP[r], r], lpQ[rowsQ[r], r]) for r in chosen}
    cf = stats.closed_form_from_scores(scores, combine=pools.combine)
    cf_tail = stats.closed_form_from_scores(scores, combine=pools.combine, test="tail",
                                        fraction=pools.tail)
    permutation = stats.directional_from_scores(scores, B=B, seed=seed).to_dict()
    paper = None
    if paper_rule:
        featP, featQ = (outP, outQ) if output == "logits" else (lpP, lpQ)
        feat_pools = {r: (featP[rowsP[r]], featQ[rowsQ[r]]) for r in chosen}
        n_eff = min(n, min(len(v[0]) for v in feat_pools.values()))
        bound = pools.rule_draws(m, n_eff, trials, seed)  # made with the pools, or None
        res = fingerprint.run_on_features(feat_pools, m, n_eff, trials=trials, seed=seed,
                                          draws=bound)
        paper = {"label": COMPARISON, "m": m, "n": n_eff, "trials": trials, "rho": rho,
                 "features": "logits" if output == "logits" else "log-probabilities",
                 "acc_by_class": {str(r): float(a) for r, a in res.acc_by_class.items()},
                 "r_opt": res.r_opt, "acc_opt": float(res.acc_opt),
                 "mean_acc": float(res.mean_acc), "verdict": bool(res.verdict(rho)),
                 "draws": "bound in the pools" if bound is not None else f"drawn with seed {seed}"}
    info = {"dataset": pools.dataset, "digest": pools.digest, "classes": list(chosen),
            "n_P": int(len(yP)), "n_Q": int(len(yQ)), "alpha": pools.alpha, "test": pools.test,
            "tail": pools.tail, "combine": pools.combine, "score": pools.score}
    return OwnershipResult(cf, permutation, paper, sus.name, output, info, cf_tail,
                           alpha=pools.alpha, test=pools.test,
                           small_revealed=revealed_is_small(pools, chosen))
