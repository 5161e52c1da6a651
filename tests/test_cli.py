"""Tests for pmi_tutorial.cli: train -> verify -> attack end to end, and the help texts.

The end-to-end run goes through ``cli.main([...])`` (the same code as ``python -m
pmi_tutorial``) with a tiny profile added for the test, so that it trains an MNIST MLP for two
epochs on 1,000 images in seconds.  Bad input on the command line is covered by
tests/test_reliability.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pmi_tutorial import attacks, cli, files, profiles
from pmi_tutorial.checkpoint import load_checkpoint, save_checkpoint, sidecar_path
from pmi_tutorial.experiments import tables
from pmi_tutorial.models import build_model


@pytest.fixture
def env(monkeypatch, tmp_path, mnist_root, tiny_profile):
    monkeypatch.setenv("PMI_DATA_DIR", str(mnist_root))
    monkeypatch.setenv("PMI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(profiles.PROFILES, "tiny",
                        tiny_profile(train_per_class={"mnist": 100, "cifar10": 30}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_train_verify_attack_end_to_end(env, capsys):
    ckpt = env / "models" / "mlp.pt"
    assert cli.main(["train", "--model", "mlp", "--epochs", "2", "--profile", "tiny",
                     "--out", str(ckpt), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "PMI profile: tiny" in out and "best epoch" in out and f"wrote {ckpt}" in out
    model, settings, state = load_checkpoint(ckpt)
    assert settings["model"] == "mlp" and settings["epochs"] == 2 and settings["profile"] == "tiny"
    assert settings["train_per_class"] == 100 and len(state["history"]) == 2
    assert settings["best_epoch"] in (1, 2) and settings["best_val_acc"] > 0.5  # learned something
    # finished: only the checkpoint and its sidecar remain (no resume file, no temporary file)
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["mlp.pt", "mlp.pt.json"]

    # a second train with the same --out starts over and ends with the same weights (seeded)
    assert cli.main(["train", "--model", "mlp", "--epochs", "2", "--profile", "tiny",
                     "--out", str(env / "again.pt"), "--no-progress"]) == 0
    assert _same(model, load_checkpoint(env / "again.pt")[0])

    result = env / "verify.json"
    assert cli.main(["verify", "--checkpoint", str(ckpt), "--profile", "tiny", "--m", "3", "--n", "20",
                     "--trials", "20", "--classes", "0,1", "--json", str(result)]) == 0
    out = capsys.readouterr().out
    assert "class 0: acc_r = " in out and "class 1: acc_r = " in out and "class 2" not in out
    assert "r_opt = " in out and "paper's rule (Eq. 13-14" in out and "Eq. 15: mean acc_r" in out
    assert (out.index("verdict: ") < out.index("closed form") < out.index("permutation")
            < out.index("for comparison, no false-positive guarantee") < out.index("class 0: acc_r"))
    full = files.read_result(result, "pmi-tutorial-verify")  # the header with provenance
    assert full["provenance"]["command"].startswith("python -m pmi_tutorial verify")
    saved = full["paper_rule"]
    assert set(saved["acc_by_class"]) == {"0", "1"} and saved["m"] == 3 and saved["n"] == 20
    assert saved["r_opt"] in (0, 1) and isinstance(saved["verdict"], bool)
    assert saved["label"] == "for comparison, no false-positive guarantee"
    assert full["verdict"] in ("accused", "not accused") and full["test"] == "rank+tail"
    # the printed acc_r are the saved ones
    for r, acc in saved["acc_by_class"].items():
        assert f"class {r}: acc_r = {acc:.2f}" in out

    pruned = env / "pruned.pt"
    assert cli.main(["attack", "prune", "--checkpoint", str(ckpt), "--rate", "0.5", "--out", str(pruned),
                     "--profile", "tiny"]) == 0
    assert "prune: validation accuracy after the attack" in capsys.readouterr().out
    pmodel, psettings, _ = load_checkpoint(pruned)
    assert attacks.sparsity(pmodel) == pytest.approx(0.5, abs=1e-4)
    assert psettings["attack"] == "prune" and psettings["rate"] == 0.5 and 0 <= psettings["val_acc_after"] <= 1
    assert _same(model, load_checkpoint(ckpt)[0])  # the original checkpoint is untouched

    tuned = env / "tuned.pt"
    assert cli.main(["attack", "finetune", "--checkpoint", str(ckpt), "--out", str(tuned), "--epochs", "1",
                     "--profile", "tiny"]) == 0
    tmodel, tsettings, _ = load_checkpoint(tuned)
    assert not _same(model, tmodel)
    assert tsettings["attack"] == "finetune" and tsettings["fraction"] == 0.2
    assert len(tsettings["finetune_index"]) == round(0.2 * 20_000)  # the whole MNIST validation split
    assert sidecar_path(tuned).is_file() and not list(env.glob(".*.tmp"))


SUBCOMMANDS = {
    "train": ["--model", "--epochs", "--lr", "--batch-size", "--out", "--dataset", "--seed", "--profile",
              "resumes"],
    "verify": ["--suspect", "--checkpoint", "--pools", "--expect-digest", "--revealed", "--B", "--m",
               "--n", "--trials", "--rho", "--classes", "--json", "--profile", "verdict", "alpha",
               "for comparison", "Eq. 15", "TorchScript", "ONNX"],
    "pools": ["--dataset", "--revealed", "--seed", "--alpha", "--test", "--tail", "--B", "--out",
              "checksum", "digest", "--expect-digest"],
    "attack": ["finetune", "prune", "--checkpoint", "--out", "--rate", "--epochs", "--fraction"],
    "reproduce": ["table1", "figure2", "--profile", "--out", "--trials", "--models", "--ms", "--ns",
                  "resumes"],
    "study": ["--out", "--config", "tiny", "--archs", "--n-independent", "--n-owners", "resumes"],
}


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"usage: python -m pmi_tutorial {command}")
    for word in SUBCOMMANDS[command]:
        assert word in text, f"{word!r} missing from `{command} --help`"


def test_top_level_help_through_the_entry_point():
    proc = subprocess.run([sys.executable, "-m", "pmi_tutorial", "--help"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0 and proc.stderr == ""
    for word in ("train", "verify", "attack", "reproduce", "study", "PMI_DATA_DIR", "PMI_PROFILE", "examples:"):
        assert word in proc.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: python -m pmi_tutorial" in capsys.readouterr().out


def test_train_and_verify_run_on_the_synthetic_data(monkeypatch, tmp_path, synthetic_mnist_root,
                                                    tiny_profile, capsys):
    # without the real MNIST, the end-to-end path still runs (on the MNIST-shaped stand-in)
    monkeypatch.setenv("PMI_DATA_DIR", str(synthetic_mnist_root))
    monkeypatch.setenv("PMI_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(profiles.PROFILES, "tiny", tiny_profile())
    ckpt = tmp_path / "mlp.pt"
    assert cli.main(["train", "--model", "mlp", "--epochs", "1", "--profile", "tiny",
                     "--out", str(ckpt), "--no-progress"]) == 0
    assert load_checkpoint(ckpt)[1]["best_val_acc"] > 0.9  # the class templates are easy
    out = tmp_path / "v.json"
    assert cli.main(["verify", "--checkpoint", str(ckpt), "--profile", "tiny", "--n", "10",
                     "--trials", "10", "--classes", "0", "--json", str(out)]) == 0
    full = files.read_result(out, "pmi-tutorial-verify")
    saved = full["paper_rule"]
    assert list(saved["acc_by_class"]) == ["0"] and 0 <= saved["acc_by_class"]["0"] <= 1
    assert full["calibrated"]["closed_form"]["per_class"].keys() == {"0"}
    assert f"class 0: acc_r = {saved['acc_by_class']['0']:.2f}" in capsys.readouterr().out


# --------------------------------------------------------------------------- pools and verify


def _cli(args, cwd):
    """``python -m pmi_tutorial ARGS`` in a subprocess (started, not waited for)."""
    return subprocess.Popen([sys.executable, "-m", "pmi_tutorial", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))


def test_pools_registers_a_digest_and_verify_holds_the_owner_to_it(env, capsys):
    from pmi_tutorial import data, pools_file
    from pmi_tutorial.checkpoint import save_checkpoint
    from pmi_tutorial.models import build_model

    pools = env / "pools.npz"
    assert cli.main(["pools", "--revealed", "50", "--alpha", "0.05", "--test", "rank",
                     "--profile", "tiny", "--out", str(pools)]) == 0
    out = capsys.readouterr().out.splitlines()
    digest = pools_file.load_pools(pools).digest
    assert "verdict by rank at alpha = 0.05" in out[0] and out[1] == f"digest {digest}"
    assert out[2].startswith("register this digest now, before examining any suspect")
    ckpt = save_checkpoint(env / "suspect.pt", build_model("mlp", seed=0), {"model": "mlp"})
    (env / "notes.txt").write_text("not a model\n")
    split = data.owner_split("mnist", seed=0, train_per_class=100)  # the tiny profile's split
    other = pools_file.save_pools(env / "other.npz", pools_file.pools_from_split(
        split, 50, seed=1, alpha=0.05, test="rank"))  # another draw of P'
    assert pools_file.load_pools(env / "other.npz").digest != digest
    good = ["verify", "--suspect", str(ckpt), "--pools", str(pools), "--trials", "5", "--n", "20"]
    cases = {  # name: (arguments, words of the one line on stderr, words it must not hold)
        "ok": (good + ["--expect-digest", digest, "--json", "v.json"], [], []),
        "missing-checkpoint": (["verify", "--checkpoint", "absent.pt", "--pools", str(pools)],
                               ["no checkpoint at absent.pt", "check the path",
                                "python -m pmi_tutorial train --model mlp --out absent.pt"],
                               ["training.train", "checkpoint_path"]),
        "text-checkpoint": (["verify", "--checkpoint", "notes.txt", "--pools", str(pools)],
                            ["notes.txt is not a model file", "TorchScript or ONNX"], ["delete"]),
        "text-pools": (["verify", "--checkpoint", str(ckpt), "--pools", "notes.txt"],
                       ["notes.txt is not a pools file of pmi_tutorial", "pools --out FILE"],
                       ["allow_pickle", "pickled"]),
        "B-too-large": (good + ["--B", "50000"], ["B = 50000", "lower B to <="], []),
        "other-digest": (["verify", "--suspect", str(ckpt), "--pools", str(other),
                          "--expect-digest", digest], ["not the registered", digest[:16]], []),
        "bad-digest": (good + ["--expect-digest", "12ab"], ["64 hexadecimal characters"], []),
        "revealed-with-pools": (good + ["--revealed", "10"], ["drop --revealed"], []),
        "no-paper-rule": (good + ["--no-paper-rule"], [], []),
        "onnx-without-pools": (["verify", "--suspect", "m.onnx"], ["pass the owner's pools file"], []),
    }
    (env / "m.onnx").write_bytes(b"\x08\x07")  # no pools: refused before onnxruntime is asked
    procs = {name: _cli(args, env) for name, (args, _, _) in cases.items()}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        if name == "ok":
            assert proc.returncode == 0, stderr
            assert stdout.startswith("verdict: ") and "at alpha = 0.05 by rank" in stdout.splitlines()[0]
            assert "calibrated from 100 members" not in stdout
            assert "for comparison, no false-positive guarantee" in stdout
            saved = files.read_result(env / "v.json", "pmi-tutorial-verify")
            assert saved["verdict"] in ("accused", "not accused") and saved["alpha"] == 0.05
            assert saved["test"] == "rank" and saved["pools"]["digest"] == digest
            assert saved["p"] == pytest.approx(saved["calibrated"]["closed_form"]["pvalue"])
            assert "warning: only 50 revealed members" in stdout
            continue
        if name == "no-paper-rule":
            assert proc.returncode == 0 and "verdict: " in stdout and "Eq. 15" not in stdout, stderr
            continue
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, stderr)
        assert stdout == "", (name, stdout)  # refused before any work (nothing printed)
        _, words, absent = cases[name]
        for w in words:
            assert w in lines[0], (name, w, lines[0])
        for w in absent:
            assert w not in lines[0], (name, w, lines[0])


# ----------------------------------------------------------------------------- errors: one line, no traceback


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


def _cli_files(folder: Path, evil_checkpoint) -> dict:
    ok = save_checkpoint(folder / "mlp.pt", build_model("mlp", seed=0))
    trunc = folder / "trunc.pt"
    trunc.write_bytes(ok.read_bytes()[:5000])
    sidecar_path(trunc).write_text(sidecar_path(ok).read_text())
    other = save_checkpoint(folder / "other.pt", build_model("lenet5"), {"model": "mlp"})
    evil, marker = evil_checkpoint(folder)
    old = folder / "old"
    old.mkdir()
    (old / "table1_quick.json").write_text(
        json.dumps({"format": tables.RESULT_FORMAT, "version": 0, "cells": []}))
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
def cli_files(tmp_path_factory, evil_checkpoint):
    return _cli_files(tmp_path_factory.mktemp("cli"), evil_checkpoint)


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
