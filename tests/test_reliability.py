"""Reliability and security (issue 8): clear errors for bad input, no code run from a suspect
checkpoint, no work lost to a killed run, the same seed giving the same numbers.

* ``test_bad_input``: a table of bad inputs to the public API, each raising an error whose message
  names the problem and the fix.
* ``test_cli_error``: bad inputs on the command line (``python -m pmi_tutorial`` in subprocesses):
  exit status 2, one line on stderr starting with ``error:``, never a traceback.
* ``test_*_resumes_after_sigkill``: a training run and an experiment sweep killed with SIGKILL
  mid-way, then resumed, end exactly where an uninterrupted run ends.
* ``test_*_deterministic``: the same seed gives identical acc_r tables twice in a row (CPU).

The finer points of each module (every checkpoint refusal, data checksums, ...) are in the
module's own test file; this file checks the promises across modules.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pmi_tutorial import attacks, cli, clustering, data, experiments, files, fingerprint, mmd, pmi, training
from pmi_tutorial.checkpoint import load_checkpoint, read_payload, save_checkpoint, sidecar_path
from pmi_tutorial.models import build_model
from pmi_tutorial.profiles import Profile, get_profile



def _fake_split(n_train=40, n_val=40, classes=3) -> data.Split:
    """A data-free split of random 'MNIST' images: enough for checks that fail before data use."""
    g = torch.Generator().manual_seed(0)
    return data.Split(
        name="mnist", seed=0,
        train_x=torch.randn(n_train, 1, 28, 28, generator=g), train_y=torch.arange(n_train) % classes,
        val_x=torch.randn(n_val, 1, 28, 28, generator=g), val_y=torch.arange(n_val) % classes,
        train_index=np.arange(n_train), val_index=np.arange(n_train, n_train + n_val),
        num_classes=classes, input_shape=(1, 28, 28),
    )


# ----------------------------------------------------------------------------- the API table

_rng = np.random.default_rng(0)
P10, Q10 = _rng.normal(size=(30, 10)), _rng.normal(size=(60, 10))
MLP = build_model("mlp", seed=0)
IMGS = torch.randn(12, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _with(arr, index, value):
    arr = arr.copy()
    arr[index] = value
    return arr


def _offline_load(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, *a, **kw):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "MNIST", Offline)
    monkeypatch.setenv("PMI_DATA_DIR", str(tmp_path / "no_such_folder"))
    data.load_dataset("mnist")


def _truncated_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", MLP)
    path.write_bytes(path.read_bytes()[:1000])
    load_checkpoint(path)


def _other_architecture(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", build_model("lenet5"))
    load_checkpoint(path, model=build_model("mlp"))


def _old_result_file(tmp_path, monkeypatch):
    path = tmp_path / "table1_quick.json"
    path.write_text(json.dumps({"format": experiments.RESULT_FORMAT, "version": 0, "cells": []}))
    experiments.load_result(path)


def _unwritable_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    files.write_json_atomic(blocker / "results" / "table1_quick.json", {"cells": []})


#: (id, call, exception type, words the message must contain: the problem and the fix)
BAD_INPUTS = [
    ("features-1d", lambda: fingerprint.class_accuracy(P10[:, 0], Q10, 3, 5),
     ValueError, ["features_P", "2 dimensions", "(n, d)"]),
    ("features-strings", lambda: fingerprint.class_accuracy([["a", "b"]] * 30, Q10[:, :2], 3, 5),
     ValueError, ["features_P", "numeric"]),
    ("features-complex", lambda: fingerprint.class_accuracy(P10 + 1j, Q10, 3, 5),
     ValueError, ["complex", "real-valued"]),
    ("features-nan", lambda: fingerprint.class_accuracy(_with(P10, (3, 4), np.nan), Q10, 3, 5),
     ValueError, ["features_P", "NaN", "finite", "diverged"]),
    ("features-inf-F", lambda: mmd.pairwise_mmd(_with(_rng.normal(size=(3, 5, 4)), (0, 0, 0), np.inf)),
     ValueError, ["F", "infinite"]),
    ("features-widths-differ", lambda: fingerprint.class_accuracy(P10, Q10[:, :9], 3, 5),
     ValueError, ["same width", "same model"]),
    ("F-2d", lambda: pmi.identify_member(_rng.normal(size=(3, 5))),
     ValueError, ["3 dimensions", "(m, n, d)"]),
    ("images-uint8", lambda: fingerprint.run(MLP, {0: (IMGS.to(torch.uint8), IMGS)}, m=2, n=2, trials=1),
     ValueError, ["dtype", "uint8", "normalize"]),
    ("images-wrong-shape", lambda: fingerprint.run(MLP, {0: (torch.randn(6, 3, 32, 32),) * 2}, m=2, n=2),
     ValueError, ["shape (3, 32, 32)", "mlp takes (N, 1, 28, 28)", "data set the model was trained on"]),
    ("n-larger-than-P", lambda: fingerprint.class_accuracy(P10, Q10, 3, 31),
     ValueError, ["n=31", "member pool P (30", "n <= 30"]),
    ("n-times-m-larger-than-Q", lambda: fingerprint.class_accuracy(P10, Q10, 5, 20),
     ValueError, ["non-member pool Q has 60", "lower n to <= 15"]),
    ("m-1", lambda: fingerprint.class_accuracy(P10, Q10, 1, 5), ValueError, ["m must be an integer >= 2", "got m=1"]),
    ("m-float", lambda: fingerprint.class_accuracy(P10, Q10, 3.0, 5), ValueError, ["m must be an integer"]),
    ("n-1", lambda: fingerprint.class_accuracy(P10, Q10, 3, 1), ValueError, ["n must be an integer >= 2", "got n=1", "pairs"]),
    ("trials-0", lambda: fingerprint.class_accuracy(P10, Q10, 3, 5, trials=0),
     ValueError, ["trials", "positive integer"]),
    ("r-too-large", lambda: data.class_pools(_fake_split(), 3), ValueError, ["class r", "[0, 3)", "got 3"]),
    ("r-negative", lambda: data.class_pools(_fake_split(), -1), ValueError, ["[0, 3)", "got -1"]),
    ("rho-outside", lambda: fingerprint.verify(0.9, 3, 0.9), ValueError, ["rho", "(0, 0.667]"]),
    ("unknown-dataset", lambda: data.owner_split("imagenet"), ValueError, ["unknown dataset", "'mnist'"]),
    ("unknown-model", lambda: build_model("resnet50"), ValueError, ["unknown model", "'resnet34'"]),
    ("unknown-kernel", lambda: mmd.mmd2_unbiased(P10[:5], Q10[:5], kernel="poly"),
     ValueError, ["unknown kernel 'poly'", "'linear'", "'rbf'"]),
    ("unknown-linkage", lambda: clustering.agglomerative(np.ones((3, 3)) - np.eye(3), linkage="ward"),
     ValueError, ["unknown linkage 'ward'", "'single'"]),
    ("unknown-profile", lambda: get_profile("fast"), ValueError, ["unknown profile 'fast'", "PMI_PROFILE"]),
    ("unknown-experiment", lambda: experiments.reproduce("table9"), ValueError, ["unknown experiment", "table1"]),
    ("rate-1", lambda: attacks.prune(MLP, 1.0), ValueError, ["rate", "[0, 1)"]),
    ("rate-negative", lambda: attacks.prune(MLP, -0.1), ValueError, ["rate", "[0, 1)"]),
    ("rate-string", lambda: attacks.prune(MLP, "half"), ValueError, ["rate", "number in [0, 1)"]),
    ("finetune-fraction", lambda: attacks.fine_tune(MLP, _fake_split(), fraction=1.0),
     ValueError, ["fraction", "(0, 1)", "0.2"]),
    ("finetune-lr-inf", lambda: attacks.fine_tune(MLP, _fake_split(), lr=float("inf")),
     ValueError, ["lr", "positive finite"]),
    ("distill-temperature-0", lambda: attacks.distill(MLP, build_model("mlp"), IMGS, temperature=0),
     ValueError, ["temperature", "positive"]),
    ("noise-scale-string", lambda: attacks.weight_noise(MLP, "big"), ValueError, ["scale", "non-negative"]),
    ("empty-pool-P", lambda: fingerprint.run(MLP, {4: (IMGS[:0], IMGS)}, m=2, n=2),
     ValueError, ["member pool P of class 4 is empty"]),
    ("empty-pool-Q-features", lambda: fingerprint.class_accuracy(P10, Q10[:0], 2, 2),
     ValueError, ["Q", "empty"]),
    ("pools-not-pairs", lambda: fingerprint.run(MLP, [IMGS], m=2, n=2),
     ValueError, ["pools[0] must be a pair (P, Q)", "class_pools"]),
    ("epochs-0", lambda: training.train(build_model("mlp"), _fake_split(), epochs=0),
     ValueError, ["epochs", "positive integer"]),
]

#: bad inputs that need tmp_path / monkeypatch: files and the environment
BAD_FILES = [
    ("data-missing-offline", _offline_load, FileNotFoundError,
     ["mnist data file", "no_such_folder", "downloading it through torchvision failed",
      "connect to the internet", "PMI_DATA_DIR"]),
    ("checkpoint-truncated", _truncated_checkpoint, ValueError, ["truncated or corrupt", "re-create"]),
    ("checkpoint-other-architecture", _other_architecture, ValueError,
     ["another architecture", "model='lenet5'", "without a model"]),
    ("result-file-old-version", _old_result_file, ValueError, ["format version 0", "rerun the experiment"]),
    ("output-folder-unwritable", _unwritable_folder, ValueError, ["cannot write", "a_file", "folder"]),
]


@pytest.mark.parametrize("call, exc, words", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} missing from the message: {msg}"
    assert "Traceback" not in msg and len(msg) < 700


@pytest.mark.parametrize("make, exc, words", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_bad_file(make, exc, words, tmp_path, monkeypatch):
    with pytest.raises(exc) as info:
        make(tmp_path, monkeypatch)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} missing from the message: {msg}"
    assert not list(tmp_path.rglob("*.tmp"))  # a refused write leaves nothing behind


# ----------------------------------------------------------------------------- a suspect model


class Evil:
    """Unpickling this without weights_only would create the marker file (code execution)."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A file that looks like a checkpoint (valid sidecar, format marker) but carries code."""
    marker = folder / "PWNED"
    Evil.marker = str(marker)
    path = folder / "suspect.pt"
    good = save_checkpoint(folder / "good.pt", build_model("mlp"))
    torch.save({"format": "pmi_tutorial.checkpoint", "format_version": 1,
                "model": {"net.1.weight": Evil()}, "state": None}, path)
    sidecar_path(path).write_text(sidecar_path(good).read_text())
    return path, marker


def test_pickled_code_in_checkpoint_is_refused(tmp_path):
    path, marker = _evil_checkpoint(tmp_path)
    for load in (load_checkpoint, read_payload):
        with pytest.raises(ValueError, match="refusing to unpickle") as info:
            load(path)
        # the global is io.open up to Python 3.11 and _io.open from 3.12 on
        assert re.search(r"it needs _?io\.open\b", str(info.value)) and "weights_only=False" in str(info.value)
    assert not marker.exists()
    # the same file as a training run's resume checkpoint
    with pytest.raises(ValueError, match="refusing to unpickle"):
        training.train(build_model("mlp"), _fake_split(), epochs=1, checkpoint_path=path,
                       progress=False, device="cpu")
    assert not marker.exists()


# ----------------------------------------------------------------------------- the command line


def _run_cli(args, cwd, env_extra=None, code=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "pmi_tutorial", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


OFFLINE = textwrap.dedent("""
    import sys, torchvision.datasets as tvd
    class Offline:
        def __init__(self, *a, **kw):
            raise OSError("<urlopen error [Errno -3] Temporary failure\\n in name resolution>")
    tvd.MNIST = Offline
    from pmi_tutorial import cli
    sys.exit(cli.main(sys.argv[1:]))
""")


def _cli_files(folder: Path) -> dict:
    ok = save_checkpoint(folder / "mlp.pt", build_model("mlp", seed=0))
    trunc = folder / "trunc.pt"
    trunc.write_bytes(ok.read_bytes()[:5000])
    sidecar_path(trunc).write_text(sidecar_path(ok).read_text())
    other = save_checkpoint(folder / "other.pt", build_model("lenet5"), {"model": "mlp"})
    evil, marker = _evil_checkpoint(folder)
    old = folder / "old"
    old.mkdir()
    (old / "table1_quick.json").write_text(
        json.dumps({"format": experiments.RESULT_FORMAT, "version": 0, "cells": []}))
    return {"ok": str(ok), "trunc": str(trunc), "other": str(other), "evil": str(evil),
            "old": str(old), "marker": marker}


#: (name, arguments, words the one line on stderr must contain); {ok} etc. are the files above
CLI_CASES = [
    ("missing-checkpoint", ["verify", "--checkpoint", "absent.pt"], ["no checkpoint at absent.pt", "check the path"]),
    ("truncated-checkpoint", ["verify", "--checkpoint", "{trunc}"], ["truncated or corrupt", "re-create it"]),
    ("pickled-code", ["verify", "--checkpoint", "{evil}"], ["refusing to unpickle", "may be malicious"]),
    ("other-architecture", ["verify", "--checkpoint", "{other}"], ["another architecture", "model='mlp'"]),
    ("m-1", ["verify", "--checkpoint", "{ok}", "--m", "1"], ["m must be an integer >= 2", "got m=1"]),
    ("n-negative", ["verify", "--checkpoint", "{ok}", "--n", "-3"], ["n must be an integer >= 2", "got n=-3"]),
    ("trials-0", ["verify", "--checkpoint", "{ok}", "--trials", "0"], ["--trials must be a positive integer"]),
    ("rho-outside", ["verify", "--checkpoint", "{ok}", "--rho", "0.9"], ["rho must be in (0, 1 - 1/m]", "got 0.9"]),
    ("rate-outside", ["attack", "prune", "--checkpoint", "{ok}", "--rate", "1.5", "--out", "x.pt"],
     ["--rate must be a number in [0, 1)", "got --rate=1.5"]),
    ("old-result-file", ["reproduce", "table1", "--out", "{old}", "--no-progress"],
     ["format version 0", "rerun the experiment"]),
    ("unknown-profile", ["reproduce", "table1", "--profile", "fast"], ["unknown profile 'fast'", "PMI_PROFILE=quick"]),
    ("bad-ms", ["reproduce", "table1", "--ms", "3,x"], ["--ms must be comma-separated integers"]),
    ("bad-classes", ["verify", "--checkpoint", "{ok}", "--classes", "0,a"], ["--classes must be comma-separated"]),
]
#: the cases also run as ``python -m pmi_tutorial`` in a subprocess (the others: cli.main in-process)
SUBPROCESS = ("missing-checkpoint", "pickled-code", "rho-outside")



@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    return _cli_files(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def cli_subprocesses(cli_files, mnist_root):
    """A few cases through the real entry point, started in parallel: {name: (status, stderr)}."""
    folder = Path(cli_files["ok"]).parent
    env = {"PMI_DATA_DIR": str(mnist_root), "PMI_CACHE_DIR": str(folder / "cache")}
    procs = {name: _run_cli([a.format(**cli_files) for a in args], folder, env)
             for name, args, _ in CLI_CASES if name in SUBPROCESS}
    verify = ["verify", "--checkpoint", cli_files["ok"], "--n", "5", "--trials", "1"]
    procs["data-missing-offline"] = _run_cli(
        None, folder, dict(env, PMI_DATA_DIR=str(folder / "no_data_here")),
        code=OFFLINE.replace("sys.argv[1:]", repr(verify)))
    out = {}
    for name, p in procs.items():
        err = p.communicate(timeout=180)[1]
        out[name] = (p.returncode, err)
    return out


def _check_one_line(code, err, words):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], f"{w!r} missing from: {lines[0]}"


@pytest.mark.parametrize("name, args, words", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_error(cli_files, name, args, words, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code = cli.main([a.format(**cli_files) for a in args])
    _check_one_line(code, capsys.readouterr().err, words)
    assert not cli_files["marker"].exists()


@pytest.mark.parametrize("name", SUBPROCESS)
def test_cli_error_subprocess(cli_files, cli_subprocesses, name):
    words = next(w for n, _, w in CLI_CASES if n == name)
    _check_one_line(*cli_subprocesses[name], words)
    assert not cli_files["marker"].exists()  # the pickled code never ran


def test_cli_data_missing_offline(cli_subprocesses):
    code, err = cli_subprocesses["data-missing-offline"]
    _check_one_line(code, err, ["mnist data file", "no_data_here", "connect to the internet", "PMI_DATA_DIR"])


def test_cli_argparse_error_is_clear(cli_files, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["verify", "--checkpoint", cli_files["ok"], "--m", "three"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert err.startswith("usage: python -m pmi_tutorial verify")
    assert "argument --m: invalid int value: 'three'" in err.splitlines()[-1]


def test_cli_os_error_is_one_line(tmp_path):
    """An error from the operating system (no permission, a full disk) is one line too."""
    err = cli._one_line(PermissionError(13, "Permission denied", str(tmp_path / "x.pt")))
    assert err.startswith("Permission denied: ") and "\n" not in err and "permissions" in err
    err = cli._one_line(FileNotFoundError("the file\n spans\n\tlines"))
    assert err == "the file spans lines"


# ----------------------------------------------------------------------------- no lost work

TRAIN_CHILD = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads({threads})
    from pmi_tutorial import data, training
    from pmi_tutorial.models import build_model
    split = data.subset(data.owner_split("mnist", seed=0), 40, seed=0, val_per_class=40)
    slow = training.evaluate
    def evaluate(*a, **kw):  # a slower epoch, so the kill lands mid-run
        time.sleep(0.4)
        return slow(*a, **kw)
    training.evaluate = evaluate
    training.train(build_model("mlp", seed=0), split, epochs={epochs}, batch_size=16, seed=3,
                   checkpoint_path={path!r}, progress=False, device="cpu")
""")


def _wait_and_kill(proc, ready, timeout=90.0):
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("the run never reached its first checkpoint")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _state_dicts_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_resumes_after_sigkill(tmp_path, mnist_root):
    epochs = 6
    ckpt = tmp_path / "run.pt"
    env = dict(os.environ, PMI_DATA_DIR=str(mnist_root), PMI_CACHE_DIR=str(tmp_path / "cache"))
    code = TRAIN_CHILD.format(threads=1, epochs=epochs, path=str(ckpt))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    _wait_and_kill(proc, ckpt.is_file)

    # what the kill left: the weights file is complete and loads, with its sidecar
    assert sidecar_path(ckpt).is_file()
    done = read_payload(ckpt)["state"]["epoch"]
    assert 1 <= done < epochs, "killed too late to test anything"
    (tmp_path / f".{ckpt.name}.k1ll3d.tmp").write_bytes(b"half a save")  # as a kill mid-save leaves

    split = data.subset(data.owner_split("mnist", seed=0, root=mnist_root), 40, seed=0, val_per_class=40)
    kw = dict(epochs=epochs, batch_size=16, seed=3, progress=False, device="cpu")
    resumed = training.train(build_model("mlp", seed=99), split, checkpoint_path=ckpt, **kw)
    full = training.train(build_model("mlp", seed=0), split, **kw)
    assert [h["epoch"] for h in resumed.history] == list(range(1, epochs + 1))
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    assert resumed.best_epoch == full.best_epoch
    assert _state_dicts_equal(resumed.model, full.model)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


TINY = Profile(name="tiny", description="tests", epochs={"mlp": 2, "lenet5": 1, "vgg19": 1, "resnet34": 1},
               train_per_class={"mnist": 30, "cifar10": 30},
               width={"mlp": 1.0, "lenet5": 1.0, "vgg19": 0.125, "resnet34": 0.125}, trials=15)
SWEEP = dict(models=["mlp"], ms=[2, 3], ns=[5, 10], classes=[0, 1], progress=False)

SWEEP_CHILD = textwrap.dedent("""
    import time, torch
    torch.set_num_threads({threads})
    from pmi_tutorial import experiments, fingerprint
    from pmi_tutorial.profiles import Profile
    slow = fingerprint.run_on_features
    def run_on_features(*a, **kw):  # a slower cell, so the kill lands mid-sweep
        time.sleep(0.5)
        return slow(*a, **kw)
    fingerprint.run_on_features = run_on_features
    experiments.reproduce("table1", Profile(**{profile!r}), out_dir={out!r}, cache_dir={cache!r},
                          log=lambda *a: None, **{sweep!r})
""")


def _cells(result):
    return {(c['model'], c.get('rate'), c['m'], c['n']): {k: v for k, v in c.items() if k != "seconds"}
            for c in result["cells"]}


def test_sweep_resumes_after_sigkill_and_is_deterministic(tmp_path, mnist_root):
    out, cache = tmp_path / "killed", tmp_path / "cache"
    path = experiments.result_path(out, "table1", TINY)
    profile = {k: v for k, v in TINY.to_dict().items()}
    code = SWEEP_CHILD.format(threads=1, profile=profile, out=str(out),
                              cache=str(cache), sweep=SWEEP)
    env = dict(os.environ, PMI_DATA_DIR=str(mnist_root))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)

    def one_cell_done():
        try:
            return len(json.loads(path.read_text())["cells"]) >= 1
        except (OSError, ValueError):  # not there yet; never half-written (os.replace)
            return False

    _wait_and_kill(proc, one_cell_done)
    partial = experiments.load_result(path)  # the file the kill left loads
    assert 1 <= len(partial["cells"]) < 4, "killed too late to test anything"
    (out / f".{path.name}.k1ll3d.tmp").write_text('{"cells": [')  # as a kill mid-write leaves

    resumed = experiments.reproduce("table1", TINY, out_dir=out, cache_dir=cache, log=lambda *a: None,
                                    **SWEEP)
    assert resumed["runs"][0]["cells_done"] == len(partial["cells"])
    full = experiments.reproduce("table1", TINY, out_dir=tmp_path / "full", cache_dir=tmp_path / "cache2",
                                 log=lambda *a: None, **SWEEP)
    assert len(_cells(full)) == 4 and _cells(resumed) == _cells(full)
    assert _cells(experiments.load_result(path)) == _cells(full)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    # determinism: the same seed, a second time from scratch (the cached model, new result file)
    again = experiments.reproduce("table1", TINY, out_dir=tmp_path / "again", cache_dir=tmp_path / "cache2",
                                  log=lambda *a: None, **SWEEP)
    assert _cells(again) == _cells(full)


def test_fingerprint_run_is_deterministic(mnist_root):
    split = data.subset(data.owner_split("mnist", seed=0, root=mnist_root), 30, seed=1, val_per_class=60)
    model = build_model("mlp", seed=0)  # an untrained model: acc_r near 1/m, many near-ties
    pools = {r: data.class_pools(split, r) for r in range(4)}
    a = fingerprint.run(model, pools, m=3, n=10, trials=40, seed=5)
    b = fingerprint.run(model, pools, m=3, n=10, trials=40, seed=5)
    assert a.acc_by_class == b.acc_by_class and a.r_opt == b.r_opt
    c = fingerprint.run(model, pools, m=3, n=10, trials=40, seed=6)
    assert c.acc_by_class != a.acc_by_class  # the seed matters
