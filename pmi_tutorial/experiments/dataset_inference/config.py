"""Dataset Inference's settings on the studies' models: :class:`DIConfig` and the configurations ``cpu``, ``quick``, ``paper`` and ``paper-tiny``."""

from __future__ import annotations

from dataclasses import asdict, dataclass




RESULT_FORMAT = "pmi-tutorial-dataset-inference"
FILE = "dataset_inference_{name}.json"


@dataclass(frozen=True)
class DIConfig:
    """Settings of Dataset Inference in the comparison (the paper's values where it has them)."""

    name: str = "cpu"
    known: int = 500  # known members and known non-members for the regressor (the paper: 500)
    revealed: tuple = (10, 30, 100, 300)  # numbers of revealed samples tested
    max_revealed: int = 500  # images walked per pool on each suspect
    directions: int = 10  # random directions per norm (the paper: 10)
    steps: int = 50  # walk steps (the paper: 50)
    step_scale: float = 1.0  # multiplies the walk's step sizes (the paper: 1; 2 for SVHN)
    repeats: int = 100  # draws per size, aggregated by the harmonic mean (the paper: 100)
    epochs: int = 1000  # regressor training epochs (the paper: 1000)
    # the suspects: the study's models and the attacks of the registry (pmi_tutorial.attacks)
    kinds: tuple = ("independent", "resplit", "owner", "finetune", "prune50", "int8", "noise",
                    "distill_same", "probabilities")
    seed: int = 0

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if d["step_scale"] == 1.0:  # the paper's steps: the settings (and keys) of earlier runs
            del d["step_scale"]
        return d


#: the whole comparison on the study's CPU models
CPU = DIConfig()
#: the chapter's live slice: small, seconds per model
QUICK = DIConfig(name="quick", known=200, revealed=(10, 30, 100), max_revealed=300, directions=4,
                 repeats=30, epochs=300)
#: on the models of the paper-scale study (:mod:`.paper_study`): the paper's walk and regressor,
#: up to 1,000 revealed samples of each pool (100 per class; PMI's k per class is 10 k samples)
PAPER = DIConfig(name="paper", revealed=(10, 30, 100, 300, 1000), max_revealed=1000,
                 kinds=("independent", "resplit", "owner", "finetune", "prune50", "prune90",
                        "int8", "fp16", "noise", "distill_same", "distill_other"))
#: its smallest form (tests)
PAPER_TINY = DIConfig(name="paper-tiny", known=40, revealed=(10, 20), max_revealed=20,
                      directions=2, steps=10, repeats=5, epochs=50, kinds=PAPER.kinds)
CONFIGS = {c.name: c for c in (CPU, QUICK, PAPER, PAPER_TINY)}


def config_from_dict(d: dict) -> DIConfig:
    return DIConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
