"""Device-safe chapters: no code cell calls a model directly on (CPU) tensors."""

import pytest

from scripts import check_chapter_code as cc
from scripts.make_notebooks import chapters
from scripts.make_notebooks import ROOT

BOOK = ROOT / "book"


@pytest.mark.parametrize("src", [
    "out = good.model(x)",
    "y = model(x)",
    "innocent = build_model('mlp', seed=1)\nz = innocent(x)",
    "m = result.model\nm(x).argmax(1)",
    "with torch.no_grad():\n    p = net.forward(x)",
    "%matplotlib inline\nout = result.model(result.split.val_x)",
])
def test_direct_calls_are_found(src):
    assert len(cc.direct_calls([src])) == 1


@pytest.mark.parametrize("src", [
    "out = features.logits(good.model, x)",
    "acc = training.evaluate(result.model, x, y)",
    "result = training.cached_model('mlp', profile)",
    "innocent = build_model('mlp', seed=1)\nrun = fingerprint.run(innocent, pools, m=3, n=100)",
])
def test_package_calls_are_not_flagged(src):
    assert cc.direct_calls([src]) == []


@pytest.mark.parametrize("md", chapters(BOOK), ids=lambda p: p.stem)
def test_no_chapter_calls_a_model_directly(md):
    assert cc.direct_calls(cc.chapter_sources(md)) == []
