r"""Per-sample membership inference and why pooling helps (book chapter "Membership inference").

The simplest membership inference attack thresholds the loss (Yeom et al., 2018): a model
fits the samples it was trained on better than fresh ones, so a sample whose loss is below a
threshold :math:`\tau` is called a member.  Its strength is summarised by the ROC curve of the
score :math:`-\ell(x, y)` over all thresholds, with members as the positive class, and by the
area under it (AUC; :func:`pmi_tutorial.stats.roc.roc_curve`, :func:`pmi_tutorial.stats.roc.auc`).

On a model that generalizes well the AUC is close to 1/2: single records are weak evidence.
Averaging the score over n records of one set (:func:`pooled_scores`) shrinks the noise by
:math:`\sqrt{n}` and keeps the gap, which is the idea PMI builds on with sets of logits
(paper Section III).  For normal scores the pooled AUC has a closed form
(:func:`pooled_auc_normal`).

:func:`overfit_model` trains (once, then loads from the model cache) an MLP on a few images per
class for many epochs: a model that leaks membership on purpose, for comparison.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from . import _validate as V

#: the over-fitted model of the chapter: training and validation images per class, epochs
OVERFIT_PER_CLASS = 100
OVERFIT_EPOCHS = 60
OVERFIT_VAL_PER_CLASS = 200


def per_sample_loss(model, x, y, batch_size: int = 1024, device=None) -> np.ndarray:
    r"""The cross-entropy loss :math:`\ell(x_i, y_i) = -\log \mathrm{softmax}(f(x_i))_{y_i}` of
    every sample: a float64 array ``(len(x),)``.

    The logits come from :func:`pmi_tutorial.features.logits` (eval mode, ``no_grad``,
    batches); the result equals ``F.cross_entropy(model(x), y, reduction="none")``.
    """
    from .features import logits

    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"y must hold one integer label per sample of x, shape ({len(x)},), got shape "
            f"{tuple(y.shape)}; pass the labels that belong to x (e.g. split.train_y)"
        )
    out = logits(model, x, batch_size=batch_size, device=device)
    c = out.shape[1]
    if y.dtype.is_floating_point or (len(y) and (int(y.min()) < 0 or int(y.max()) >= c)):
        raise ValueError(f"y must hold integer class labels in [0, {c}), got {y[:5].tolist()}...")
    loss = F.cross_entropy(out.double(), y.long(), reduction="none")
    return loss.numpy()


def loss_threshold_scores(losses) -> np.ndarray:
    r"""Membership scores of the loss-threshold attack: :math:`-\ell`, larger is more member-like.

    Thresholding the score at :math:`-\tau` is Yeom et al.'s rule "member when
    :math:`\ell < \tau`"; sweeping :math:`\tau` gives the ROC curve
    (:func:`pmi_tutorial.stats.roc.roc_curve`, members as positives).
    """
    return -V.as_float_array(losses, "losses", ndim=1)


def predict_members(losses, threshold) -> np.ndarray:
    r"""Yeom et al.'s decision for one threshold :math:`\tau`: member when :math:`\ell \le \tau`.

    Their choice of :math:`\tau` is the model's average training loss.
    """
    losses = V.as_float_array(losses, "losses", ndim=1)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        threshold = float("nan")
    if math.isnan(threshold):
        raise ValueError(f"threshold must be a number (a loss value), got {threshold!r}")
    return losses <= threshold


def _draw_means(scores: np.ndarray, n: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(trials)
    for k in range(trials):
        out[k] = scores[rng.choice(len(scores), size=n, replace=False)].mean()
    return out


def pooled_scores(scores_members, scores_nonmembers, n: int, trials: int = 1000, seed=0):
    """Pool the evidence of n samples: the mean score of n distinct members, and of n distinct
    non-members, each drawn ``trials`` times.  Returns ``(pooled_members, pooled_nonmembers)``,
    two arrays of shape ``(trials,)``.

    The AUC of the pooled scores is the probability that a random set of n members scores
    higher than a random set of n non-members: the per-set version of the per-sample AUC.
    Draws are without replacement inside a set, independent between sets, seeded by ``seed``.
    """
    pos = V.as_float_array(scores_members, "scores_members", ndim=1)
    neg = V.as_float_array(scores_nonmembers, "scores_nonmembers", ndim=1)
    n = V.check_positive_int(n, "n")
    trials = V.check_positive_int(trials, "trials")
    for name, s in (("scores_members", pos), ("scores_nonmembers", neg)):
        if len(s) < n:
            raise ValueError(
                f"{name} holds {len(s)} scores, fewer than n={n}; use n <= {len(s)}"
            )
    rng_pos, rng_neg = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    return _draw_means(pos, n, trials, rng_pos), _draw_means(neg, n, trials, rng_neg)


def pooled_auc(scores_members, scores_nonmembers, ns, trials: int = 1000, seed=0) -> np.ndarray:
    """The AUC of :func:`pooled_scores` for every set size in ``ns``, estimated from ``trials``
    pooled members and non-members each (n = 1 estimates the per-sample AUC).  Each n has its
    own random stream, fixed by ``(seed, n)``."""
    from .stats import auc

    out = []
    for n in np.atleast_1d(ns).tolist():
        n = V.check_positive_int(n, "n")
        pm, pn = pooled_scores(scores_members, scores_nonmembers, n, trials, seed=[int(seed), n])
        out.append(auc(pm, pn))
    return np.array(out)


def pooled_auc_normal(delta, n, sigma_members=1.0, sigma_nonmembers=None):
    r"""The AUC of pooled means when member and non-member scores are normal.

    With member scores :math:`\sim N(\mu + \delta, \sigma_P^2)` and non-member scores
    :math:`\sim N(\mu, \sigma_Q^2)`, the mean of n members minus the mean of n non-members is
    :math:`N(\delta, (\sigma_P^2 + \sigma_Q^2)/n)`, so

    .. math::
        \mathrm{AUC}(n) = \Phi\!\left(\frac{\delta \sqrt{n}}{\sqrt{\sigma_P^2 + \sigma_Q^2}}\right)
        = \Phi\!\left(\frac{\delta \sqrt{n}}{\sqrt{2}\,\sigma}\right) \text{ when } \sigma_P = \sigma_Q = \sigma .

    By the central limit theorem it also approximates other score distributions for large n
    (take the means and standard deviations of the scores).  ``n`` may be an array.
    """
    from scipy.stats import norm

    sigma_nonmembers = sigma_members if sigma_nonmembers is None else sigma_nonmembers
    sd = math.sqrt(float(sigma_members) ** 2 + float(sigma_nonmembers) ** 2)
    if not sd > 0:
        raise ValueError("sigma_members and sigma_nonmembers must not both be 0")
    n = np.asarray(n, dtype=float)
    if np.any(n < 1):
        raise ValueError(f"n must be a positive set size, got {n}")
    out = norm.cdf(float(delta) * np.sqrt(n) / sd)
    return float(out) if out.ndim == 0 else out


def overfit_model(per_class: int = OVERFIT_PER_CLASS, epochs: int = OVERFIT_EPOCHS,
                  val_per_class: int | None = OVERFIT_VAL_PER_CLASS, seed: int = 0,
                  model_name: str = "mlp", cache_dir=None, root=None, progress: bool = False,
                  device=None):
    """A deliberately over-fitted MNIST model: ``per_class`` training images per class,
    ``epochs`` epochs of Adam (lr 1e-3, batch 64), the best validation epoch kept.

    The training images (the members) are a seeded random subset of the owner's split, and so
    are the ``val_per_class`` validation images per class (the non-members, used only to pick
    the epoch; ``None`` keeps the whole validation set), see :func:`pmi_tutorial.data.subset`.
    Trained once and saved in the model cache (:func:`pmi_tutorial.training.cache_folder`);
    later calls with the same arguments load it.  Returns a
    :class:`pmi_tutorial.training.TrainResult` whose ``split`` is the subset.
    """
    from .data import owner_split, subset
    from .models import build_model, dataset_of
    from .training import result_from_state, summary_state, cache_folder, load_or_train, pick_device, train

    per_class = V.check_positive_int(per_class, "per_class")
    epochs = V.check_positive_int(epochs, "epochs")
    if val_per_class is not None:
        val_per_class = V.check_positive_int(val_per_class, "val_per_class")
    dataset = dataset_of(model_name)
    split = subset(owner_split(dataset, seed=seed, root=root), per_class, seed=seed,
                   val_per_class=val_per_class)
    key = (f"{model_name}_{dataset}_overfit_tpc{per_class}_"
           f"vpc{'all' if val_per_class is None else val_per_class}_e{epochs}_s{seed}")
    path = cache_folder(cache_dir) / f"{key}.pt"
    device = torch.device(device) if device is not None else pick_device()

    def make(partial):
        model = build_model(model_name, num_classes=split.num_classes, seed=seed)
        result = train(model, split, epochs, seed=seed, checkpoint_path=partial, device=device,
                       progress=progress)
        settings = {"purpose": "over-fitted on purpose (chapter Membership inference)",
                    "epochs": epochs, "train_per_class": per_class, "val_per_class": val_per_class,
                    "seed": seed, "n_train": len(split.train_y), "n_val": len(split.val_y),
                    "torch": torch.__version__}
        return result.model, settings, summary_state(result)

    model, settings, state, from_cache = load_or_train(path, make, device=device)
    return result_from_state(model, state, split, settings, path, from_cache)
