"""Named experiment profiles: ``quick`` (a 2-core CPU, minutes) and ``paper`` (the paper's settings).

The active profile comes from the environment variable ``PMI_PROFILE`` (default ``quick``) and
is printed at the top of every notebook and every command, together with what it reduces.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from . import _validate as V


@dataclass(frozen=True)
class Profile:
    """Named settings of every experiment: epochs, widths, images per class, trials, sweeps."""
    name: str
    description: str
    epochs: dict  # model name -> training epochs (best-validation epoch kept)
    train_per_class: dict  # dataset -> training images kept per class (None: the whole split)
    width: dict  # model name -> channel-width multiplier (1.0: the published architecture)
    batch_size: int = 64
    lr: float = 1e-3
    trials: int = 100
    ms: tuple = (3, 4, 5)
    ns: tuple = (100, 200, 300)
    prune_rates: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    finetune_fraction: float = 0.2
    finetune_epochs: int = 10
    finetune_lr: float = 1e-4
    seed: int = 0
    reduced: tuple = field(default_factory=tuple)  # plain-language list of what differs from the paper

    def to_dict(self) -> dict:
        """The profile as plain JSON data (as result files record it)."""
        return asdict(self)

    def banner(self) -> str:
        """The line printed at the top of every chapter and command: the profile and what it reduces."""
        lines = [f"PMI profile: {self.name} ({self.description})"]
        lines += [f"  reduced: {item}" for item in self.reduced] or ["  reduced: nothing"]
        return "\n".join(lines)


PAPER = Profile(
    name="paper",
    description="the paper's split, models and training: Adam, lr 1e-3, batch 64, 300 epochs",
    epochs={"mlp": 300, "lenet5": 300, "vgg19": 300, "resnet34": 300},
    train_per_class={"mnist": None, "cifar10": None},
    width={"mlp": 1.0, "lenet5": 1.0, "vgg19": 1.0, "resnet34": 1.0},
)

QUICK = Profile(
    name="quick",
    description="reduced so that the whole book runs on a 2-core CPU in minutes",
    epochs={"mlp": 30, "lenet5": 10, "vgg19": 6, "resnet34": 5},
    train_per_class={"mnist": 1000, "cifar10": 400},
    width={"mlp": 1.0, "lenet5": 1.0, "vgg19": 0.125, "resnet34": 0.0625},
    finetune_epochs=2,
    reduced=(
        "MNIST: 1000 training images per class (10,000 of the 50,000); the validation split is whole",
        "MNIST: 30 epochs (MLP) and 10 epochs (LeNet-5) instead of 300",
        "CIFAR-10: 400 training images per class (4,000 of the 45,000); the validation split is whole",
        "CIFAR-10: VGG-19 at 1/8 and ResNet-34 at 1/16 of the published channel widths",
        "CIFAR-10: 6 epochs (VGG-19) and 5 epochs (ResNet-34) instead of 300",
        "fine-tuning: 2 epochs instead of 10",
    ),
)


PROFILES = {p.name: p for p in (QUICK, PAPER)}


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, or the one named by ``PMI_PROFILE`` (default ``quick``)."""
    name = name or os.environ.get("PMI_PROFILE", "quick")
    return PROFILES[V.check_choice(name, PROFILES, "profile",
                                   hint="set PMI_PROFILE=quick or PMI_PROFILE=paper")]
