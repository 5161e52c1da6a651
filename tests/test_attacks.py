"""Tests for pmi_tutorial.attacks: pruning, fine-tuning, quantization, weight noise, distillation.

Each attack returns a new model and leaves its input untouched; the numbers are checked against
direct computations (counts of zeros, the rounding grid, the teacher's predictions).
"""

from __future__ import annotations


import numpy as np
import pytest
import torch

from pmi_tutorial import attacks, data
from pmi_tutorial.features import logits
from pmi_tutorial.models import build_model



def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(state, model) -> bool:
    now = model.state_dict()
    return state.keys() == now.keys() and all(torch.equal(state[k], now[k]) for k in state)


def _trained_like(name="lenet5", seed=0):
    """A model whose weights are not all of one scale (a fresh init is fine for these checks)."""
    return build_model(name, seed=seed)


# ----------------------------------------------------------------------------- pruning


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_prune_zeroes_the_fraction_rate(name, rate):
    model = _trained_like(name)
    before = _snapshot(model)
    pruned = attacks.prune(model, rate)
    weights = attacks.prunable_weights(pruned)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert abs(zeros - round(rate * total)) <= 1  # to rounding
    assert attacks.sparsity(pruned) == pytest.approx(rate, abs=1.5 / total)
    assert _same(before, model)  # the original is untouched
    # global magnitude pruning: every zeroed weight is no larger than every kept one
    flat_old = torch.cat([w.detach().flatten() for w in attacks.prunable_weights(model)]).abs()
    flat_new = torch.cat([w.detach().flatten() for w in weights])
    assert flat_old[flat_new == 0].max() <= flat_old[flat_new != 0].min()
    # kept weights keep their values; biases are not pruned; the result is a plain model
    assert torch.equal(flat_new[flat_new != 0], torch.cat([w.detach().flatten() for w in
                                                           attacks.prunable_weights(model)])[flat_new != 0])
    assert not any(k.endswith(("_orig", "_mask")) for k in pruned.state_dict())
    for k, v in pruned.state_dict().items():
        if k.endswith("bias"):
            assert torch.equal(v, before[k])


def test_prune_rate_zero_is_identity():
    model = _trained_like("mlp")
    pruned = attacks.prune(model, 0.0)
    assert pruned is not model and _same(_snapshot(model), pruned)


def test_prune_bad_rate():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        attacks.prune(_trained_like("mlp"), 1.0)


# ----------------------------------------------------------------------------- quantization


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_grid_and_error(bits):
    model = _trained_like("lenet5")
    before = _snapshot(model)
    q = attacks.quantize(model, bits)
    assert _same(before, model)
    qmax = 2 ** (bits - 1) - 1
    for w, wq in zip(attacks.prunable_weights(model), attacks.prunable_weights(q)):
        flat, flat_q = w.detach().reshape(len(w), -1), wq.detach().reshape(len(wq), -1)
        scale = flat.abs().amax(dim=1, keepdim=True) / qmax
        for k in range(len(flat)):
            # symmetric levels -qmax..qmax: at most 2^bits - 1 distinct values per output channel
            assert len(torch.unique(flat_q[k])) <= 2 ** bits - 1
            levels = flat_q[k] / scale[k]
            torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
        err = (flat - flat_q).abs()
        assert torch.all(err <= scale / 2 * (1 + 1e-5) + 1e-12)
    # biases stay in floating point
    for k, v in q.state_dict().items():
        if k.endswith("bias"):
            assert torch.equal(v, before[k])


def test_quantize_bad_bits():
    with pytest.raises(ValueError, match="bits"):
        attacks.quantize(_trained_like("mlp"), 1)


# ----------------------------------------------------------------------------- weight noise


def test_weight_noise_seeded_and_scale_zero_is_identity():
    model = _trained_like("mlp")
    before = _snapshot(model)
    a, b = attacks.weight_noise(model, 0.1, seed=3), attacks.weight_noise(model, 0.1, seed=3)
    c = attacks.weight_noise(model, 0.1, seed=4)
    assert _same(_snapshot(a), b) and not _same(_snapshot(a), c)
    assert _same(before, model)
    assert _same(before, attacks.weight_noise(model, 0.0, seed=3))
    # the noise has the stated size: std close to scale * std(w) for each weight tensor
    for w, wn in zip(attacks.prunable_weights(model), attacks.prunable_weights(a)):
        ratio = float((wn - w).detach().std() / w.detach().std())
        assert ratio == pytest.approx(0.1, rel=0.1)


# ----------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def small(mnist_root):
    return data.subset(data.owner_split("mnist", seed=0, root=mnist_root), 30, seed=0, val_per_class=60)


def test_fine_tune_changes_weights_and_keeps_pools_disjoint(small):
    model = _trained_like("mlp")
    before = _snapshot(model)
    res = attacks.fine_tune(model, small, epochs=1, lr=1e-3, fraction=0.2, seed=1)
    assert _same(before, model) and not _same(before, res.model)
    n_val = len(small.val_y)
    assert len(res.tuned_index) == round(0.2 * n_val) and len(np.unique(res.tuned_index)) == len(res.tuned_index)
    tuned_ids = small.val_index[res.tuned_index]  # indices into the pooled dataset
    # Q (the validation set) lost exactly the tuning samples; P (the training set) is unchanged
    assert not set(res.split.val_index) & set(tuned_ids)
    assert sorted(set(res.split.val_index) | set(tuned_ids)) == sorted(small.val_index)
    assert np.array_equal(res.split.train_index, small.train_index)
    assert torch.equal(res.split.train_x, small.train_x)
    # the remaining validation tensors match their indices
    keep = np.setdiff1d(np.arange(n_val), res.tuned_index)
    assert torch.equal(res.split.val_x, small.val_x[torch.as_tensor(keep)])
    # every class pool of the returned split: P as before, Q without the tuned samples
    for r in range(small.num_classes):
        iP, iQ = data.pool_indices(res.split, r)
        iP0, _ = data.pool_indices(small, r)
        assert np.array_equal(iP, iP0) and not set(iQ) & set(tuned_ids)
    assert 0.0 <= res.val_acc <= 1.0
    # seeded: the same seed picks the same samples and gives the same weights
    again = attacks.fine_tune(model, small, epochs=1, lr=1e-3, fraction=0.2, seed=1)
    assert np.array_equal(again.tuned_index, res.tuned_index) and _same(_snapshot(res.model), again.model)


def test_finetune_split_bad_fraction(small):
    for fraction in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="fraction"):
            attacks.finetune_split(small, fraction)


# ----------------------------------------------------------------------------- distillation


def test_distill_from_non_members_only_matches_teacher(small):
    """The student sees only validation images (no P, no labels) and still agrees with the
    teacher on held-out images far more often than chance (1/10)."""
    from pmi_tutorial.training import train

    teacher = train(build_model("mlp", seed=0), small, epochs=3, batch_size=32, seed=0,
                    progress=False, device="cpu").model
    n = len(small.val_y)
    order = np.random.default_rng(0).permutation(n)
    seen, held_out = torch.as_tensor(order[: n // 2]), torch.as_tensor(order[n // 2:])
    teacher_before = _snapshot(teacher)
    student = attacks.distill(teacher, build_model("mlp", seed=1), small.val_x[seen], epochs=8,
                              lr=3e-3, seed=0)
    assert _same(teacher_before, teacher)
    x_test = small.val_x[held_out]
    agree = float((logits(student, x_test).argmax(1) == logits(teacher, x_test).argmax(1)).float().mean())
    untrained = float((logits(build_model("mlp", seed=1), x_test).argmax(1)
                       == logits(teacher, x_test).argmax(1)).float().mean())
    assert agree > 0.5 and agree > untrained + 0.2
    # it never needed P: the training images did not pass through the student
    assert set(small.val_index[order[: n // 2]]).isdisjoint(small.train_index)


def test_distill_bad_arguments():
    t, s, x = build_model("mlp"), build_model("mlp"), torch.randn(4, 1, 28, 28)
    with pytest.raises(ValueError, match="temperature"):
        attacks.distill(t, s, x, temperature=-1)
    with pytest.raises(ValueError, match="lr"):
        attacks.distill(t, s, x, lr=0)


# --------------------------------------------------------------------------- the registry


def test_registry_entries_apply_to_a_model_and_leave_it_unchanged(mnist_root):
    import copy as _copy

    import torch

    from pmi_tutorial import attacks as A
    from pmi_tutorial.data import owner_split
    from pmi_tutorial.models import build_model

    split = owner_split("mnist", seed=0, root=mnist_root, train_per_class=20)
    model = build_model("mlp", num_classes=10, seed=0).eval()
    before = _copy.deepcopy(model.state_dict())
    ctx = A.AttackContext(split=split, arch="mlp", seed=3, query_images=split.train_x[:50])
    fast = {"epochs": 1}
    for name, attack in A.ATTACKS.items():
        over = {k: v for k, v in fast.items() if k in attack.settings}
        if "fraction" in attack.settings:
            over["fraction"] = 0.01
        out = attack(model, ctx, **over)
        assert isinstance(out, A.Attacked) and out.output in ("logits", "probabilities"), name
        assert (out.keep_q is not None) == name.startswith("finetune"), name
        if out.keep_q is not None:
            assert len(out.keep_q) == len(split.val_y) - max(1, round(0.01 * len(split.val_y)))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="no setting 'rate'"):
        A.ATTACKS["int8"](model, ctx, rate=0.5)
    with pytest.raises(ValueError, match="unknown attack 'quantize'"):
        A.get("quantize")


def test_label_smoothing_changes_the_fine_tune_and_zero_is_the_plain_loss(mnist_root):
    import torch

    from pmi_tutorial import attacks as A
    from pmi_tutorial.data import owner_split
    from pmi_tutorial.models import build_model

    split = owner_split("mnist", seed=0, root=mnist_root, train_per_class=20)
    model = build_model("mlp", num_classes=10, seed=0)
    plain = A.fine_tune(model, split, epochs=1, fraction=0.05, seed=1, lr=1e-2).model
    zero = A.fine_tune(model, split, epochs=1, fraction=0.05, seed=1, lr=1e-2, label_smoothing=0.0).model
    smooth = A.fine_tune(model, split, epochs=1, fraction=0.05, seed=1, lr=1e-2, label_smoothing=0.3).model
    w = [dict(m.named_parameters())["net.1.weight"] if "net.1.weight" in dict(m.named_parameters())
         else next(m.parameters()) for m in (plain, zero, smooth)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    with pytest.raises(ValueError, match="label_smoothing"):
        A.fine_tune(model, split, epochs=1, fraction=0.05, label_smoothing=1.5)


# ----------------------------------------------------------------------------- bad input

#: (id, call on an MLP and a data-free split, words the message must contain: the problem and the fix)
BAD_INPUTS = [
    ("rate-1", lambda mlp, split: attacks.prune(mlp, 1.0), ["rate", "[0, 1)"]),
    ("rate-negative", lambda mlp, split: attacks.prune(mlp, -0.1), ["rate", "[0, 1)"]),
    ("rate-string", lambda mlp, split: attacks.prune(mlp, "half"), ["rate", "number in [0, 1)"]),
    ("finetune-fraction", lambda mlp, split: attacks.fine_tune(mlp, split, fraction=1.0),
     ["fraction", "(0, 1)", "0.2"]),
    ("finetune-lr-inf", lambda mlp, split: attacks.fine_tune(mlp, split, lr=float("inf")),
     ["lr", "positive finite"]),
    ("distill-temperature-0", lambda mlp, split: attacks.distill(mlp, build_model("mlp"), split.train_x[:12],
                                                                 temperature=0),
     ["temperature", "positive"]),
    ("noise-scale-string", lambda mlp, split: attacks.weight_noise(mlp, "big"), ["scale", "non-negative"]),
]


@pytest.mark.parametrize("call, words", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_the_problem_and_the_fix(call, words, fake_split, refused):
    refused(lambda: call(build_model("mlp", seed=0), fake_split()), ValueError, words)
