r"""The owner's pools file: P' and Q, and the test that will judge a suspect, fixed in advance.

Chapter "Beyond the paper", section "The owner's verification".  :class:`OwnerPools` holds the
owner's revealed members P' and non-members Q (images, labels, their indices in the data set)
and the verification's settings (the primary test and its level alpha, the tail test's share,
the combination rule, the permutations B).  :func:`save_pools` writes them once, atomically,
with a SHA-256 checksum of every array and one **digest** over all the checksums and the
settings; :func:`load_pools` reads a file back only if every checksum and the digest match,
and, given the digest the owner registered before examining any suspect
(``expect_digest``), only if the file is that one.  A pools file is untrusted input: it is read
with ``allow_pickle=False``, and anything that is not a pools file is refused in one line.

Why the registered digest matters: the checksums inside the file prove only that the file is
self-consistent; whoever rewrites it (other images, an edited index) can write fresh checksums
too.  The digest the owner gave the other party (or timestamped) before seeing the suspect
binds the owner to the pools, the test and alpha: a file chosen after looking at the suspect
has another digest.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _validate as V

POOLS_FORMAT = "pmi-tutorial-pools"
POOLS_VERSION = 3
READABLE_VERSIONS = (2, 3)  # version 2: no score setting (log-probabilities), tail share 0.05
ARRAYS = ("P_x", "P_y", "Q_x", "Q_y", "P_index", "Q_index")
TESTS = {
    "rank+tail": "Bonferroni over the rank and the tail test",
    "rank": "one-sided Mann-Whitney U per class",
    "tail": "exact count of members among the least confident",
    "permutation": "directional permutation test",
}
DEFAULT_TEST = "rank+tail"
DEFAULT_ALPHA = 0.01
# The primary test as the confirmatory study registered it (registrations/confirmatory.json):
# rank and tail test, Bonferroni, on the log-odds of the true class, tail share 2%.
TAIL = 0.02  # the tail test's share of least confident pooled samples
SCORES = {
    "logodds": "log-odds of the true class, z_r - logsumexp of the other logits (float64)",
    "logprob": "log-probability of the true class (log-softmax; ties once it rounds to 0)",
}
DEFAULT_SCORE = "logodds"
# The paper's rule, printed by verify for comparison: its trials' draws (which members and
# non-members, where the member block sits, the tie-break) depend only on the pool sizes and
# these settings, so they are made once with the pools and bound by the digest.
RULE = {"m": 3, "n": 100, "trials": 100, "seed": 0}
RULE_ARRAYS = ("rule_member", "rule_nonmember", "rule_s", "rule_u")
COMBINES = ("stouffer", "fisher")
_ZIP_MAGIC = b"PK\x03\x04"


def check_settings(alpha, test, tail, combine, B, score=DEFAULT_SCORE) -> dict:
    """The verification's settings, checked: ``{alpha, test, tail, combine, B, score}``."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < float(alpha) < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}; e.g. alpha=0.01")
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; use one of {', '.join(TESTS)}")
    if isinstance(tail, bool) or not isinstance(tail, (int, float)) or not 0 < float(tail) < 1:
        raise ValueError(f"the tail share must be in (0, 1), got {tail!r}; e.g. 0.05")
    if combine not in COMBINES:
        raise ValueError(f"unknown combine rule {combine!r}; use one of {', '.join(COMBINES)}")
    V.check_positive_int(B, "B")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; use one of {', '.join(SCORES)}")
    return {"alpha": float(alpha), "test": test, "tail": float(tail), "combine": combine,
            "B": int(B), "score": score}


def _sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


@dataclass
class OwnerPools:
    """The owner's revealed members P' and non-members Q, per class, and the test fixed for them.

    ``P_x`` / ``Q_x``: float32 image arrays (N, C, H, W), normalized as the models expect
    (:func:`pmi_tutorial.data.normalize`); ``P_y`` / ``Q_y``: their labels; ``classes``: the
    class ids; ``dataset``: the data set's name; ``info``: where they come from (``P_index`` /
    ``Q_index``: their positions in the data set, seeds).  ``alpha``, ``test``, ``tail``,
    ``combine``, ``B``, ``score``: the verification's settings (:func:`check_settings`), fixed
    with the pools (``B`` None: 999, or fewer when a class has fewer re-splits; ``score``: what
    the tests rank, :data:`SCORES`).  ``digest`` covers all of it.  ``version``: the file
    format the digest is computed in (2: files written before the score was a setting; they
    use log-probabilities).
    """

    dataset: str
    classes: tuple
    P_x: np.ndarray
    P_y: np.ndarray
    Q_x: np.ndarray
    Q_y: np.ndarray
    info: dict = field(default_factory=dict)
    alpha: float = DEFAULT_ALPHA
    test: str = DEFAULT_TEST
    tail: float = TAIL
    combine: str = "stouffer"
    B: int | None = None
    score: str = DEFAULT_SCORE
    version: int = POOLS_VERSION
    rule: dict | None = field(default_factory=lambda: dict(RULE))
    rule_arrays: dict | None = None

    def __post_init__(self):
        for name, dtype in (("P_x", np.float32), ("Q_x", np.float32), ("P_y", np.int64),
                            ("Q_y", np.int64)):
            a = np.ascontiguousarray(np.asarray(getattr(self, name), dtype=dtype)).view()
            a.flags.writeable = False  # a read-only view: the digest identifies these arrays
            setattr(self, name, a)
        self.classes = tuple(int(r) for r in self.classes)
        self.info = dict(self.info)
        if len(self.P_x) != len(self.P_y) or len(self.Q_x) != len(self.Q_y):
            raise ValueError("each pool needs one label per image; pass P_y with len(P_x) labels "
                             "and Q_y with len(Q_x)")
        for r in self.classes:
            if not (self.P_y == r).any() or not (self.Q_y == r).any():
                raise ValueError(f"class {r} has no member or no non-member image in the pools; "
                                 "reveal members of every class listed in `classes`")
        most = self.max_B()
        if self.B is None:
            self.B = min(999, most)
        check_settings(self.alpha, self.test, self.tail, self.combine, self.B, self.score)
        if self.version not in READABLE_VERSIONS:
            raise ValueError(f"pools version {self.version!r} is not one of {READABLE_VERSIONS}; "
                             f"leave version at its default {POOLS_VERSION}")
        if self.version == 2 and self.score != "logprob":
            raise ValueError("version-2 pools use log-probabilities; pass score='logprob' with "
                             "version=2, or drop version")
        if self.B > most:
            raise ValueError(f"B = {self.B} permutations, but a class has {most + 1} pooled "
                             f"samples, {most} distinct re-splits of the permutation test; lower "
                             f"B to <= {most}")
        self._bind_rule_draws()

    def _bind_rule_draws(self) -> None:
        """Make (or check) the paper's rule's draws for :data:`RULE`; none for version 2."""
        if self.version == 2 or self.rule is None:
            self.rule, self.rule_arrays = None, None
            return
        rule = {k: int(self.rule[k]) for k in RULE}
        n_eff = min(rule["n"], min(int((self.P_y == r).sum()) for r in self.classes))
        n_Q = min(int((self.Q_y == r).sum()) for r in self.classes)
        if n_Q < n_eff * (rule["m"] - 1):  # too few non-members for the rule's trials
            self.rule, self.rule_arrays = None, None
            return
        self.rule = dict(rule, n=n_eff)
        given = self.rule_arrays is not None
        if not given:
            from .fingerprint import class_seed, draw_trials

            d = {r: draw_trials(int((self.P_y == r).sum()), int((self.Q_y == r).sum()),
                                rule["m"], n_eff, rule["trials"], seed=class_seed(rule["seed"], r))
                 for r in self.classes}
            self.rule_arrays = {
                "rule_member": np.stack([d[r].member for r in self.classes]).astype(np.int32),
                "rule_nonmember": np.stack([d[r].nonmember for r in self.classes]).astype(np.int32),
                "rule_s": np.stack([d[r].s for r in self.classes]).astype(np.int32),
                "rule_u": np.stack([d[r].u for r in self.classes]).astype(np.float64)}
        if given:  # read from a file: untrusted
            self._check_rule_arrays()
        for a in self.rule_arrays.values():
            a.flags.writeable = False

    def _check_rule_arrays(self) -> None:
        """Stored draws are untrusted: shapes, index ranges, distinct indices within a trial."""
        a, (m, n, t) = self.rule_arrays, (self.rule["m"], self.rule["n"], self.rule["trials"])
        C = len(self.classes)
        want = {"rule_member": (C, t, n), "rule_nonmember": (C, t, m - 1, n), "rule_s": (C, t),
                "rule_u": (C, t)}
        bad = [k for k in want if k not in a or np.shape(a[k]) != want[k]]
        if bad:
            raise ValueError(f"the paper's rule's draws ({', '.join(bad)}) do not have the "
                             "shapes of the pools' settings; write the pools again with "
                             "`python -m pmi_tutorial pools`")
        ok = np.all((a["rule_s"] >= 0) & (a["rule_s"] < m)) and np.all(
            (a["rule_u"] >= 0) & (a["rule_u"] < 1))
        for i, r in enumerate(self.classes):
            nP, nQ = int((self.P_y == r).sum()), int((self.Q_y == r).sum())
            mem, non = a["rule_member"][i], a["rule_nonmember"][i].reshape(t, -1)
            for idx, size in ((mem, nP), (non, nQ)):
                srt = np.sort(idx, axis=1)
                ok = ok and srt.min() >= 0 and srt.max() < size and not (
                    np.diff(srt, axis=1) == 0).any()
        if not ok:
            raise ValueError("the paper's rule's draws in the pools are out of range or repeat a "
                             "sample within a trial; write the pools again with "
                             "`python -m pmi_tutorial pools`")

    def rule_draws(self, m: int, n: int, trials: int, seed: int) -> dict | None:
        """``{r: fingerprint.Draws}`` bound in the pools when (m, n, trials, seed) are the
        pools' :data:`RULE` settings, else None (the caller draws them)."""
        if self.rule is None or (m, n, trials, seed) != tuple(self.rule[k] for k in RULE):
            return None
        from .fingerprint import Draws

        a = self.rule_arrays
        return {r: Draws(a["rule_member"][i].astype(np.int64),
                         a["rule_nonmember"][i].astype(np.int64), a["rule_s"][i].astype(np.int64),
                         a["rule_u"][i]) for i, r in enumerate(self.classes)}

    def max_B(self, classes=None) -> int:
        """The most re-splits the permutation test can draw: the smallest class's size of P' plus its size of Q, minus 1."""
        chosen = self.classes if classes is None else classes
        return min(int((self.P_y == r).sum() + (self.Q_y == r).sum()) for r in chosen) - 1

    def settings(self) -> dict:
        """What the digest binds besides the arrays: the test, alpha, the sizes, the data set."""
        checked = check_settings(self.alpha, self.test, self.tail, self.combine, self.B,
                                 self.score)
        if self.version == 2:  # written before the score was a setting: the digest as it was
            del checked["score"]
        else:
            checked["rule"] = self.rule
        return {"dataset": self.dataset, "classes": list(self.classes), **checked,
                "sizes": self.sizes(),
                "source": {k: v for k, v in self.info.items() if k not in ("P_index", "Q_index")}}

    def arrays(self) -> dict:
        out = {"P_x": self.P_x, "P_y": self.P_y, "Q_x": self.Q_x, "Q_y": self.Q_y}
        for k in ("P_index", "Q_index"):
            if self.info.get(k) is not None:
                out[k] = np.asarray(self.info[k], dtype=np.int64)
        if self.rule_arrays is not None:
            out.update(self.rule_arrays)
        return out

    def checksums(self) -> dict:
        """SHA-256 of every array (dtype, shape and bytes)."""
        return {k: _sha256(v) for k, v in self.arrays().items()}

    @property
    def digest(self) -> str:
        """SHA-256 over the checksums of every array and the settings: one value to register.

        Hashing the images takes a while (100 MB for 30,000 MNIST images), so it is computed
        once: the arrays are read-only views, and the settings and indices are part of the key
        (changing them gives a new digest)."""
        key = (self.settings_key(), tuple(self.info.get("P_index") or ()),
               tuple(self.info.get("Q_index") or ()))
        cached = self.__dict__.get("_digest_cache")
        if cached is None or cached[0] != key:
            cached = (key, _digest(self.settings(), self.checksums(), self.version))
            self.__dict__["_digest_cache"] = cached
        return cached[1]

    def settings_key(self) -> str:
        return json.dumps(self.settings(), sort_keys=True)

    def class_pools(self) -> dict:
        """``{r: data.Pools(P, Q, r)}`` (torch tensors), as :func:`data.all_class_pools` gives."""
        import torch

        from .data import Pools

        return {r: Pools(torch.from_numpy(self.P_x[self.P_y == r]),
                         torch.from_numpy(self.Q_x[self.Q_y == r]), r) for r in self.classes}

    def sizes(self) -> dict:
        return {str(r): [int((self.P_y == r).sum()), int((self.Q_y == r).sum())]
                for r in self.classes}


def _digest(settings: dict, checksums: dict, version: int = POOLS_VERSION) -> str:
    text = json.dumps({"format": POOLS_FORMAT, "version": version, "settings": settings,
                       "sha256": checksums}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def check_digest(text, name: str = "--expect-digest") -> str:
    """A registered digest: 64 hexadecimal characters (case ignored)."""
    t = str(text).strip().lower()
    if len(t) != 64 or any(ch not in "0123456789abcdef" for ch in t):
        raise ValueError(f"{name} must be the 64 hexadecimal characters that `pools` printed, got "
                         f"{str(text)[:80]!r}")
    return t


def pools_from_split(split, revealed_per_class=None, seed: int = 0, classes=None,
                     **settings) -> OwnerPools:
    """The owner's pools of a :class:`~pmi_tutorial.data.Split`: P' = ``revealed_per_class``
    training images per class drawn at random (seeded; None: all of them), Q = every validation
    image of the class.  ``settings``: ``alpha``, ``test``, ``tail``, ``combine``, ``B`` of
    :class:`OwnerPools`."""
    classes = list(range(split.num_classes)) if classes is None else [int(r) for r in classes]
    y, vy = split.train_y.numpy(), split.val_y.numpy()
    rng = np.random.default_rng([int(seed), 60221])
    P_idx, Q_idx = [], []
    for r in classes:
        pos = np.flatnonzero(y == r)
        if revealed_per_class is not None:
            k = V.check_positive_int(revealed_per_class, "revealed_per_class")
            if k > len(pos):
                raise ValueError(f"class {r} has {len(pos)} training images, cannot reveal {k}; "
                                 f"lower revealed_per_class to <= {len(pos)}")
            pos = np.sort(rng.choice(pos, k, replace=False))
        P_idx.append(pos)
        Q_idx.append(np.flatnonzero(vy == r))
    P_idx, Q_idx = np.concatenate(P_idx), np.concatenate(Q_idx)
    info = {"split_seed": int(split.seed), "revealed_per_class": revealed_per_class,
            "draw_seed": int(seed), "P_index": split.train_index[P_idx].tolist(),
            "Q_index": split.val_index[Q_idx].tolist()}
    return OwnerPools(split.name, tuple(classes), split.train_x.numpy()[P_idx], y[P_idx],
                      split.val_x.numpy()[Q_idx], vy[Q_idx], info, **settings)


def save_pools(path, pools: OwnerPools) -> Path:
    """Write ``pools`` to ``path`` (.npz, compressed) once: the arrays plus a JSON header with
    the format, the settings, the SHA-256 of every array and the digest; atomically
    (:func:`pmi_tutorial.files.write_bytes_atomic`).  Returns the path."""
    from .files import write_bytes_atomic

    path = Path(path)
    head = {"format": POOLS_FORMAT, "version": pools.version, "settings": pools.settings(),
            "sha256": pools.checksums(), "digest": pools.digest}
    buf = io.BytesIO()
    np.savez_compressed(buf, header=np.frombuffer(json.dumps(head).encode(), dtype=np.uint8),
                        **pools.arrays())
    write_bytes_atomic(path, buf.getvalue())
    return path


def _not_pools(path, why: str) -> ValueError:
    return ValueError(f"{path} is not a pools file of pmi_tutorial ({why}); pass the file that "
                      "`python -m pmi_tutorial pools --out FILE` wrote")


def load_pools(path, dataset: str | None = None, expect_digest: str | None = None) -> OwnerPools:
    """Read a pools file written by :func:`save_pools`, verifying every checksum and the digest.

    ``dataset``: the data set the suspect is built for; pools of another data set are refused.
    ``expect_digest``: the digest the owner registered (printed by ``pools``); a file with any
    other digest is refused, even one whose checksums are all consistent.  The file is read
    with ``allow_pickle=False``.  Raises FileNotFoundError for a missing file, ValueError (one
    line, naming the fix) for anything else.
    """
    import zipfile

    path = Path(path)
    expect = check_digest(expect_digest) if expect_digest is not None else None
    if not path.is_file():
        raise FileNotFoundError(
            f"no pools file at {path}; check the path, or write one first with "
            "`python -m pmi_tutorial pools --out FILE` (pools_file.save_pools)")
    with open(path, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise _not_pools(path, "not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "header" not in z.files:
                raise _not_pools(path, "an .npz archive without the pools header")
            arrays = {k: z[k] for k in z.files}
        head = json.loads(bytes(arrays.pop("header")).decode())
        if not isinstance(head, dict):
            raise _not_pools(path, "its header is not a JSON object")
    except ValueError as exc:
        if str(exc).startswith(f"{path} is not a pools file"):
            raise
        raise _not_pools(path, " ".join(str(exc).split())[:200]) from None
    except (OSError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise _not_pools(path, f"unreadable: {type(exc).__name__}") from None
    if head.get("format") != POOLS_FORMAT:
        raise _not_pools(path, "no pmi-tutorial-pools header")
    version = head.get("version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path} is a version-{version} pools file; this version reads versions "
                         f"{' and '.join(map(str, READABLE_VERSIONS))} (their digest covers the "
                         "test and alpha): write the pools again with `python -m pmi_tutorial "
                         "pools` and register the new digest")
    try:
        s = head["settings"]
        source = dict(s.get("source", {}))
        for k in ("P_index", "Q_index"):
            if k in arrays:
                source[k] = arrays.pop(k).tolist()
        rule = s.get("rule") if version != 2 else None
        rule_arrays = {k: arrays.pop(k) for k in RULE_ARRAYS if k in arrays} if rule else None
        if rule is not None and (not isinstance(rule, dict) or set(rule) != set(RULE) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in rule.values())):
            raise _not_pools(path, "its paper's-rule settings are not the integers "
                             + ", ".join(RULE))
        pools = OwnerPools(s["dataset"], tuple(s["classes"]), arrays["P_x"], arrays["P_y"],
                           arrays["Q_x"], arrays["Q_y"], source, alpha=s["alpha"], test=s["test"],
                           tail=s["tail"], combine=s["combine"], B=s["B"],
                           score=s["score"] if version != 2 else "logprob", version=version,
                           rule=rule, rule_arrays=rule_arrays)
    except (KeyError, TypeError) as exc:
        raise _not_pools(path, f"the header or the arrays lack {exc}") from None
    sums = pools.checksums()
    stored = dict(head.get("sha256") or {})
    bad = sorted(k for k in set(sums) | set(stored) if sums.get(k) != stored.get(k))
    if bad:
        raise ValueError(f"checksum mismatch in {path} for {', '.join(bad)}: the pools changed "
                         "since they were saved; use the original file (a verification must use "
                         "exactly the images the owner fixed)")
    if pools.digest != head.get("digest"):
        raise ValueError(f"the digest stored in {path} does not match its arrays and settings: "
                         "the file was edited after it was saved; use the original file")
    if expect is not None and pools.digest != expect:
        raise ValueError(f"the pools file {path} has digest {pools.digest[:16]}..., not the "
                         f"registered {expect[:16]}...: these are not the pools fixed before the "
                         "suspect was examined; use the registered file")
    if dataset is not None and pools.dataset != dataset:
        raise ValueError(f"the pools in {path} are {pools.dataset} images, but the suspect is "
                         f"built for {dataset}; pass the owner's {dataset} pools file")
    return pools


def revealed_is_small(pools: OwnerPools, classes=None) -> int | None:
    """The smallest number of revealed members of a class when it is below 100 (one draw's
    luck then moves the p-value by orders of magnitude), else None."""
    chosen = pools.classes if classes is None else classes
    k = min(int((pools.P_y == r).sum()) for r in chosen)
    return k if k < 100 else None


__all__ = ["OwnerPools", "save_pools", "load_pools", "pools_from_split", "check_settings",
           "check_digest", "TESTS", "DEFAULT_TEST", "DEFAULT_ALPHA", "TAIL", "POOLS_FORMAT",
           "POOLS_VERSION", "READABLE_VERSIONS", "SCORES", "DEFAULT_SCORE", "RULE", "revealed_is_small"]
