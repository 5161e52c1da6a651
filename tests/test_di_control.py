"""Tests of :mod:`pmi_tutorial.experiments.di_control`: Dataset Inference's positive control."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pmi_tutorial.baselines.dataset_inference import authors_rows, authors_test, censored_fraction
from pmi_tutorial.experiments import di_control as C


def test_censored_fraction_is_a_hand_count():
    # 3 images, 2 norms, 4 directions; True = the walk reached the boundary
    flipped = np.array([[[1, 1, 0, 1], [0, 0, 0, 0]],
                        [[1, 1, 1, 1], [1, 0, 0, 0]],
                        [[0, 1, 1, 1], [1, 1, 0, 0]]], dtype=bool)
    # norm 0: 2 of 12 walks never flipped; norm 1: 9 of 12
    assert censored_fraction(flipped) == pytest.approx([2 / 12, 9 / 12])


def test_authors_rows_match_a_brute_force_reshaping():
    rng = np.random.default_rng(0)
    N, norms, D, width = 20, 3, 10, 30
    d = rng.exponential(size=(N, norms, D))
    mean, std = rng.normal(size=norms), rng.uniform(0.5, 2, size=norms)
    rows = authors_rows(d, mean, std, width)
    assert rows.shape == (N * norms * D // width, width)
    for r in range(rows.shape[0]):
        for c in range(width):
            f = r * width + c  # position in the transposed tensor (norm, direction, image)
            norm, direction, image = f // (D * N), (f // N) % D, f % N
            assert rows[r, c] == pytest.approx((d[image, norm, direction] - mean[norm]) / std[norm])
    # each row holds 30 different images at one norm and one direction
    assert rows.shape[0] == N * norms * D // width


def test_authors_rows_refuse_a_size_that_does_not_cut_into_rows():
    with pytest.raises(ValueError, match="rows of 30"):
        authors_rows(np.ones((7, 3, 2)), np.zeros(3), np.ones(3))


def test_authors_test_finds_a_planted_member_shift_and_not_its_absence():
    rng = np.random.default_rng(1)
    N = 40  # 40 images x 3 norms x 10 directions = 40 rows of 30
    members = rng.exponential(2.0, size=(N, 3, 10))
    nonmembers = rng.exponential(1.0, size=(N, 3, 10))
    found = authors_test(members, nonmembers, rng.exponential(2.0, size=(N, 3, 10)),
                           rng.exponential(1.0, size=(N, 3, 10)), sizes=(10,), repeats=5, epochs=100)
    blind = authors_test(members, nonmembers, rng.exponential(1.0, size=(N, 3, 10)),
                           rng.exponential(1.0, size=(N, 3, 10)), sizes=(10,), repeats=5, epochs=100)
    assert found["rows_tested"] == 20 and found["images_per_row"] == 30
    assert found["log10_pvalue_all"] < -6
    assert blind["log10_pvalue_all"] > -2


def test_step_scale_multiplies_the_directions():
    from pmi_tutorial.baselines.dataset_inference import sample_directions

    one = sample_directions(3, (1, 4, 4), "l2", 2, seed=5)
    two = sample_directions(3, (1, 4, 4), "l2", 2, seed=5, step_scale=2.0)
    assert np.allclose(two.numpy(), 2 * one.numpy())
    with pytest.raises(ValueError, match="step_scale"):
        sample_directions(3, (1, 4, 4), "l2", 2, step_scale=-1.0)


def test_world_refuses_more_models_than_the_data_holds():
    from dataclasses import replace

    with pytest.raises(ValueError, match="disjoint images"):
        C.world(replace(C.TINY, train_size=10_000, n_innocent=6))


def test_world_parts_are_disjoint():
    w = C.world(C.TINY)
    parts = [w["owner"], w["heldout"], *w["innocent"]]
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == len(allidx)
    assert set(w["known_members"]) <= set(w["owner"])
    assert not set(w["known_nonmembers"]) & set(w["finetune"])
    m0, q0 = C.revealed(C.TINY, 0)
    assert not set(m0) & set(w["known_members"]) and not set(q0) & set(w["known_nonmembers"])
    assert not set(q0) & set(w["finetune"])
    m1, _ = C.revealed(C.TINY, 1)
    assert not np.array_equal(m0, m1)  # an innocent model's own draw


@pytest.fixture(scope="module")
def tiny_control(tmp_path_factory):
    """One in-process run of the tiny control, shared by the tests below: (result, out, cache)."""
    base = tmp_path_factory.mktemp("tiny_control")
    out, cache = base / "out", base / "cache"
    res = C.run_control(C.TINY, out=out, cache_dir=cache, progress=False, command="test")
    return res, out, cache


def test_tiny_control_end_to_end_and_resume(tiny_control, monkeypatch):
    res, out, cache = tiny_control
    path = out / C.FILE.format(name="tiny")
    on_disk = json.loads(path.read_text())
    assert on_disk["complete"] is True and on_disk["format"] == C.RESULT_FORMAT
    assert [(r["kind"], r["index"]) for r in on_disk["records"]] == C.plan(C.TINY)
    assert len(on_disk["models"]) == 1 + C.TINY.n_innocent
    assert all("walk" not in r for r in on_disk["records"])  # the walks stay in the cache
    s = on_disk["summary"]
    assert s["innocent"]["DI, one draw"]["8"]["n"] == C.TINY.n_innocent
    r0 = on_disk["records"][0]
    # the test of all revealed images is the Welch test the baseline computes
    assert r0["di"]["log10_pvalue_all"] <= 0
    assert set(s["authors_aggregation"]) == {f"{k}{i}" for k, i in C.plan(C.TINY)}
    # a probabilities-only copy answers with the owner's labels: the same walk, the same p-values
    lp = next(r for r in on_disk["records"] if r["kind"] == "logprob")
    assert lp["di"]["log10_pvalue_all"] == pytest.approx(r0["di"]["log10_pvalue_all"])
    assert lp["pmi"]["rank_equal"] == pytest.approx(r0["pmi"]["rank_equal"])

    def boom(*a, **k):
        raise AssertionError("a cached task ran again")

    for fn in ("train_task", "regressor_task", "suspect_task"):
        monkeypatch.setattr(C, fn, boom)
    again = C.run_control(C.TINY, out=out, cache_dir=cache, progress=False, command="test")
    assert again["records"] == res["records"] and again["complete"]


def test_tables_of_the_tiny_control(tiny_control):
    from pmi_tutorial.experiments import di_control_report as R

    res = tiny_control[0]
    t = R.suspect_table(res)
    assert t.count("\n") == 1 + len(C.TINY.attacks) + 1  # header, rule, copies, innocents
    assert "innocent (median of 2)" in t
    assert "| PMI rank, equal budget | 8 | " in R.innocent_table(res)


def test_walk_scale_settings_and_summary():
    from pmi_tutorial.experiments import di_walk_scale as W
    from pmi_tutorial.experiments.dataset_inference import PAPER
    from pmi_tutorial.stats import clopper_pearson

    cfg = W.di_config(4)
    assert (cfg.steps, cfg.step_scale) == (4 * PAPER.steps, 4.0)
    assert "step_scale" not in PAPER.to_dict()  # the paper's walk keeps the keys of earlier runs
    rec = lambda kind, p, cm: {"scale": 2, "kind": kind, "censored": {"members": cm, "nonmembers": [0.0] * 3},
                               "forward_equivalents": 10.0, "pvalue_first_draw": {"10": p},
                               "pvalue_hmean": {"10": p}}
    s = W.summarize([rec("owner", 1e-4, [0.3] * 3), rec("resplit", 0.01, [0.0] * 3),
                     rec("resplit", 0.5, [0.0] * 3), rec("resplit", 0.2, [0.6] * 3)])["2"]
    assert s["censored_members"] == pytest.approx(0.9 / 4)  # (0.3 + 0 + 0 + 0.6) / 4 records
    assert s["owner_pvalue_first_draw"] == {"10": 1e-4}
    assert s["innocent"]["10"]["rate_0.05"] == pytest.approx([1 / 3, *clopper_pearson(1, 3)])


def _without_timing(x):
    """Records with every wall or CPU time removed (the only fields two engines may differ in)."""
    if isinstance(x, dict):
        return {k: _without_timing(v) for k, v in x.items() if "seconds" not in k}
    if isinstance(x, list):
        return [_without_timing(v) for v in x]
    return x


def test_the_tiny_control_on_a_dask_cluster_equals_the_in_process_run(tiny_control, tmp_path,
                                                                      dask_engine):
    here = tiny_control[0]
    there = C.run_control(C.TINY, out=None, cache_dir=tmp_path / "there", progress=False,
                          command="test", engine=dask_engine)
    assert _without_timing(there["records"]) == _without_timing(here["records"])
    # as JSON text, where a NaN (a statistic the tiny sizes leave undefined) equals itself
    same = lambda x: json.dumps(_without_timing(x), sort_keys=True)  # noqa: E731
    assert same(there["summary"]) == same(here["summary"])
    assert there["provenance"]["engine"] == "dask LocalCluster, 2 workers"
