"""Trainer acceptance: the Ultralytics recipe, sharding (1 vs 8 devices, 2 processes), exact resume, bad input."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(scope="module")
def folder(tmp_path_factory, colour_folder):
    return colour_folder(tmp_path_factory.mktemp("tinycls"), n_val=4)


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]


def run_train(args: list[str], env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([PY, "-m", "jaxyolo.train", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def config_args(folder, **kw) -> list[str]:
    base = dict(data=str(folder), model="yolov8n-cls.yaml", imgsz=32, batch=16, epochs=2, plots=False)
    base.update(kw)
    return ["--config", str(ROOT / "experiments" / "digits.py")] + [f"--config.{k}={v}" for k, v in base.items()]


@pytest.mark.ultralytics
def test_lr_columns_match_ultralytics_sgd(folder, tmp_path):
    """optimizer=SGD, same epochs/batch/dataset size: lr/pg0..2 equal Ultralytics' results.csv to 1e-6."""
    ultra = pytest.importorskip("ultralytics")
    m = ultra.YOLO("yolov8n-cls.yaml")
    m.train(data=str(folder), epochs=3, imgsz=32, batch=16, optimizer="SGD", lr0=0.01, device="cpu", workers=0,
            plots=False, project=str(tmp_path / "ul"), name="run", verbose=False, amp=False)
    ref = read_csv(tmp_path / "ul" / "run" / "results.csv")

    from jaxyolo.engine.train import train

    train(dict(data=str(folder), model="yolov8n-cls.yaml", epochs=3, imgsz=32, batch=16, optimizer="SGD",
               lr0=0.01, plots=False), save_dir=tmp_path / "ours")
    ours = read_csv(tmp_path / "ours" / "results.csv")
    assert len(ours) == len(ref) == 3
    for r, o in zip(ref, ours):
        for col in ("lr/pg0", "lr/pg1", "lr/pg2"):
            assert abs(float(r[col]) - float(o[col])) <= 1e-6, (col, r[col], o[col])


def final_row(save_dir: Path) -> dict:
    return read_csv(save_dir / "results.csv")[-1]


@pytest.mark.slow
def test_one_vs_eight_devices(folder, tmp_path):
    """Same global batch on 1 and 8 (simulated) devices: same final metrics within a small tolerance.

    BatchNorm under jit with the batch sharded over the mesh uses global-batch statistics (SyncBN), so the only
    difference is float reduction order."""
    r1 = run_train(config_args(folder) + ["--workdir", str(tmp_path / "d1")])
    assert r1.returncode == 0, r1.stderr[-3000:]
    r8 = run_train(config_args(folder) + ["--workdir", str(tmp_path / "d8")],
                   env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert r8.returncode == 0, r8.stderr[-3000:]
    assert "8 device(s)" in r8.stdout
    a, b = final_row(tmp_path / "d1"), final_row(tmp_path / "d8")
    assert abs(float(a["train/loss"]) - float(b["train/loss"])) < 2e-3
    assert abs(float(a["val/loss"]) - float(b["val/loss"])) < 2e-3
    assert abs(float(a["metrics/accuracy_top1"]) - float(b["metrics/accuracy_top1"])) <= 1 / 16 + 1e-9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_single_process(folder, tmp_path):
    """Two local processes (jax.distributed, CPU, localhost coordinator) train together and match one process with
    the same number of devices (2) and the same global batch."""
    single = run_train(config_args(folder) + ["--workdir", str(tmp_path / "one")],
                       env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert single.returncode == 0, single.stderr[-3000:]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([PY, "-m", "jaxyolo.train", *config_args(folder), "--workdir", str(tmp_path / "two"),
                               "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2",
                               "--process_id", str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "2 process(es)" in outs[0][0]
    a, b = final_row(tmp_path / "one"), final_row(tmp_path / "two")
    assert abs(float(a["train/loss"]) - float(b["train/loss"])) < 2e-3
    assert abs(float(a["val/loss"]) - float(b["val/loss"])) < 2e-3


def load_pt_state(path: Path) -> dict:
    from converters.torch_weights.load import load_pt

    _, variables, _ = load_pt(path)
    import jax

    return {"/".join(map(str, k)): np.asarray(v) for k, v in
            jax.tree_util.tree_flatten_with_path(variables)[0]}


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_exact(folder, tmp_path):
    """SIGKILL in the middle of epoch 3 of 10, rerun the same command: final weights equal an uninterrupted run's.
    (10 epochs: checkpoints are written on a thread of their own, so the run goes on while the one in epoch 3 is
    being written; with 5 it could end before the test saw that checkpoint.)"""
    args = config_args(folder, epochs=10, checkpoint_every=3)
    full = run_train(args + ["--workdir", str(tmp_path / "full")])
    assert full.returncode == 0, full.stderr[-3000:]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    work = tmp_path / "killed"
    p = subprocess.Popen([PY, "-m", "jaxyolo.train", *args, "--workdir", str(work)], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nb, k = 4, 3  # 64 images / batch 16; checkpoint_every=3 global batches
    step = next(s for s in range(k, 10 * nb, k) if 2 * nb < s < 3 * nb)  # 9: after batch 1 of epoch 3
    target = work / "checkpoints" / str(step)  # the step checkpoint in the middle of epoch 3
    deadline = time.time() + 300
    while not target.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert target.exists(), "no mid-epoch-3 checkpoint appeared"
    p.send_signal(signal.SIGKILL)
    p.wait()
    rows_before = read_csv(work / "results.csv")
    assert len(rows_before) < 10, "the run finished before it could be killed"
    again = run_train(args + ["--workdir", str(work)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming" in again.stdout
    a, b = load_pt_state(tmp_path / "full" / "weights" / "last.pt"), load_pt_state(work / "weights" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ra, rb = read_csv(tmp_path / "full" / "results.csv"), read_csv(work / "results.csv")
    for x, y in zip(ra, rb):
        for col in ("train/loss", "metrics/accuracy_top1", "val/loss", "lr/pg0"):
            assert x[col] == y[col], col


def test_epoch_checkpoints_wait_for_checkpoint_interval(folder, tmp_path):
    """An epoch end checkpoints once ``checkpoint_interval`` seconds have passed since the last checkpoint, and the
    last epoch always: a short run with the default (10 s) keeps only its last epoch's checkpoint, with 0 every
    epoch's; a bad value is a clear error."""
    from jaxyolo.engine.train import train

    def steps(run):
        return sorted(int(p.name) for p in (tmp_path / run / "checkpoints").iterdir() if p.name.isdigit())

    kw = dict(data=str(folder), model="yolov8n-cls.yaml", epochs=3, imgsz=32, batch=16, plots=False)
    nb = 4  # 64 images / batch 16
    train(kw, save_dir=tmp_path / "short")
    assert steps("short") == [3 * nb]
    train({**kw, "checkpoint_interval": 0}, save_dir=tmp_path / "every")
    assert steps("every") == [nb, 2 * nb, 3 * nb]
    for bad in (-1, "10s", True):
        with pytest.raises(ValueError, match=r"checkpoint_interval=.* is invalid: expected a number of seconds >= 0"):
            train({**kw, "checkpoint_interval": bad}, save_dir=tmp_path / "bad")


def test_early_stopping_and_patience_zero(folder, tmp_path, monkeypatch):
    """Early stopping counts epochs without a fitness improvement, as Ultralytics' EarlyStopping: with every epoch's
    fitness the same, patience=1 stops after the second epoch; patience=0 disables it (Ultralytics: ``patience or
    inf``) and trains every epoch; a negative patience is a clear error."""
    import dataclasses

    from jaxyolo.engine import train as train_mod

    real = train_mod.Evaluator.__call__
    monkeypatch.setattr(train_mod.Evaluator, "__call__",
                        lambda self, *a: dataclasses.replace(real(self, *a), top1=0.5, top5=1.0))  # fitness 0.75
    kw = dict(data=str(folder), model="yolov8n-cls.yaml", epochs=4, imgsz=32, batch=16, plots=False)
    train_mod.train({**kw, "patience": 1}, save_dir=tmp_path / "p1")
    assert [r["epoch"] for r in read_csv(tmp_path / "p1" / "results.csv")] == ["1", "2"]
    train_mod.train({**kw, "patience": 0}, save_dir=tmp_path / "p0")
    assert [r["epoch"] for r in read_csv(tmp_path / "p0" / "results.csv")] == ["1", "2", "3", "4"]
    with pytest.raises(ValueError, match="'patience=-1' is an invalid value: 'patience' must be an integer >= 0"):
        train_mod.train({**kw, "patience": -1}, save_dir=tmp_path / "bad")


def test_a_run_that_fails_in_set_up_leaves_no_folder(folder, tmp_path):
    """A mistake found in set-up (here an optimizer name) leaves no run folder behind (the next run is not train-2),
    unless the folder was there before (a resumed run's, or one the user made)."""
    from jaxyolo.engine.train import train

    kw = dict(data=str(folder), model="yolov8n-cls.yaml", epochs=1, imgsz=32, batch=16, plots=False,
              optimizer="Adamx")
    with pytest.raises(ValueError, match="optimizer='Adamx' is not supported"):
        train(kw, save_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(ValueError, match="optimizer='Adamx' is not supported"):
        train(kw, save_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "train.log").exists()


def test_unknown_config_key_is_clear(folder, tmp_path):
    r = run_train(config_args(folder, epochs=1) + ["--config.lr_0=0.1", "--workdir", str(tmp_path / "w")])
    assert r.returncode != 0
    assert "lr_0" in (r.stderr + r.stdout) and "Traceback" not in r.stderr


def test_bad_config_value_messages(folder, tmp_path):
    from jaxyolo.cfg import ConfigKeyError
    from jaxyolo.engine.train import train

    with pytest.raises(ConfigKeyError, match=r"'lr_0' is not a valid jaxyolo argument.*did you mean 'lr0'"):
        train(dict(data=str(folder), lr_0=0.1), save_dir=tmp_path / "a")
    for bad in (-1, 0, "abc", (32, 0), 3.5):
        with pytest.raises(ValueError, match=r"imgsz=.* is invalid: expected a positive int"):
            train(dict(data=str(folder), imgsz=bad), save_dir=tmp_path / "b")
    with pytest.raises(ValueError, match=r"aug_backend='cuda' is invalid: expected one of opencv, pillow"):
        train(dict(data=str(folder), aug_backend="cuda"), save_dir=tmp_path / "b")
    for bad in (-1, 2**32, True, "7"):
        with pytest.raises(ValueError, match=r"seed=.* is invalid: expected an integer from 0 to 4294967295"):
            train(dict(data=str(folder), seed=bad), save_dir=tmp_path / "b")
    from jaxyolo.data import DatasetError

    with pytest.raises(DatasetError, match=r"no_such_dir"):
        train(dict(data=str(tmp_path / "no_such_dir"), imgsz=32), save_dir=tmp_path / "c")
    r = run_train(config_args(tmp_path / "no_such_dir", epochs=1) + ["--workdir", str(tmp_path / "d")])
    assert r.returncode != 0 and "no_such_dir" in r.stderr and "Traceback" not in r.stderr


def test_nan_loss_stops_and_never_writes_best(folder, tmp_path, monkeypatch):
    from jaxyolo.engine import train as train_mod
    from jaxyolo.engine.train import TrainingError, train

    monkeypatch.setattr(train_mod, "check_values", lambda cfg: cfg)  # lr0 past Ultralytics' range: a sure divergence
    with pytest.raises(TrainingError, match=r"NaN/inf .*loss at epoch \d.*best.pt was not overwritten"):
        train(dict(data=str(folder), model="yolov8n-cls.yaml", epochs=3, imgsz=32, batch=16, optimizer="SGD",
                   lr0=1e12, warmup_epochs=0.0, plots=False), save_dir=tmp_path / "nan")
    best = tmp_path / "nan" / "weights" / "best.pt"
    if best.exists():  # written by an epoch before the divergence: its weights must be finite
        assert all(np.isfinite(v).all() for v in load_pt_state(best).values())


def test_runs_in_one_process_log_to_their_own_file_and_to_the_current_stdout(folder, tmp_path, capsys):
    """Two ``train()`` calls in one process (the Python API): each run's train.log holds only its own lines, and the
    console lines go to whatever sys.stdout is at the time (pytest swaps it per test; a handler bound to an old
    stream would print nowhere)."""
    from jaxyolo.engine.train import train

    kw = dict(data=str(folder), model="yolov8n-cls.yaml", epochs=1, imgsz=32, batch=16, optimizer="SGD", plots=False)
    train(dict(kw, lr0=0.01), save_dir=tmp_path / "first")
    first_out = capsys.readouterr().out
    train(dict(kw, lr0=0.02), save_dir=tmp_path / "second")
    second_out = capsys.readouterr().out
    for out, lr in ((first_out, "lr=0.01"), (second_out, "lr=0.02")):
        assert lr in out and "1 epochs completed" in out
    first_log = (tmp_path / "first" / "train.log").read_text()
    second_log = (tmp_path / "second" / "train.log").read_text()
    assert "lr=0.01" in first_log and "lr=0.02" not in first_log
    assert "lr=0.02" in second_log and "lr=0.01" not in second_log


def test_garbage_collector_paused_for_set_up_and_restored(folder, tmp_path, monkeypatch):
    """train() keeps CPython's collector off while it sets up (compiling the steps), on for the epochs with what set-up
    left alive frozen, and afterwards leaves it as it found it: nothing frozen, on stays on, off stays off, also when
    the run fails."""
    import gc

    import jaxyolo.engine.train as T

    seen = {}
    real_warm_up, real_eval = T._warm_up, T.Evaluator.__call__

    def warm_up(*a, **k):
        seen["set_up"] = (gc.isenabled(), gc.get_freeze_count() > 0)
        return real_warm_up(*a, **k)

    def evaluate(self, *a, **k):
        seen["epoch"] = (gc.isenabled(), gc.get_freeze_count() > 0)
        return real_eval(self, *a, **k)

    monkeypatch.setattr(T, "_warm_up", warm_up)
    monkeypatch.setattr(T.Evaluator, "__call__", evaluate)
    kw = dict(data=str(folder), model="yolov8n-cls.yaml", epochs=1, imgsz=32, batch=16, plots=False)
    gc.unfreeze()  # (nothing in this test process froze objects; make sure)
    assert gc.isenabled()
    T.train(kw, save_dir=tmp_path / "a")
    assert seen == {"set_up": (False, True), "epoch": (True, True)}
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        seen.clear()
        T.train(kw, save_dir=tmp_path / "b")
        assert seen == {"set_up": (False, True), "epoch": (False, True)} and not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(Exception):
        T.train(dict(kw, data=str(tmp_path / "missing")), save_dir=tmp_path / "c")
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.freeze()  # a caller's own freeze is left alone
    try:
        n = gc.get_freeze_count()
        T.train(kw, save_dir=tmp_path / "d")
        assert abs(gc.get_freeze_count() - n) < 1000 and gc.isenabled()  # (frozen objects that die leave it)
    finally:
        gc.unfreeze()


def test_plots_and_tensorboard_are_written_in_the_background(folder, tmp_path):
    """plots=True: train_batch0-2.jpg, results.png and the best epoch's confusion matrices, all readable images, no
    temporary files left; the matrices are those of the best epoch (its validation counts every image once). The
    TensorBoard event file holds every results.csv column of every epoch."""
    from PIL import Image

    from jaxyolo.engine.train import train

    best = train(dict(data=str(folder), model="yolov8n-cls.yaml", epochs=2, imgsz=32, batch=16, optimizer="SGD",
                      plots=True), save_dir=tmp_path / "run")
    run = tmp_path / "run"
    names = ["train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg", "results.png", "confusion_matrix.png",
             "confusion_matrix_normalized.png"]
    for name in names:
        with Image.open(run / name) as im:
            im.load()
            assert min(im.size) >= 128, (name, im.size)
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]
    assert best.confusion_matrix.sum() == best.n
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    (events,) = run.glob("events.out.tfevents.*")
    logged = {(e.step, v.tag) for r in tf.data.TFRecordDataset(str(events))
              for e in [event_pb2.Event.FromString(r.numpy())] for v in e.summary.value}
    assert logged == {(step, c) for step in (1, 2) for c in read_csv(run / "results.csv")[0] if c not in
                      ("epoch", "time")}
    # best.pt is the best epoch's file (a copy of that epoch's last.pt), last.pt the last epoch's
    from converters.torch_weights.unpickler import read_checkpoint

    rows = read_csv(run / "results.csv")
    fit = [float(r["metrics/accuracy_top1"]) + float(r["metrics/accuracy_top5"]) for r in rows]
    best_epoch = int(np.argmax(fit))  # the first maximum: a later equal fitness does not replace best.pt
    ck_best, ck_last = read_checkpoint(run / "weights" / "best.pt"), read_checkpoint(run / "weights" / "last.pt")
    assert (ck_best["epoch"], ck_last["epoch"]) == (best_epoch, len(rows) - 1)
    same = (run / "weights" / "best.pt").read_bytes() == (run / "weights" / "last.pt").read_bytes()
    assert same == (best_epoch == len(rows) - 1)
    assert sorted(p.name for p in (run / "weights").iterdir()) == ["best.pt", "last.pt"]


def test_kept_batches_reuse_small_splits_and_stream_large_ones():
    from jaxyolo.engine.val import KeptBatches

    calls = []

    def make():
        calls.append(1)
        for k in range(3):
            yield np.full((2, 4), k, np.uint8), np.array([k, k])

    small = KeptBatches(make, limit_bytes=1 << 20)
    first, second = [list(small) for _ in range(2)]
    assert len(calls) == 1 and len(first) == 3
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(first, second))
    big = KeptBatches(make, limit_bytes=20)  # 3 batches of 8 + 16 bytes: over the limit -> streams every pass
    assert len(list(big)) == len(list(big)) == 3 and len(calls) == 3
    broken = KeptBatches(make, limit_bytes=1 << 20)
    next(iter(broken))  # a pass that stops early keeps nothing
    assert len(list(broken)) == 3 and len(calls) == 5


def test_kept_batches_read_ahead_on_a_thread():
    """The trainer reads the first validation's batches on a background thread while epoch 1 trains: same batches,
    one read for a small split, a streamed pass for a large one, a failure raised where the batches are used."""
    import threading

    from jaxyolo.engine.val import KeptBatches

    readers = []

    def make(n=3, fail_at=None):
        readers.append(threading.current_thread().name)
        for k in range(n):
            if k == fail_at:
                raise ValueError("val/3.jpg: broken image")
            yield np.full((2, 4), k, np.uint8), np.array([k, k])

    expected = list(make())
    readers.clear()
    small = KeptBatches(make, limit_bytes=1 << 20)
    small.read_ahead()
    for got in (list(small), list(small)):
        assert len(got) == 3 and all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(got, expected))
    assert readers == ["jaxyolo-val-read"]  # read once, on the reader thread

    readers.clear()
    big = KeptBatches(make, limit_bytes=20)  # over the limit: the read-ahead gives up, the passes stream
    big.read_ahead()
    assert len(list(big)) == len(list(big)) == 3 and readers == ["jaxyolo-val-read", "MainThread", "MainThread"]

    broken = KeptBatches(lambda: make(fail_at=1))
    broken.read_ahead()
    with pytest.raises(ValueError, match="broken image"):
        list(broken)

    closed = KeptBatches(lambda: make(n=1000))
    closed.read_ahead()
    closed.close()  # the trainer stops it when training ends early
    assert not closed._reader.is_alive()


def test_training_a_png_folder_imports_neither_torch_nor_tensorflow(folder, tmp_path):
    """A run on a PNG folder needs neither torch nor TensorFlow: batches from host threads (data/host_train.py),
    last.pt/best.pt from the torch-free writer (converters/torch_weights/writer.py), TensorBoard scalars from
    utils/tensorboard.py. With both made unimportable the run writes its weights, with the run's class names and
    image size (read back with the torch-free reader), and its event file."""
    script = f"""
import sys
sys.modules["torch"] = sys.modules["tensorflow"] = None  # importing either raises ImportError
from jaxyolo.engine.train import train
train(dict(data={str(folder)!r}, model="yolov8n-cls.yaml", epochs=1, imgsz=32, batch=16, plots=False),
      save_dir={str(tmp_path / 'run')!r})
assert sys.modules["torch"] is None and sys.modules["tensorflow"] is None
"""
    r = subprocess.run([PY, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    import jax

    from converters.torch_weights.load import load_pt

    module, variables, meta = load_pt(tmp_path / "run" / "weights" / "last.pt")
    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    assert meta["names"] == dict(enumerate(classes)) and meta["imgsz"] == 32 and meta["dtype"] == "float16"
    leaves = jax.tree.leaves(variables)
    assert len(leaves) > 100 and all(np.isfinite(np.asarray(a)).all() for a in leaves)
    assert (tmp_path / "run" / "weights" / "best.pt").read_bytes() == (tmp_path / "run" / "weights" / "last.pt"
                                                                         ).read_bytes()
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1
