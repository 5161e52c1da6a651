"""Tests for pmi_tutorial.profiles: named settings chosen by PMI_PROFILE."""

import pytest

from pmi_tutorial import profiles


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_get_profile_by_name(name, monkeypatch):
    monkeypatch.setenv("PMI_PROFILE", "quick" if name == "paper" else "paper")  # the argument wins
    p = profiles.get_profile(name)
    assert p.name == name
    assert p is profiles.PROFILES[name]


@pytest.mark.parametrize("name", ["quick", "paper"])
def test_get_profile_from_environment(name, monkeypatch):
    monkeypatch.setenv("PMI_PROFILE", name)
    assert profiles.get_profile().name == name
    assert profiles.get_profile(None).name == name


def test_default_is_quick(monkeypatch):
    monkeypatch.delenv("PMI_PROFILE", raising=False)
    assert profiles.get_profile().name == "quick"


@pytest.mark.parametrize("bad", ["Paper", "full", "quick "])
def test_unknown_profile(bad, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown profile.*'quick'.*'paper'.*PMI_PROFILE"):
        profiles.get_profile(bad)
    monkeypatch.setenv("PMI_PROFILE", bad)
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.get_profile()


def test_paper_profile_has_the_papers_settings():
    # the paper (Section IV-A): Adam lr 1e-3, batch 64, 300 epochs, whole split, t = 100 trials,
    # m in {3, 4, 5}, n in {100, 200, 300}, fine-tuning on 20% of the validation set.
    p = profiles.get_profile("paper")
    assert p.lr == 1e-3 and p.batch_size == 64 and p.trials == 100
    assert set(p.epochs) == {"mlp", "lenet5", "vgg19", "resnet34"}
    assert all(e == 300 for e in p.epochs.values())
    assert all(v is None for v in p.train_per_class.values())
    assert all(w == 1.0 for w in p.width.values())
    assert tuple(p.ms) == (3, 4, 5) and tuple(p.ns) == (100, 200, 300)
    assert p.finetune_fraction == 0.2
    assert p.reduced == ()
    assert "reduced: nothing" in p.banner()
    assert p.banner().startswith("PMI profile: paper")


def test_quick_banner_mentions_every_reduced_item():
    q = profiles.get_profile("quick")
    banner = q.banner()
    assert banner.startswith("PMI profile: quick")
    assert q.reduced, "the quick profile reduces something and must say so"
    for item in q.reduced:
        assert item in banner
    assert banner.count("reduced:") == len(q.reduced)


def test_quick_reduced_list_covers_every_difference_from_paper():
    # Independent of the wording: every setting where quick differs from paper must be named
    # in the banner, with the quick value.
    q, p = profiles.get_profile("quick"), profiles.get_profile("paper")
    banner = q.banner()
    label = {"mlp": "MLP", "lenet5": "LeNet-5", "vgg19": "VGG-19", "resnet34": "ResNet-34"}
    for model, e in q.epochs.items():
        if e != p.epochs[model]:
            assert f"{e} epochs" in banner and label[model] in banner
    for ds, k in q.train_per_class.items():
        if k != p.train_per_class[ds]:
            assert f"{k} training images per class" in banner
    for model, w in q.width.items():
        if w != p.width[model]:
            assert label[model] in banner and "width" in banner
            assert f"1/{round(1 / w)}" in banner
    if q.finetune_epochs != p.finetune_epochs:
        assert f"{q.finetune_epochs} epochs instead of {p.finetune_epochs}" in banner
    for f in ("batch_size", "lr", "trials", "ms", "ns", "prune_rates", "finetune_fraction", "finetune_lr"):
        assert getattr(q, f) == getattr(p, f), f"quick differs from paper in {f} but the banner does not say so"


def test_to_dict_round_trip():
    d = profiles.get_profile("quick").to_dict()
    assert d["name"] == "quick"
    assert profiles.Profile(**d) == profiles.get_profile("quick")


def test_unknown_profile_names_the_setting(refused):
    refused(lambda: profiles.get_profile("fast"), ValueError, ["unknown profile 'fast'", "PMI_PROFILE"])
