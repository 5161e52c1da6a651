r"""The trials' draws: NumPy's per-trial loop against a vectorised replay of the same numbers.

``fingerprint.draw_trials`` defines the random stream of the trials as a loop, one
``rng.integers(m)`` and two ``rng.choice(..., replace=False)`` per trial, then
``rng.random(t)``; every committed result depends on that stream.  This benchmark answers
whether a vectorised computation of *the same numbers* would make the verification cheaper.

The replay below (``trial_draws_many``) reproduces the loop number for number, for the trials
of many classes at once (asserted for every size measured):

* every bounded integer the loop draws comes from one ``rng.integers(0, highs)`` call per class,
  ``highs`` listing the ranges in the loop's order: NumPy draws each element of an array of
  bounds exactly as it draws a scalar one (Lemire's method on the same 32-bit stream,
  rejections and the buffered half-word included), so ``rng.random(t)`` then gives the same
  tie-break uniforms and the generator ends where the loop leaves it;
* ``choice(N, size, replace=False)`` is, in NumPy, Floyd's algorithm (for ``j = N - size, ...,
  N - 1`` a bounded integer v in ``[0, j]``, or j itself when v was taken already) followed by
  a Fisher-Yates shuffle of the sample (for ``i = size - 1, ..., 1`` swap positions i and a
  bounded integer in ``[0, i]``); or, when ``N > 10000`` and ``size > N // 50``, a Fisher-Yates
  shuffle of the tail of ``arange(N)``.  Both are replayed from those integers: Floyd's
  duplicates for all rows at once (a lookup table, then pointer doubling along the chains of
  j taken in place of v), the shuffle one position at a time for all rows of all classes.

It is not faster: the loop's ``choice`` runs Floyd's algorithm and the shuffle in C, and the
one ``rng.integers`` call over the same bounded integers alone costs about a third of the loop
(printed), and replaying Floyd's duplicates and the shuffle in NumPy costs more than the rest
of the loop.  Measured on the loaded 2-core machine (CPU seconds, medians of 9 interleaved
runs) the loop took 30-34 ms for 10 classes of 100 trials and the replay 32-43 ms (loop/replay
0.72x, 0.77x, 1.04x on the three pool sizes below); timed as whole processes (30 rounds of the
10 classes, 7 paired runs, user + system CPU) loop/replay was 0.82x on the quick and 0.89x on
the full pools' sizes: the replay spends less user time (loop/replay 1.18x, 1.28x) but more in
the kernel, faulting in its larger arrays.  So ``fingerprint`` keeps the loop: the draws of the
paper's rule cost about 3 ms per class of 100 trials either way.

    python benchmarks/draws.py            # the owner's quick and full pools, the paper's t
    python benchmarks/draws.py --quick    # fewer repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

#: ``choice`` shuffles the tail of ``arange(N)`` instead of running Floyd's algorithm when
#: ``N > TAIL_MIN_POP`` and ``size > N // TAIL_CUTOFF`` (NumPy's rule for shuffle=True)
TAIL_MIN_POP, TAIL_CUTOFF = 10000, 50
#: largest lookup table (entries) for Floyd's duplicates; beyond it they are found by sorting
TABLE_MAX = 1 << 25


def tail_branch(pop: int, size: int) -> bool:
    """Whether ``choice(pop, size, replace=False)`` shuffles the tail of ``arange(pop)``."""
    return pop > TAIL_MIN_POP and size > pop // TAIL_CUTOFF


def choice_highs(pop: int, size: int) -> np.ndarray:
    """The exclusive upper bounds of the bounded integers one ``choice(pop, size,
    replace=False)`` draws, in order (Floyd's j = 0, which draws nothing, left out)."""
    if tail_branch(pop, size):
        return np.arange(pop, max(pop - size, 1), -1, dtype=np.int64)
    floyd = np.arange(max(pop - size, 1), pop, dtype=np.int64) + 1
    return np.concatenate([floyd, np.arange(size, 1, -1, dtype=np.int64)])


def floyd(vals: np.ndarray, pops: np.ndarray, size: int) -> np.ndarray:
    """Floyd's samples from the (R, size) bounded integers v_k in [0, j_k], j_k = pop - size + k
    of each row (``pops`` (R,)): v_k, or j_k where v_k is in the sample already.

    v_k is in the sample when it equals an earlier v (found with a lookup table indexed by
    value, or by sorting when the pools are too large for one), or an earlier j_k' that was
    taken in place of its v_k' (followed until nothing changes: each pass settles one more
    link of such a chain).
    """
    R = len(vals)
    k = np.arange(size)[None, :]
    base = (pops - size)[:, None]
    if int(pops.sum()) <= TABLE_MAX:
        start = np.concatenate([[0], np.cumsum(pops)[:-1]])[:, None]
        slot = (start + vals).ravel()
        first = np.full(int(pops.sum()), size, dtype=np.int16 if size < 1 << 15 else np.int64)
        np.minimum.at(first, slot, np.broadcast_to(k, vals.shape).ravel().astype(first.dtype))
        seen = first[slot].reshape(vals.shape) != k
    else:
        order = np.argsort(vals, axis=1, kind="stable")
        ranked = np.take_along_axis(vals, order, axis=1)
        seen = np.zeros(vals.shape, dtype=bool)
        seen[np.arange(R)[:, None], order[:, 1:]] = ranked[:, 1:] == ranked[:, :-1]
    # taken_k = seen_k, or (v_k is an earlier j_k') and taken_k': follow the links to their
    # ends by pointer doubling (log2 of the longest chain passes)
    ref = vals - base
    follow = (ref >= 0) & (ref < k) & ~seen
    flat = np.arange(vals.size).reshape(vals.shape)
    ptr = np.where(follow, flat - k + ref, flat).ravel()
    while True:
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    taken = seen.ravel()[ptr].reshape(vals.shape)
    return np.where(taken, base + k, vals)


def shuffle(arr: np.ndarray, swaps: np.ndarray, first: int = 1) -> np.ndarray:
    """Each row of ``arr`` (R, K) after "for i = K-1 down to ``first``: swap positions i and
    ``swaps[:, K-1-i]``": one vectorised swap per position, for all rows at once."""
    R, K = arr.shape
    flat = np.array(arr.T, dtype=np.int64).ravel()  # position-major: step i touches a block
    steps = range(K - 1, first - 1, -1)
    at = swaps[:, :len(steps)].T * R + np.arange(R)  # (steps, R) flat indices of positions j
    for step, i in enumerate(steps):
        held = flat[i * R:(i + 1) * R].copy()
        flat[i * R:(i + 1) * R] = flat.take(at[step])
        flat.put(at[step], held)
    return flat.reshape(K, R).T


def _choices(parts, size: int) -> dict:
    """``{index: (t, size) samples}`` for ``parts`` = [(index, pop, (t, ·) integers)], the
    Floyd-branch ones batched together."""
    out, batch = {}, []
    for i, pop, vals in parts:
        if tail_branch(pop, size):
            t = len(vals)
            full = shuffle(np.broadcast_to(np.arange(pop), (t, pop)), vals, max(pop - size, 1))
            out[i] = np.ascontiguousarray(full[:, pop - size:])
        else:
            batch.append((i, pop, vals))
    if batch:
        t = len(batch[0][2])
        vals = np.concatenate([v for _, _, v in batch])
        pops = np.repeat(np.array([p for _, p, _ in batch], dtype=np.int64), t)
        n_floyd = vals.shape[1] - (size - 1)
        fv = vals[:, :n_floyd]
        if n_floyd < size:  # pop == size: Floyd's first j is 0, drawn as 0 without a number
            fv = np.concatenate([np.zeros((len(vals), 1), dtype=np.int64), fv], axis=1)
        sample = shuffle(floyd(fv, pops, size), vals[:, n_floyd:], 1)
        for b, (i, _, _) in enumerate(batch):
            out[i] = np.ascontiguousarray(sample[b * t:(b + 1) * t])
    return out


def trial_draws_many(specs, m: int, n: int, trials: int) -> list:
    """For each ``(n_P, n_Q, seed)`` in ``specs``: ``(member, nonmember, s, u)`` exactly as the
    loop of :func:`pmi_tutorial.fingerprint.draw_trials` draws them from
    ``numpy.random.default_rng(seed)`` (a Generator passed as seed is advanced as the loop
    advances it), or None where this module does not reproduce NumPy."""
    N = n * (m - 1)
    out = [None] * len(specs)
    members, nonmembers, rest = [], [], {}
    for i, (n_P, n_Q, seed) in enumerate(specs):
        rng = np.random.default_rng(seed)
        if type(rng.bit_generator) is not np.random.PCG64 or max(n_P, n_Q) >= 0xFFFFFFFF:
            continue
        hm, hq = choice_highs(n_P, n), choice_highs(n_Q, N)
        per_trial = np.concatenate([[m], hm, hq])
        vals = rng.integers(0, np.tile(per_trial, trials)).reshape(trials, len(per_trial))
        rest[i] = (vals[:, 0].copy(), rng.random(trials))
        members.append((i, n_P, vals[:, 1:1 + len(hm)]))
        nonmembers.append((i, n_Q, vals[:, 1 + len(hm):]))
    member, nonmember = _choices(members, n), _choices(nonmembers, N)
    for i, (s, u) in rest.items():
        out[i] = (member[i], nonmember[i].reshape(trials, m - 1, n), s, u)
    return out


# --------------------------------------------------------------------------- the loop
def loop_draws(seed, n_P, n_Q, m, n, trials):
    """``fingerprint._draw``'s loop (the definition of the stream), uncached."""
    from pmi_tutorial import fingerprint

    d = fingerprint._draw(n_P, n_Q, m, n, trials, seed)
    return d.member, d.nonmember, d.s, d.u


def check_exact():
    """The replay equals the loop on sizes that reach every branch (asserted)."""
    cases = [(100, 200, 3, 100, 20), (12, 30, 4, 3, 50), (20000, 30000, 3, 300, 3),
             (5, 8, 2, 5, 30), (10, 10, 3, 5, 20), (2**31 + 5, 2**31 + 7, 3, 4, 100)]
    for n_P, n_Q, m, n, t in cases:
        specs = [(n_P, n_Q, [0, r]) for r in range(3)]
        for (_, _, seed), got in zip(specs, trial_draws_many(specs, m, n, t)):
            want = loop_draws(seed, n_P, n_Q, m, n, t)
            assert all(np.array_equal(a, b) for a, b in zip(want, got)), (n_P, n_Q, m, n, t)
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    loop_draws(a, 50, 80, 3, 10, 9)
    trial_draws_many([(50, 80, b)], 3, 10, 9)
    assert a.bit_generator.state == b.bit_generator.state


def cpu(f):
    c = time.process_time()
    f()
    return time.process_time() - c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args(argv)
    check_exact()
    reps = 3 if args.quick else 9
    m, n, t, c = 3, 100, 100, 10
    print(f"draws of the paper's rule in verify (m={m}, n={n}, t={t}, {c} classes, one seed "
          f"each); CPU ms, medians of {reps} interleaved runs; replay == loop asserted")
    print(f"{'pools (P, Q per class)':<24} {'loop':>8} {'replay':>8} {'loop/replay':>12} "
          f"{'integers alone':>15}")
    for label, n_P, n_Q in (("quick (100, 200)", 100, 200), ("full (1000, ~2000)", 1000, 2000),
                            ("study (5000, 2000)", 5000, 2000)):
        specs = [(n_P, n_Q, [0, r]) for r in range(c)]
        highs = np.tile(np.concatenate([[m], choice_highs(n_P, n), choice_highs(n_Q, n * (m - 1))]), t)
        lo, re, ints = [], [], []
        for _ in range(reps):
            lo.append(cpu(lambda: [loop_draws(sd, a, b, m, n, t) for a, b, sd in specs]))
            re.append(cpu(lambda: trial_draws_many(specs, m, n, t)))
            ints.append(cpu(lambda: [np.random.default_rng(sd).integers(0, highs)
                                     for _, _, sd in specs]))
        lo, re, ints = (1e3 * statistics.median(x) for x in (lo, re, ints))
        print(f"{label:<24} {lo:8.1f} {re:8.1f} {lo / re:11.2f}x {ints:14.1f}", flush=True)


if __name__ == "__main__":
    main()
