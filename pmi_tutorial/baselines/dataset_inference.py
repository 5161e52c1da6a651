r"""Dataset Inference, black-box variant (the peer method; book chapter "Beyond the paper").

Dataset Inference (P. Maini, M. Yaghini and N. Papernot, "Dataset Inference: Ownership
Resolution in Machine Learning", ICLR 2021) asks the same question as PMI, "was this model
trained on my data?", through a different lens: a model trained on a sample tends to put that
sample *farther from its decision boundary* than a sample it never saw.  The method has three
parts, each a function here, written from the paper's description (and checked against the
authors' public code for the constants):

1. **Embedding by a blind walk** (:func:`blind_walk`, label-only access).  For each sample x
   with label y, and each of the norms :math:`\ell_\infty, \ell_2, \ell_1`, draw ``directions``
   random directions :math:`\delta` (uniform, Gaussian and Laplace noise respectively, in pixel
   units) and walk along :math:`x + k\delta`, k = 1, 2, ..., ``steps`` (clipped to the valid
   pixel box), until the suspect's predicted label differs from y.  The norm of the step taken
   is the sample's distance in that direction; the ``3 * directions`` distances are the
   embedding.  Only predicted labels are used, so the suspect can be an API that returns labels.
2. **A membership regressor** (:func:`fit_regressor`), trained on the *owner's* model: the
   embeddings of known members (training images) against those of known non-members (held-out
   images), a one-hidden-layer network with a tanh output trained to +1 on members and -1 on
   non-members.  These images must be disjoint from the ones revealed in the test.
3. **A one-sided Welch t-test** (:func:`welch_test`) on the regressor's scores of the revealed
   members against the revealed non-members on the *suspect*: a suspect that learned from the
   owner's data scores the revealed members higher.  The paper repeats the test on random
   draws of ``num_revealed`` samples and aggregates the p-values (the public code: their
   harmonic mean); :meth:`DatasetInference.test` does the same.

**What the p-value means, and where it breaks.**  The t-test's null hypothesis is "the mean
score of the revealed members equals that of the revealed non-members on the suspect"; its
p-value is exact only for normal scores and approximate otherwise (a central-limit
approximation: good for tens of samples, rough for a handful).  The harmonic mean of p-values
from overlapping draws is not itself a p-value: it is what the paper reports, and it is
reported here under that name.  An independent model trained on other data *from the same
distribution* can place the owner's training images farther from its boundary than the
owner's held-out images only if those two sets differ in distribution: when they are a random
split of one population, the null holds and the test is calibrated; when they are not (for
example members chosen from an easier part of the data), every model looks guilty
(Szyller et al., "On the Robustness of Dataset Inference", TMLR 2023).

**Two aggregations.**  Ours scores one image at a time: its 3 x ``directions`` distances are
one row of the regressor, the regressor is trained on images other than the revealed ones, and
"k revealed" means k images per side.  The authors' CIFAR-10 notebook (:func:`authors_rows`,
:func:`authors_test`) transposes the (images, directions, norms) tensor before cutting it into
rows of 30: each row holds *one* norm and direction of 30 *different* images, the regressor is
trained on the first half of the rows (the l-infinity norm and part of the l2 norm) and tested
on the second (the rest of l2 and the l1 norm) of the same images, and "m revealed" means m
rows, about 30 m images per side.  A test on 10 of its rows therefore uses about as many
images as ours on 300.

Shapes: images are the normalized float tensors the models take (N, C, H, W); ``box`` and
``unit`` say where the pixel range [0, 1] lies in that space (:func:`pixel_space`), so that the
walk's step sizes and the reported distances are in pixel units whatever the normalization.

**Why one module of about 600 lines.**  It is one method from one paper, read top to bottom as
the paper describes it: the walk, the regressor, the test, the class that chains them, and the
authors' aggregation beside ours.  Each part is short and the parts share the walk's
conventions (pixel box, step sizes, block-wise direction draws), so a split would scatter one
method over five files without making any part easier to check; ``tests/test_dataset_inference.py``
mirrors it section by section.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import _validate as V

NORMS = ("linf", "l2", "l1")
#: the size of one walk step in pixel units, per norm: the half-width of the uniform noise
#: (linf), the standard deviation of the Gaussian noise (l2), the scale of the Laplace noise (l1)
STEP = {"linf": 0.005, "l2": 0.005, "l1": 0.01}
#: samples per block of direction draws: the draws do not depend on the batch size
_BLOCK = 64
#: fewest known members (and non-members) for fitting the regressor
MIN_KNOWN = 10
AGGREGATES = ("hmean", "median", "max")


# --------------------------------------------------------------------------------------------
# Input space
# --------------------------------------------------------------------------------------------


def pixel_space(dataset: str):
    r"""``(box, unit)`` for images normalized by :func:`pmi_tutorial.data.normalize`.

    ``box = (lo, hi)`` are tensors (C, 1, 1) with the normalized values of pixels 0 and 1, and
    ``unit`` (C, 1, 1) is the normalized size of one pixel unit (1 / std): a step of
    :math:`\delta` pixel units is a step of ``unit * delta`` in the model's input.
    """
    from ..data import MEAN, STD, check_dataset

    name = check_dataset(dataset)
    mean = torch.tensor(MEAN[name], dtype=torch.float32).view(-1, 1, 1)
    std = torch.tensor(STD[name], dtype=torch.float32).view(-1, 1, 1)
    return ((0.0 - mean) / std, (1.0 - mean) / std), 1.0 / std


def _walk_model(predict):
    """What the walk queries: a module with convolutions is copied once into channels-last
    memory layout, which runs the walk of a LeNet-5 on one CPU thread 1.5-2x as fast as the
    default layout (``benchmarks/di_walk.py``) with the same predictions (the arithmetic
    differs only in float round-off); anything else
    (a module without convolutions, a label-returning callable) is queried as given."""
    import copy

    if isinstance(predict, torch.nn.Module) and any(
            isinstance(m, torch.nn.Conv2d) for m in predict.modules()):
        return _ChannelsLast(copy.deepcopy(predict).to(memory_format=torch.channels_last))
    return predict


class _ChannelsLast(torch.nn.Module):
    """A channels-last copy of a convolutional model, fed channels-last images."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        if x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)


def _labels(predict, xb: torch.Tensor) -> torch.Tensor:
    """Predicted labels of a batch: argmax of scores (N, c), or labels (N,) as returned."""
    if isinstance(predict, torch.nn.Module):
        from ..features import model_device

        xb = xb.to(model_device(predict))
    with torch.no_grad():
        out = predict(xb)
    out = torch.as_tensor(out)
    if out.ndim == 2:
        return out.argmax(1).cpu()
    if out.ndim == 1 and not out.is_floating_point():
        return out.cpu().long()
    raise ValueError(
        f"the suspect returned shape {tuple(out.shape)} ({out.dtype}) for a batch of {len(xb)} "
        "images; it must return scores (N, c) (logits or probabilities) or integer labels (N,)"
    )


# --------------------------------------------------------------------------------------------
# 1. The blind walk
# --------------------------------------------------------------------------------------------


def sample_directions(n: int, shape, norm: str, directions: int, seed: int = 0, start: int = 0,
                      step_scale: float = 1.0):
    """The walk's random directions for samples ``start .. start + n - 1``, in pixel units.

    Returns a float32 tensor ``(n, directions, *shape)``; ``step_scale`` multiplies the step
    sizes of :data:`STEP` (the authors doubled them, and the steps, for SVHN).  The draws of sample i depend only on
    (seed, norm, i // 64): the same for any batch size, and :func:`blind_walk` uses exactly these.
    """
    _check_norm(norm)
    j = NORMS.index(norm)
    size = int(np.prod(shape))
    out = np.empty((n, directions, size), dtype=np.float32)
    first, last = start // _BLOCK, (start + n - 1) // _BLOCK
    for blk in range(first, last + 1):
        rng = np.random.default_rng([int(seed), j, blk, 1729])
        shape_blk = (_BLOCK, directions, size)
        if norm == "linf":
            draws = rng.uniform(-STEP[norm], STEP[norm], size=shape_blk)
        elif norm == "l2":
            draws = rng.normal(0.0, STEP[norm], size=shape_blk)
        else:
            draws = rng.laplace(0.0, STEP[norm], size=shape_blk)
        lo, hi = max(start, blk * _BLOCK), min(start + n, (blk + 1) * _BLOCK)
        out[lo - start:hi - start] = draws[lo - blk * _BLOCK:hi - blk * _BLOCK]
    if step_scale != 1.0:
        out *= np.float32(V.check_scalar(step_scale, "step_scale", float, min_val=0.0,
                                         include_boundaries="neither", hint="1.0, 2.0, 4.0 or 10.0"))
    return torch.from_numpy(out.reshape(n, directions, *shape))


def _check_norm(norm):
    return V.check_choice(norm, NORMS, "norm")


def _pnorm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    if norm == "l2":
        return flat.pow(2).sum(1).sqrt()
    return flat.abs().sum(1)


@dataclass
class Walk:
    """The blind walk's result for N samples.

    ``distances`` (N, len(norms), directions): the pixel-unit norm of the step at which the
    predicted label first differed from y (or of the last step, ``steps``, where it never did:
    ``flipped`` is False there); ``queries``: single-image predictions the walk asked for.
    """

    distances: np.ndarray
    flipped: np.ndarray
    norms: tuple
    steps: int
    queries: int

    def embedding(self) -> np.ndarray:
        """The (N, len(norms) * directions) embedding, norm-major."""
        return self.distances.reshape(len(self.distances), -1)


def walk_along(predict, x, y, base, norm: str, steps: int = 50, box=None, unit=1.0):
    r"""Walk every sample along its given directions ``base`` ``(n, D, *shape)`` in pixel units.

    Step k (1..steps) tries :math:`x + k\,\delta` (clipped to ``box``); returns
    ``(distances (n, D), flipped (n, D), queries, labels_seen)`` with the distance the norm of
    the step actually taken (after clipping) in pixel units.  Only the samples still walking are
    queried at each step.
    """
    _check_norm(norm)
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y).long()
    n, D = base.shape[:2]
    unit = torch.as_tensor(unit, dtype=torch.float32)
    X = x[:, None].expand(n, D, *x.shape[1:]).reshape(n * D, *x.shape[1:])
    Y = y[:, None].expand(n, D).reshape(-1)
    B = base.reshape(n * D, *x.shape[1:])
    dist = torch.empty(n * D)
    flipped = torch.zeros(n * D, dtype=torch.bool)
    walking = torch.arange(n * D)
    queries, seen = 0, set()
    step_delta = None
    for k in range(1, steps + 1):
        xr = X[walking] + k * B[walking] * unit
        if box is not None:
            xr = torch.maximum(torch.minimum(xr, box[1]), box[0])
        step_delta = (xr - X[walking]) / unit  # pixel units, after clipping
        labels = _labels(predict, xr)
        queries += len(walking)
        seen.update(labels.unique().tolist())
        done = labels != Y[walking]
        dist[walking[done]] = _pnorm(step_delta[done], norm)
        flipped[walking[done]] = True
        if k == steps:
            dist[walking[~done]] = _pnorm(step_delta[~done], norm)
        walking = walking[~done]
        if len(walking) == 0:
            break
    return dist.view(n, D).numpy(), flipped.view(n, D).numpy(), queries, seen


def blind_walk(predict, x, y, norms=NORMS, directions: int = 10, steps: int = 50, box=None,
               unit=1.0, seed: int = 0, batch_size: int = 256, step_scale: float = 1.0) -> Walk:
    r"""The blind-walk embedding of Dataset Inference for the images ``x`` with labels ``y``.

    ``predict``: the suspect, a torch module (inputs are moved to its device) or any callable
    mapping a batch of images to scores (N, c) or labels (N,): label-only access is enough.
    For each norm, ``directions`` random directions from :func:`sample_directions`, walked with
    :func:`walk_along` for at most ``steps`` steps (``step_scale`` times :data:`STEP` each), inside ``box`` (see :func:`pixel_space`; None:
    no clipping).  Seeded: the same seed gives the same embedding for any ``batch_size``.
    Raises a ValueError when every query came back with one class: a model that predicts one
    class for everything has no decision boundary to walk to.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y).long()
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must hold at least one image, batch first; got shape {tuple(x.shape)}")
    if y.shape != (len(x),):
        raise ValueError(f"y must hold one label per image: {len(x)} labels, got shape {tuple(y.shape)}")
    norms = tuple(_check_norm(p) for p in norms)
    directions = V.check_positive_int(directions, "directions")
    steps = V.check_positive_int(steps, "steps")
    batch_size = V.check_positive_int(batch_size, "batch_size")
    N = len(x)
    predict = _walk_model(predict)
    dist = np.empty((N, len(norms), directions), dtype=np.float64)
    flipped = np.empty((N, len(norms), directions), dtype=bool)
    queries, seen = 0, set()
    for j, norm in enumerate(norms):
        for start in range(0, N, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            base = sample_directions(len(xb), x.shape[1:], norm, directions, seed=seed, start=start,
                                     step_scale=step_scale)
            d, f, q, s = walk_along(predict, xb, yb, base, norm, steps=steps, box=box, unit=unit)
            dist[start:start + len(xb), j], flipped[start:start + len(xb), j] = d, f
            queries += q
            seen |= s
    if len(seen) == 1 and len(torch.unique(y)) > 1:
        (only,) = seen
        raise ValueError(
            f"the suspect predicted class {only} for every one of its {queries} queries; a model "
            "that returns one class for everything has no decision boundary to walk to, so "
            "Dataset Inference cannot test it (check that the suspect is a trained classifier "
            "and that the images are normalized as it expects)"
        )
    return Walk(dist, flipped, norms, steps, queries)


def censored_fraction(walk) -> list:
    """Per norm, the share of a walk's directions that never reached the boundary (a
    :class:`Walk`, or its ``flipped`` array (N, norms, directions)): their distance is the
    walk's last step, a lower bound; a walk censored for most images measures its own length."""
    f = np.asarray(walk.flipped if isinstance(walk, Walk) else walk, dtype=bool)
    if f.ndim != 3:
        raise ValueError(f"flipped must have shape (N, norms, directions), got {f.shape}")
    return [float(1.0 - f[:, j].mean()) for j in range(f.shape[1])]


# --------------------------------------------------------------------------------------------
# 2. The membership regressor
# --------------------------------------------------------------------------------------------


@dataclass
class Regressor:
    """Scores a walk embedding: bigger = more member-like (trained on the owner's model)."""

    mean: np.ndarray  # per norm, from the regressor's training embeddings
    std: np.ndarray
    state: dict = field(repr=False)
    hidden: int = 100
    train_hashes: frozenset = field(default_factory=frozenset, repr=False)

    def _net(self):
        d = self.state["0.weight"].shape[1]
        net = torch.nn.Sequential(torch.nn.Linear(d, self.hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(self.hidden, 1), torch.nn.Tanh())
        net.load_state_dict(self.state)
        return net.eval()

    def standardize(self, distances: np.ndarray) -> torch.Tensor:
        z = (np.asarray(distances, dtype=np.float64) - self.mean[None, :, None]) / self.std[None, :, None]
        return torch.as_tensor(z.reshape(len(z), -1), dtype=torch.float32)

    def score(self, walk_or_distances) -> np.ndarray:
        """Membership scores in [-1, 1] of the embeddings (a :class:`Walk` or its distances)."""
        d = walk_or_distances.distances if isinstance(walk_or_distances, Walk) else walk_or_distances
        d = np.asarray(d, dtype=np.float64)
        if d.ndim != 3 or d.shape[1] != len(self.mean):
            raise ValueError(
                f"expected walk distances (N, {len(self.mean)}, directions), got shape {d.shape}; "
                "walk with the same norms and directions as the regressor's training data"
            )
        with torch.no_grad():
            return self._net()(self.standardize(d))[:, 0].double().numpy()


def row_hashes(x) -> list:
    """sha256 of each image's bytes (as float32), in order."""
    a = np.ascontiguousarray(torch.as_tensor(x, dtype=torch.float32).numpy())
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in a.reshape(len(a), -1)]


def image_hashes(x) -> frozenset:
    """The set of :func:`row_hashes`: for detecting overlaps between sets of images."""
    return frozenset(row_hashes(x))


def _check_known(n_members: int, n_nonmembers: int) -> None:
    for name, k in (("known members", n_members), ("known non-members", n_nonmembers)):
        if k < MIN_KNOWN:
            raise ValueError(
                f"only {k} {name} to fit the regressor; Dataset Inference needs at least "
                f"{MIN_KNOWN} of each (the paper uses 500): pass more images the owner knows the "
                "status of, disjoint from the ones revealed in the test"
            )


def fit_regressor(walk_members: Walk, walk_nonmembers: Walk, hidden: int = 100,
                  epochs: int = 1000, lr: float = 0.1, seed: int = 0, train_hashes=frozenset()) -> Regressor:
    """Fit the membership regressor on the owner's model's walks (part 2 of the method).

    Known members are pushed to +1, known non-members to -1, with the loss
    :math:`-\\mathrm{mean}(t\\,f(z))` (tanh output f, t = +/-1), full-batch SGD as in the
    authors' code; the distances are standardized per norm with the statistics of these
    walks.  ``train_hashes`` (from :func:`image_hashes`) lets :meth:`DatasetInference.test`
    refuse revealed images that the regressor was trained on.
    """
    a, b = walk_members.distances, walk_nonmembers.distances
    _check_known(len(a), len(b))
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"members' and non-members' walks differ in shape: {a.shape} vs {b.shape}")
    both = np.concatenate([a, b])
    mean = both.mean(axis=(0, 2))
    std = both.std(axis=(0, 2))
    if np.all(both.std(axis=0) == 0):
        raise ValueError(
            "every walk distance is the same for every image: the embedding carries no "
            "information (does the model predict one class everywhere, or are `steps` too few?)"
        )
    std = np.where(std > 0, std, 1.0)
    reg = Regressor(mean, std, state={}, hidden=V.check_positive_int(hidden, "hidden"),
                    train_hashes=frozenset(train_hashes))
    z = torch.cat([reg.standardize(a), reg.standardize(b)])
    t = torch.cat([torch.ones(len(a)), -torch.ones(len(b))])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], reg.hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(reg.hidden, 1), torch.nn.Tanh())
    opt = torch.optim.SGD(net.parameters(), lr=float(lr))
    for _ in range(V.check_positive_int(epochs, "epochs")):
        opt.zero_grad()
        loss = -(t * net(z)[:, 0]).mean()
        loss.backward()
        opt.step()
    reg.state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return reg


# --------------------------------------------------------------------------------------------
# 3. The test
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WelchResult:
    t: float
    df: float
    pvalue: float
    log10_pvalue: float


def welch_test(scores_members, scores_nonmembers) -> WelchResult:
    r"""One-sided Welch t-test: H1 "members score higher on average than non-members".

    :math:`t = (\bar a - \bar b)/\sqrt{s_a^2/n_a + s_b^2/n_b}` with the Welch-Satterthwaite
    degrees of freedom; :math:`p = P(T_{df} \ge t)`, and its log10 from the log survival
    function, so that very small p-values are not rounded to 0.  Null hypothesis: equal means
    (exact for normal scores, approximate otherwise).
    """
    from scipy import stats as sst

    a = V.as_float_array(scores_members, "scores_members", ndim=1)
    b = V.as_float_array(scores_nonmembers, "scores_nonmembers", ndim=1)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"the t-test needs at least 2 scores per group, got {len(a)} and {len(b)}; reveal more samples"
        )
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0:
        diff = a.mean() - b.mean()
        p = 0.0 if diff > 0 else (1.0 if diff < 0 else 0.5)
        return WelchResult(math.copysign(math.inf, diff) if diff else 0.0, math.nan, p,
                           -math.inf if p == 0 else math.log10(p))
    t = (a.mean() - b.mean()) / math.sqrt(se2)
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    logp = float(sst.t.logsf(t, df))
    return WelchResult(float(t), float(df), float(math.exp(logp)), logp / math.log(10))


def aggregate_pvalues(pvalues, how):
    """Several draws' p-values in one number: ``"hmean"`` (their harmonic mean, as the authors
    report; not itself a p-value), ``"median"`` or else the largest."""
    p = np.asarray(pvalues, dtype=np.float64)
    if how == "hmean":
        return 0.0 if np.any(p == 0) else float(len(p) / np.sum(1.0 / p))
    if how == "median":
        return float(np.median(p))
    return float(p.max())


@dataclass
class DIResult:
    """What :meth:`DatasetInference.test` found for one suspect."""

    pvalues: dict  # num_revealed -> aggregated p-value
    draws: dict  # num_revealed -> the p-value of every draw
    aggregate: str
    queries: int
    forward_equivalents: float  # queries / (members + non-members revealed): cost in forward passes
    mean_difference: float  # mean score of all revealed members minus that of all non-members
    #: per norm, the share of the revealed members' / non-members' walks that never reached the
    #: boundary within the walk's steps (their distance is only a lower bound)
    censored: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "pvalues": {str(k): v for k, v in self.pvalues.items()},
            "draws": {str(k): list(map(float, v)) for k, v in self.draws.items()},
            "aggregate": self.aggregate, "queries": int(self.queries),
            "forward_equivalents": float(self.forward_equivalents),
            "mean_difference": float(self.mean_difference),
            "censored": {k: list(map(float, v)) for k, v in self.censored.items()},
        }


@dataclass
class DatasetInference:
    """Dataset Inference with a regressor fitted on the owner's model; :meth:`test` a suspect.

    ``di = DatasetInference.fit(owner_model, known_members, known_nonmembers, box=box, unit=unit)``
    then ``di.test(suspect, revealed_members, revealed_nonmembers, num_revealed=(10, 100))``;
    each image set is ``(x, y)``.
    """

    regressor: Regressor
    walk_options: dict

    @classmethod
    def fit(cls, owner_model, known_members, known_nonmembers, seed: int = 0, hidden: int = 100,
            epochs: int = 1000, lr: float = 0.1, **walk_options):
        (xm, ym), (xn, yn) = known_members, known_nonmembers
        _check_known(len(xm), len(xn))
        wm = blind_walk(owner_model, xm, ym, seed=seed, **walk_options)
        wn = blind_walk(owner_model, xn, yn, seed=seed + 1, **walk_options)
        reg = fit_regressor(wm, wn, hidden=hidden, epochs=epochs, lr=lr, seed=seed,
                            train_hashes=image_hashes(xm) | image_hashes(xn))
        return cls(reg, dict(walk_options))

    def test(self, suspect, revealed_members, revealed_nonmembers, num_revealed=(10,),
             repeats: int = 100, seed: int = 0, aggregate: str = "hmean") -> DIResult:
        """P-values for "the suspect was trained on the owner's data" at each ``num_revealed``.

        Walks every revealed image once on the suspect, scores it with the owner's regressor,
        then for each size k in ``num_revealed`` draws ``repeats`` random k-subsets (the same
        positions in both sets, as the authors' code does), runs :func:`welch_test` on each and
        aggregates the p-values (``"hmean"``: the paper's harmonic mean; ``"median"``; ``"max"``).
        """
        V.check_choice(aggregate, AGGREGATES, "aggregate")
        (xm, ym), (xn, yn) = revealed_members, revealed_nonmembers
        overlap = (image_hashes(xm) | image_hashes(xn)) & self.regressor.train_hashes
        if overlap:
            raise ValueError(
                f"{len(overlap)} revealed image(s) are among the images the regressor was "
                "trained on; the test would be biased: reveal images disjoint from the "
                "regressor's known members and non-members"
            )
        sizes = [V.check_positive_int(k, "num_revealed") for k in np.atleast_1d(num_revealed)]
        top = min(len(xm), len(xn))
        if max(sizes) > top or min(sizes) < 2:
            raise ValueError(
                f"num_revealed must lie in [2, {top}] (the smaller revealed set), got {sizes}"
            )
        wm = blind_walk(suspect, xm, ym, seed=seed + 2, **self.walk_options)
        wn = blind_walk(suspect, xn, yn, seed=seed + 3, **self.walk_options)
        sm, sn = self.regressor.score(wm), self.regressor.score(wn)
        rng = np.random.default_rng([int(seed), 4099])
        pvalues, draws = {}, {}
        for k in sizes:
            ps = []
            for _ in range(V.check_positive_int(repeats, "repeats")):
                pos = rng.permutation(top)[:k]
                ps.append(welch_test(sm[pos], sn[pos]).pvalue)
            draws[k], pvalues[k] = ps, aggregate_pvalues(ps, aggregate)
        q = wm.queries + wn.queries
        censored = {"members": censored_fraction(wm), "nonmembers": censored_fraction(wn)}
        return DIResult(pvalues, draws, aggregate, q, q / (len(xm) + len(xn)),
                        float(sm.mean() - sn.mean()), censored)


# --------------------------------------------------------------------------------------------
# The authors' aggregation (their CIFAR-10 notebook), beside ours
# --------------------------------------------------------------------------------------------


def authors_rows(distances, mean, std, width: int = 30):
    r"""The authors' CIFAR-10 notebook's rows: standardize each norm's distances (``mean``,
    ``std`` per norm), arrange them as the notebook's tensor (N, directions, norms), transpose
    it whole (norms, directions, N) and cut it into rows of ``width`` consecutive values: each
    row holds one norm and one direction of ``width`` *different images*."""
    d = np.asarray(distances, dtype=np.float64)  # ours: (N, norms, directions)
    z = (d - np.asarray(mean)[None, :, None]) / np.asarray(std)[None, :, None]
    full = z.transpose(0, 2, 1).T  # (norms, directions, N), as torch's .T of (N, D, norms)
    if full.size % width:
        raise ValueError(f"{full.size} distances do not cut into rows of {width}: walk a "
                         f"number of images that makes N * norms * directions a multiple of {width}")
    return full.reshape(-1, width)


def authors_test(owner_m, owner_n, suspect_m, suspect_n, sizes=(10,), repeats: int = 100,
                 epochs: int = 1000, seed: int = 0) -> dict:
    """The authors' aggregation: rows (:func:`authors_rows`) with the owner's member statistics,
    a regressor trained on the owner's first half of the rows (members to +1, non-members to
    -1), the one-sided Welch test on the suspect's second half: at each number of rows, the
    first of ``repeats`` draws and their harmonic mean, and all rows at once."""
    om = np.asarray(owner_m)
    mean, std = om.mean(axis=(0, 2)), om.std(axis=(0, 2), ddof=1)
    rows = [authors_rows(d, mean, std) for d in (owner_m, owner_n, suspect_m, suspect_n)]
    half = len(rows[0]) // 2
    z = torch.as_tensor(np.concatenate([rows[0][:half], rows[1][:half]]), dtype=torch.float32)
    t = torch.cat([torch.ones(half), -torch.ones(half)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], 100), torch.nn.ReLU(),
                                  torch.nn.Linear(100, 1), torch.nn.Tanh())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(int(epochs)):
        opt.zero_grad()
        (-(t * net(z)[:, 0]).mean()).backward()
        opt.step()
    with torch.no_grad():
        sm, sn = (net(torch.as_tensor(r[half:], dtype=torch.float32))[:, 0].double().numpy()
                  for r in rows[2:])
    out = {"rows_tested": len(sm), "images_per_row": rows[0].shape[1],
           **welch_over_draws(sm, sn, sizes, repeats, seed, larger="skip")}
    out["log10_pvalue_all"] = welch_test(sm, sn).log10_pvalue
    return out


def welch_over_draws(sm, sn, sizes, repeats: int, seed: int, larger: str = "all") -> dict:
    """The one-sided Welch test on ``repeats`` random draws of k positions (the same positions
    of the member and the non-member statistics), at each k of ``sizes``: the first draw's
    p-value and the harmonic mean of all (not a p-value).  Seeded by ``[seed, 4099]``, sizes in
    order.  ``larger``: a k above the number of positions either uses them all (``"all"``) or
    is left out, drawing nothing (``"skip"``)."""
    if larger not in ("all", "skip"):
        raise ValueError(f"larger must be 'all' or 'skip', got {larger!r}")
    rng = np.random.default_rng([int(seed), 4099])
    top = min(len(sm), len(sn))
    out = {"first_draw": {}, "hmean": {}}
    for k in sizes:
        if k > top and larger == "skip":
            continue
        ps = [welch_test(sm[p], sn[p]).pvalue for p in (rng.permutation(top)[:k] for _ in range(repeats))]
        out["first_draw"][str(k)], out["hmean"][str(k)] = float(ps[0]), aggregate_pvalues(ps, "hmean")
    return out
