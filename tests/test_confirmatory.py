"""Tests for pmi_tutorial.experiments.confirmatory and confirmatory_summary: the log-odds
score against closed forms, the share of ties against a count, the registration (refused
unless committed, unmodified and equal to the configuration), the world/model decomposition
against a hand computation, the primary test's combination, a tiny run end to end with resume,
and the command line refusing before any work."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from pmi_tutorial import stats
from pmi_tutorial.experiments import confirmatory as C
from pmi_tutorial.experiments import confirmatory_summary as S

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the score


def test_log_odds_equals_log_p_over_one_minus_p_where_float64_resolves_it():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(200, 10))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    for r in (0, 7):
        np.testing.assert_allclose(stats.log_odds(z, r), np.log(p[:, r] / (1 - p[:, r])),
                                   rtol=1e-9, atol=1e-9)


def test_log_odds_keeps_the_order_log_softmax_rounds_away():
    # two classes: the log-odds is exactly the logit difference, however large
    z = np.array([[40.0, 0.0], [45.0, 0.0], [60.0, 0.0], [3.0, 0.0]])
    lp = stats.confidence_scores(z, 0, "logprob")
    assert (lp[:3] == 0.0).all()  # float64 log-softmax ties the three confident rows
    np.testing.assert_allclose(stats.confidence_scores(z, 0, "logodds"), [40, 45, 60, 3])
    # from log-probabilities instead of logits: the same numbers
    logp = z - np.logaddexp(z[:, :1], z[:, 1:])
    np.testing.assert_allclose(stats.log_odds(logp[3:], 0), [3.0], rtol=1e-12)


def test_log_odds_refuses_one_column():
    with pytest.raises(ValueError, match="at least 2 classes"):
        stats.log_odds(np.zeros((3, 1)), 0)


def test_tie_share_counts_values_that_repeat():
    v = [0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 3.5]
    brute = np.mean([sum(x == y for y in v) > 1 for x in v])
    assert stats.tie_share(v) == pytest.approx(brute) == pytest.approx(5 / 7)
    assert stats.tie_share([1.0]) == 0.0


# --------------------------------------------------------------------------- the registration


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


@pytest.fixture()
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "README").write_text("x\n")
    _git(tmp_path, "add", "README")
    _git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def _register(repo, cfg, commit=True):
    path = repo / C.REGISTRATION
    path.parent.mkdir(parents=True, exist_ok=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True).stdout.strip()
    reg = C.registration_for([cfg], head or "0" * 40)
    path.write_text(json.dumps(reg))
    if commit:
        _git(repo, "add", str(C.REGISTRATION))
        _git(repo, "commit", "-q", "-m", "register")
    return path


def test_registration_missing_uncommitted_or_modified_is_refused(repo):
    with pytest.raises(ValueError, match="no registration file"):
        C.read_registration(C.REGISTRATION, repo)
    path = _register(repo, C.TINY, commit=False)
    with pytest.raises(ValueError, match="not committed"):
        C.read_registration(C.REGISTRATION, repo)
    _git(repo, "add", str(C.REGISTRATION))
    _git(repo, "commit", "-q", "-m", "register")
    reg = C.read_registration(C.REGISTRATION, repo)
    assert reg["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(reg["registered_in"]) == 40
    path.write_text(path.read_text().replace('"alpha": 0.01', '"alpha": 0.05'))
    with pytest.raises(ValueError, match="uncommitted changes"):
        C.read_registration(C.REGISTRATION, repo)


def test_a_configuration_other_than_the_registered_one_is_refused(repo):
    _register(repo, C.TINY)
    reg = C.read_registration(C.REGISTRATION, repo)
    C.check_against(C.TINY, reg)
    with pytest.raises(ValueError, match="'alpha'"):
        C.check_against(replace(C.TINY, alpha=0.05), reg)
    with pytest.raises(ValueError, match="no configuration for lenet5"):
        C.check_against(replace(C.TINY, arch="lenet5"), reg)


def test_the_registered_configurations_use_worlds_the_exploration_never_used():
    for cfg in C.CONFIGS.values():
        split_seeds = [cfg.world_seed_base + w for w in cfg.world_ids()]
        assert 0 not in split_seeds and len(set(split_seeds)) == cfg.worlds
        assert cfg.n_innocent >= 5
    assert C.CONFIGS["mlp"].worlds >= 20 and C.CONFIGS["lenet5"].worlds >= 10
    seeds = {C.seeds(w, role, j) for w in range(1, 21) for role in ("owner", "innocent", "attack")
             for j in range(12)}
    assert not seeds & set(range(0, 3000))  # the exploratory study's training seeds


def test_committed_registration_matches_the_code_configurations():
    path = ROOT / C.REGISTRATION
    if not path.is_file():
        pytest.skip("no registration committed yet")
    reg = json.loads(path.read_text())
    for arch, cfg in C.CONFIGS.items():
        assert reg["configs"][arch] == cfg.to_dict()
    assert reg["alpha"] == 0.01 and reg["primary_test"]["name"] == "rank+tail"


# --------------------------------------------------------------------------- the summary


def test_world_share_against_a_hand_computation():
    # groups [1, 3] and [5, 7]: MSB = 16, MSW = 2, n0 = 2: world variance (16 - 2) / 2 = 7
    out = S.world_share({1: [1.0, 3.0], 2: [5.0, 7.0]})
    assert out["world_variance"] == pytest.approx(7.0)
    assert out["model_variance"] == pytest.approx(2.0)
    assert out["world_share"] == pytest.approx(7 / 9)
    assert S.world_share({1: [1.0, 3.0], 2: [3.0, 1.0]})["world_share"] == 0.0
    assert S.world_share({1: [1.0, 2.0]})["world_share"] is None


def test_world_share_recovers_a_simulated_world_effect():
    rng = np.random.default_rng(1)
    groups = {w: list(rng.normal(0, 1) + rng.normal(0, 1, size=5)) for w in range(400)}
    assert S.world_share(groups)["world_share"] == pytest.approx(0.5, abs=0.08)


def test_the_paper_rule_and_eq15_against_their_definitions():
    acc = [0.3, 0.5, 0.3, 0.3]  # best class 0.5 - 1/3 >= 0.1; mean 0.35 - 1/3 < 0.1
    assert S.paper_rule(acc, 3, 0.1) and not S.eq15(acc, 3, 0.1)
    assert S.eq15([0.5] * 4, 3, 0.1)


# --------------------------------------------------------------------------- a tiny run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mnist_root):
    repo = tmp_path_factory.mktemp("repo")
    _git(repo, "init", "-q")
    (repo / "README").write_text("x\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "start")
    _register(repo, C.TINY)
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("out")
    res = C.run(C.TINY, out=out, cache_dir=cache, root=mnist_root, repo=repo, progress=False)
    return res, repo, cache, out


def test_tiny_run_records_every_suspect_of_every_world(tiny_run):
    res, _, _, out = tiny_run
    per_world = 1 + len(C.TINY.attacks) + C.TINY.n_innocent
    assert len(res["records"]) == C.TINY.worlds * per_world
    assert res["worlds_done"] == C.TINY.world_ids() and res["complete"]
    # the analysis files are not in this repository, so nothing changed since the registration
    assert res["registration"]["sha256"] and res["departures"] == []
    on_disk = C.load("mlp", out)
    assert on_disk["records"] == res["records"]


def test_primary_is_bonferroni_of_rank_and_tail(tiny_run):
    for rec in tiny_run[0]["records"]:
        for cell in rec["revealed"].values():
            want = min(0.0, np.log10(2.0) + min(cell["rank"], cell["tail"]))
            assert cell["rank+tail"] == pytest.approx(want, abs=2e-4)


def test_summary_rates_are_clopper_pearson_of_the_records(tiny_run):
    res, *_ = tiny_run
    cfg = C.TINY
    inn = [r for r in res["records"] if r["kind"] == "innocent"]
    k = str(cfg.revealed[-1])
    hits = sum(r["revealed"][k]["rank+tail"] <= np.log10(cfg.alpha) for r in inn)
    cell = res["summary"]["innocents"][k]["rank+tail"]
    assert (cell["k"], cell["n"]) == (hits, len(inn))
    lo = sps.beta.ppf(0.025, hits, len(inn) - hits + 1) if hits else 0.0
    hi = sps.beta.ppf(0.975, hits + 1, len(inn) - hits) if hits < len(inn) else 1.0
    assert cell["ci"] == pytest.approx([lo, hi], abs=1e-9)


def test_a_second_run_resumes_from_the_cache(tiny_run, mnist_root):
    res, repo, cache, out = tiny_run
    again = C.run(C.TINY, out=out, cache_dir=cache, root=mnist_root, repo=repo, progress=False)
    assert again["records"] == res["records"]


def test_the_command_line_refuses_without_a_registration(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pmi_tutorial", "confirm", "--out", str(tmp_path),
                           "--registration", str(tmp_path / "none.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no registration file" in lines[0]


def test_report_tables_show_every_kind_and_the_summary_numbers(tiny_run):
    from pmi_tutorial.experiments import confirmatory_report as R

    res = tiny_run[0]
    table = R.detection_table(res)
    kinds = list(res["summary"]["by_kind"])
    assert [row[0] for row in table.rows] == [R.title(k) for k in kinds]
    owner = res["summary"]["by_kind"]["owner"][str(C.TINY.revealed[0])]["rank+tail"]
    assert table.rows[0][1] == R.fmt_rate(owner)
    inn = R.innocents_table(res)
    assert [row[0] for row in inn.rows] == [str(k) for k in C.TINY.revealed]
    pooled = R.pooled_innocents([res, res], "30")
    one = res["summary"]["innocents"]["30"]["rank+tail"]
    assert pooled == {"k": 2 * one["k"], "n": 2 * one["n"]}
    assert R.fmt_rate({"k": 1, "n": 4, "ci": [0.0063, 0.806]}) == "1/4 (1-81)"
    rules = R.rule_table(res, "30")
    assert rules.rows[-1][0] == "innocent models" and len(rules.rows) == len(kinds) + 1
    assert rules.rows[-1][2] == R.fmt_rate(res["summary"]["innocents"]["30"]["paper_rule"])
    assert "2 of 2 registered worlds measured (complete)" in R.worlds_line(res)


def test_independent_ks_takes_one_innocent_per_world(tiny_run):
    from scipy.stats import kstest

    from pmi_tutorial.experiments import confirmatory_report as R

    res = tiny_run[0]
    got = R.independent_ks(res, "30")
    first = [10 ** r["revealed"]["30"]["rank+tail"] for r in res["records"]
             if r["kind"] == "innocent" and r["index"] == 0]
    assert got["n"] == C.TINY.worlds == len(first)
    assert got["pvalue"] == pytest.approx(kstest(first, "uniform").pvalue)
