"""Tests for pmi_tutorial.pools_file: the digest binds every array and the settings; a pools
file is untrusted input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from pmi_tutorial import pools_file as PF


def make_pools(n_P=40, n_Q=60, classes=(0, 1, 2), seed=0, **settings) -> PF.OwnerPools:
    rng = np.random.default_rng(seed)
    P_y = np.repeat(classes, n_P)
    Q_y = np.repeat(classes, n_Q)
    info = {"split_seed": 0, "draw_seed": seed, "P_index": list(range(0, 2 * len(P_y), 2)),
            "Q_index": list(range(len(Q_y)))}
    return PF.OwnerPools("mnist", classes, rng.normal(size=(len(P_y), 1, 28, 28)), P_y,
                         rng.normal(size=(len(Q_y), 1, 28, 28)), Q_y, info, **settings)


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _header(arrays):
    return json.loads(bytes(arrays["header"]).decode())


def test_round_trip_and_checksums_are_sha256_of_the_arrays(tmp_path):
    pools = make_pools(alpha=0.05, test="rank")
    path = PF.save_pools(tmp_path / "p.npz", pools)
    back = PF.load_pools(path, dataset="mnist", expect_digest=pools.digest.upper())
    assert back.digest == pools.digest and (back.alpha, back.test) == (0.05, "rank")
    assert back.info["P_index"] == pools.info["P_index"]
    assert np.array_equal(back.Q_x, pools.Q_x) and not list(tmp_path.glob(".*.tmp"))
    head = _header(_arrays(path))
    # every array has its checksum, computed independently here: sha256(dtype, shape, bytes)
    for k in PF.ARRAYS:
        a = np.ascontiguousarray(_arrays(path)[k])
        want = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()
        assert head["sha256"][k] == want
    assert head["settings"]["alpha"] == 0.05 and head["settings"]["sizes"]["0"] == [40, 60]


def test_digest_covers_settings_indices_and_images():
    base = make_pools().digest
    changed = {
        "alpha": make_pools(alpha=0.05), "test": make_pools(test="tail"),
        "tail": make_pools(tail=0.1), "combine": make_pools(combine="fisher"), "B": make_pools(B=50),
        "score": make_pools(score="logprob"),
    }
    idx = make_pools()
    idx.info["P_index"] = list(idx.info["P_index"])
    idx.info["P_index"][3] += 1
    changed["P_index"] = idx
    img = make_pools()
    with pytest.raises(ValueError, match="read-only"):  # the digest is computed once
        img.P_x[0, 0, 0, 0] += 1e-3
    P_x = img.P_x.copy()
    P_x[0, 0, 0, 0] += 1e-3
    changed["P_x"] = PF.OwnerPools(img.dataset, img.classes, P_x, img.P_y, img.Q_x, img.Q_y,
                                   img.info)
    digests = {k: p.digest for k, p in changed.items()}
    assert base not in digests.values() and len(set(digests.values())) == len(digests)
    assert make_pools().digest == base  # deterministic


def test_an_edited_index_fails(tmp_path):
    pools = make_pools()
    path = PF.save_pools(tmp_path / "p.npz", pools)
    arrays = _arrays(path)
    arrays["P_index"] = arrays["P_index"].copy()
    arrays["P_index"][0] = 10**6
    np.savez_compressed(tmp_path / "edited.npz", **arrays)  # the header, checksums kept
    with pytest.raises(ValueError, match="checksum mismatch .* for P_index"):
        PF.load_pools(tmp_path / "edited.npz")
    # rewritten with fresh checksums and digest: self-consistent, refused against the registered one
    edited = make_pools()
    edited.info["P_index"] = arrays["P_index"].tolist()
    fresh = PF.save_pools(tmp_path / "fresh.npz", edited)
    assert PF.load_pools(fresh).digest != pools.digest
    with pytest.raises(ValueError, match="not the registered"):
        PF.load_pools(fresh, expect_digest=pools.digest)
    # the stored digest edited by hand, checksums consistent: refused
    arrays = _arrays(path)
    head = _header(arrays)
    head["digest"] = "0" * 64
    arrays["header"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "digest.npz", **arrays)
    with pytest.raises(ValueError, match="does not match its arrays"):
        PF.load_pools(tmp_path / "digest.npz")


def test_swapped_images_with_fresh_checksums_fail_against_the_registered_digest(tmp_path):
    pools = make_pools(n_P=200, n_Q=300)
    registered = PF.save_pools(tmp_path / "p.npz", pools)
    digest = PF.load_pools(registered).digest
    P_x, Q_x = pools.P_x.copy(), pools.Q_x.copy()
    rng = np.random.default_rng(1)
    for r in pools.classes:  # 500 images in all swapped between P' and Q, labels kept
        i = rng.choice(np.flatnonzero(pools.P_y == r), 167 if r < 2 else 166, replace=False)
        j = rng.choice(np.flatnonzero(pools.Q_y == r), len(i), replace=False)
        P_x[i], Q_x[j] = pools.Q_x[j], pools.P_x[i]
    swapped = PF.OwnerPools(pools.dataset, pools.classes, P_x, pools.P_y, Q_x, pools.Q_y,
                            pools.info)
    path = PF.save_pools(tmp_path / "swapped.npz", swapped)
    assert PF.load_pools(path).digest != digest  # its own checksums all match
    with pytest.raises(ValueError, match="not the registered"):
        PF.load_pools(path, expect_digest=digest)


def test_files_that_are_not_pools_are_refused_in_one_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my pools are elsewhere\n")
    with pytest.raises(ValueError, match=r"notes.txt is not a pools file of pmi_tutorial \(not an "
                                         r"\.npz archive\); pass the file that `python -m pmi"):
        PF.load_pools(notes)
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="without the pools header"):
        PF.load_pools(tmp_path / "plain.npz")
    # an object array (a pickle) is never unpickled
    np.savez(tmp_path / "pickle.npz", header=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(ValueError, match="not a pools file") as info:
        PF.load_pools(tmp_path / "pickle.npz")
    assert "\n" not in str(info.value)
    # a version-1 file (no settings in the digest): write it again
    arrays = _arrays(PF.save_pools(tmp_path / "p.npz", make_pools()))
    head = _header(arrays)
    head["version"] = 1
    arrays["header"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "v1.npz", **arrays)
    with pytest.raises(ValueError, match="version-1 pools file.*register the new digest"):
        PF.load_pools(tmp_path / "v1.npz")
    with pytest.raises(FileNotFoundError, match="pmi_tutorial pools --out"):
        PF.load_pools(tmp_path / "absent.npz")


@pytest.mark.parametrize("bad, words", [
    (dict(alpha=0.0), "alpha must be in (0, 1)"), (dict(alpha=1.5), "alpha must be in (0, 1)"),
    (dict(test="best"), "unknown test 'best'"), (dict(tail=1.0), "tail share"),
    (dict(combine="mean"), "unknown combine"), (dict(B=0), "B must be a positive integer"),
    (dict(score="margin"), "unknown score 'margin'"),
    (dict(version=2), "version-2 pools use log-probabilities"),
    (dict(version=1, score="logprob"), "pools version 1 is not one of"),
])
def test_bad_settings(bad, words):
    with pytest.raises(ValueError) as info:
        make_pools(**bad)
    assert words in str(info.value)


def test_check_digest():
    assert PF.check_digest(" " + "AB" * 32 + "\n") == "ab" * 32
    for bad in ("abc", "g" * 64, "a" * 65):
        with pytest.raises(ValueError, match="64 hexadecimal characters"):
            PF.check_digest(bad)


def test_a_version_2_file_still_loads_with_its_registered_digest(tmp_path):
    """Files written before the score was a setting (version 2: log-probabilities, no "score"
    in the digest) keep the digest their owner registered."""
    old = make_pools(score="logprob", tail=0.05)
    arrays = _arrays(PF.save_pools(tmp_path / "v3.npz", old))
    head = _header(arrays)
    head["version"] = 2
    del head["settings"]["score"], head["settings"]["rule"]  # version 2 had neither
    for k in PF.RULE_ARRAYS:
        arrays.pop(k, None), head["sha256"].pop(k, None)
    # the version-2 digest, computed here as version 2 computed it
    text = json.dumps({"format": PF.POOLS_FORMAT, "version": 2, "settings": head["settings"],
                       "sha256": head["sha256"]}, sort_keys=True, separators=(",", ":"))
    head["digest"] = hashlib.sha256(text.encode()).hexdigest()
    arrays["header"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "v2.npz", **arrays)
    back = PF.load_pools(tmp_path / "v2.npz", expect_digest=head["digest"])
    assert (back.version, back.score, back.tail) == (2, "logprob", 0.05)
    assert back.digest == head["digest"] != old.digest
    # saved again, it stays a version-2 file with the same digest
    again = PF.load_pools(PF.save_pools(tmp_path / "again.npz", back))
    assert (again.version, again.digest) == (2, head["digest"])


def test_new_pools_default_to_the_registered_test():
    pools = make_pools()
    assert (pools.test, pools.score, pools.tail, pools.alpha, pools.version) == (
        "rank+tail", "logodds", 0.02, 0.01, PF.POOLS_VERSION)


def test_the_paper_rules_draws_are_made_with_the_pools_and_bound_by_the_digest(tmp_path):
    from pmi_tutorial import fingerprint

    pools = make_pools(n_Q=100)  # 40 members, 100 non-members per class: n = 40 of RULE's 100
    assert pools.rule == dict(PF.RULE, n=40)
    bound = pools.rule_draws(3, 40, 100, 0)
    for r in pools.classes:  # the draws fingerprint.run would make, computed here anew
        want = fingerprint.draw_trials(40, 100, 3, 40, 100, fingerprint.class_seed(0, r))
        for k in ("member", "nonmember", "s", "u"):
            assert np.array_equal(getattr(bound[r], k), getattr(want, k))
    assert pools.rule_draws(3, 40, 100, 1) is None and pools.rule_draws(3, 30, 100, 0) is None
    assert make_pools(n_Q=100, rule=None).digest != pools.digest  # the digest covers the draws
    # too few non-members for the rule's trials (2 x 40 > 60): no draws stored, pools still work
    assert make_pools().rule is None and make_pools().rule_arrays is None
    path = PF.save_pools(tmp_path / "p.npz", pools)
    back = PF.load_pools(path, expect_digest=pools.digest)
    assert np.array_equal(back.rule_arrays["rule_member"], pools.rule_arrays["rule_member"])
    # edited draws: the checksum catches it; rewritten with fresh checksums and a fresh digest,
    # out-of-range or repeated indices are refused, and the registered digest refuses the rest
    arrays = _arrays(path)
    arrays["rule_u"] = arrays["rule_u"].copy()
    arrays["rule_u"][0, 0] = 0.5
    head = _header(arrays)
    arrays["header"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "edited.npz", **arrays)
    with pytest.raises(ValueError, match="checksum mismatch .* rule_u"):
        PF.load_pools(tmp_path / "edited.npz")
    for k, value, words in (("rule_member", 40, "out of range or repeat"),
                            ("rule_nonmember", None, "out of range or repeat"),
                            ("rule_s", 3, "out of range"), ("rule_u", 0.5, None)):
        arrays = _arrays(path)
        a = arrays[k].copy()
        if value is None:  # a repeated non-member within one trial
            a[0, 0, 0, 1] = a[0, 0, 0, 0]
        else:
            a.flat[0] = value
        arrays[k] = a
        head = _header(arrays)
        head["sha256"][k] = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode()
                                           + np.ascontiguousarray(a).tobytes()).hexdigest()
        head["digest"] = PF._digest(dict(head["settings"]), head["sha256"])
        arrays["header"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
        np.savez_compressed(tmp_path / "forged.npz", **arrays)
        if words is not None:
            with pytest.raises(ValueError, match=words):
                PF.load_pools(tmp_path / "forged.npz")
        else:  # self-consistent: only the registered digest tells it apart
            assert PF.load_pools(tmp_path / "forged.npz").digest != pools.digest
        with pytest.raises(ValueError, match=words or "not the registered"):
            PF.load_pools(tmp_path / "forged.npz", expect_digest=pools.digest)


def test_paper_rule_settings_that_are_not_integers_are_refused(tmp_path):
    arrays = _arrays(PF.save_pools(tmp_path / "p.npz", make_pools(n_Q=100)))
    head = _header(arrays)
    head["settings"]["rule"]["trials"] = "100"
    arrays["header"] = np.frombuffer(json.dumps(head).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="paper's-rule settings are not the integers") as info:
        PF.load_pools(tmp_path / "bad.npz")
    assert "\n" not in str(info.value)
