"""The owner's split and the draws: the revealed members P', the innocent models' parts, each innocent model's own draw, the distiller's images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...data import as_index
from .config import PaperConfig


# --------------------------------------------------------------------------- the design


@dataclass
class World:
    """The owner split, the owner's draw and the per-class positions used by the design."""

    cfg: PaperConfig
    split: object
    reveal: dict  # r -> positions (into split.train_*) of P', in reveal order
    outside: dict  # r -> training positions outside P'


def prepare(cfg: PaperConfig, root=None) -> World:
    from ...data import owner_split

    d = cfg.design
    split = owner_split(d.dataset, seed=d.split_seed, root=root)
    y = split.train_y.numpy()
    rng = np.random.default_rng([d.split_seed, d.reveal_seed, 4242])
    reveal, outside = {}, {}
    for r in range(split.num_classes):
        pos = rng.permutation(np.flatnonzero(y == r))
        need = d.reveal_per_class + d.innocent_per_class + d.select_per_class
        if len(pos) < need or d.distill_per_class > len(pos) - d.reveal_per_class:
            raise ValueError(f"class {r} has {len(pos)} training images; the design needs {need} "
                             "(reveal + innocent + select) and distill <= the rest; use smaller parts")
        reveal[r], outside[r] = pos[:d.reveal_per_class], np.sort(pos[d.reveal_per_class:])
    return World(cfg, split, reveal, outside)


def _per_class_draw(world: World, tag, k, sizes, exclude=()):
    """Disjoint random draws (``sizes`` per class) from the training positions outside P'."""
    rng = np.random.default_rng([world.cfg.design.split_seed, tag, int(k)])
    out = [[] for _ in sizes]
    for r, pos in world.outside.items():
        pos = np.setdiff1d(pos, np.concatenate([e[r] for e in exclude])) if exclude else pos
        pos = rng.permutation(pos)
        start = 0
        for i, s in enumerate(sizes):
            out[i].append(pos[start:start + s])
            start += s
    return out


def innocent_parts(world: World, k: int):
    """``(train, select, unseen)`` of innocent model k, per class lists of training positions:
    it trains on ``train`` and selects its epoch on ``select`` (both outside P'); ``unseen`` are
    the class's training positions it never used (P' included)."""
    d = world.cfg.design
    train, select = _per_class_draw(world, 7001, k, (d.innocent_per_class, d.select_per_class))
    y = world.split.train_y.numpy()
    unseen = [np.setdiff1d(np.flatnonzero(y == r), np.concatenate([train[r], select[r]]))
              for r in world.outside]
    return train, select, unseen


#: how an innocent model's own draw is made (part of its measurement's cache key)
OWN_DRAW = "random-split-of-unseen"


def own_draw_positions(world: World, k: int):
    """Innocent model k's own draw as positions: per class, ``(P'_k, Q_k)`` each a list of
    ``("train" | "val", position)`` pairs, a seeded random split of the images model k never
    saw (the training images it did not use, and the validation split) into
    ``reveal_per_class`` members, in reveal order, and ``own_q_per_class`` non-members.

    Every image in the pool is unseen by model k, so under the null P'_k and Q_k are
    exchangeable by construction, and because each model's split is its own random
    assignment, the hardest images of the pool fall on either side independently for each
    model (with Q_k a fixed part of the validation split for every model, their tail tests
    shared the luck of its hardest images)."""
    d = world.cfg.design
    _, _, unseen = innocent_parts(world, k)
    vy = world.split.val_y.numpy()
    rng = np.random.default_rng([d.split_seed, 7009, int(k)])
    out = []
    for r, tr in enumerate(unseen):
        pool = [("train", int(i)) for i in tr] + [("val", int(i)) for i in np.flatnonzero(vy == r)]
        need = d.reveal_per_class + d.own_q_per_class
        if len(pool) < need:
            raise ValueError(f"class {r}: innocent model {k} left {len(pool)} unseen images, the "
                             f"own draw needs {need} (reveal_per_class + own_q_per_class); use "
                             "smaller parts")
        order = rng.permutation(len(pool))
        out.append(([pool[i] for i in order[:d.reveal_per_class]],
                    [pool[i] for i in order[d.reveal_per_class:need]]))
    return out


def distill_part(world: World) -> np.ndarray:
    (part,) = _per_class_draw(world, 7005, 0, (world.cfg.design.distill_per_class,))
    return np.sort(np.concatenate(part))


def owner_draw(world: World):
    """The owner's draw: ``(P' per class in reveal order, Q per class)`` as images."""
    vy = world.split.val_y.numpy()
    P = {r: world.split.train_x[as_index(p)] for r, p in world.reveal.items()}
    Q = {r: world.split.val_x[as_index(np.flatnonzero(vy == r))] for r in world.reveal}
    return P, Q


def own_draw(world: World, k: int):
    """Innocent model k's own draw as images: ``(P'_k, Q_k)`` per class
    (:func:`own_draw_positions`)."""
    import torch

    def images(pairs):
        src = {"train": world.split.train_x, "val": world.split.val_x}
        return torch.stack([src[s][i] for s, i in pairs])

    parts = own_draw_positions(world, k)
    return ({r: images(p) for r, (p, _) in enumerate(parts)},
            {r: images(q) for r, (_, q) in enumerate(parts)})
