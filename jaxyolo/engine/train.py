"""The trainer: Ultralytics' classification recipe as one readable function over a jit-compiled, sharded train state.

Resume is exact: the data order is a pure function of (seed, epoch, batch), the per-batch hyper-parameters a pure
function of the batch counter, and the orbax checkpoint holds the whole device state (parameters, BatchNorm
statistics, optimizer state, EMA, the gradient accumulator) plus the host-side counters.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import signal
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from tqdm import tqdm

from jaxyolo import parallel
from jaxyolo.cfg import (check_aug_backend, check_seconds, check_seed, check_values, get_cfg,
                         quantize_flags)
from jaxyolo.data.host_eval import parse_hw
from jaxyolo.engine import optim
from jaxyolo.engine.checkpoint import Checkpointer, abstract_like
from jaxyolo.engine.prefetch import BackgroundWriter, EpochPrefetcher
from jaxyolo.engine.steps import create_state, make_optimizer_step, make_train_step, step_update, update_mode
from jaxyolo.engine.val import ClassifyMetrics, Evaluator, KeptBatches, eval_batch_size, split_batches
from jaxyolo.nn.cpu_conv import quick_trace
from jaxyolo.nn.cpu_options import quick_compile, train_compiler_options
from jaxyolo.utils import plots
from jaxyolo.utils.collector import paused_for_set_up
from jaxyolo.utils.device import select_device
from jaxyolo.utils.files import copy_atomic, run_dir
from jaxyolo.utils.trace_cache import CachedJit

LOGGER = logging.getLogger("jaxyolo")
CSV_COLUMNS = ["epoch", "time", "train/loss", "metrics/accuracy_top1", "metrics/accuracy_top5", "val/loss",
               "lr/pg0", "lr/pg1", "lr/pg2"]
PREFETCH_MAX_BYTES = 256 << 20  # training batches made ahead at most, once the steps compile (EpochPrefetcher.deepen)
AUG_KEYS = ("scale", "fliplr", "flipud", "auto_augment", "hsv_h", "hsv_s", "hsv_v", "erasing", "aug_backend")


class TrainingError(RuntimeError):
    """A run that cannot continue (NaN loss, bad settings); the message says what happened and what to change."""


def check_imgsz(imgsz) -> int | tuple[int, int]:
    """``imgsz`` as an int, or an (h, w) pair where one was given (``parse_hw``'s checks)."""
    h, w = parse_hw(imgsz)
    return (h, w) if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 else h


def setup_logging(save_dir: Path | None = None, verbose: bool = True) -> logging.Handler | None:
    """The 'jaxyolo' logger to stdout (``predict.ensure_logging``'s handler), plus ``save_dir/train.log`` for this run;
    returns that file handler, which the caller removes when the run ends (a second ``train()`` in the same process
    must not write into the first run's log)."""
    from jaxyolo.engine.predict import ensure_logging

    ensure_logging(verbose)
    LOGGER.setLevel(logging.INFO if verbose else logging.WARNING)
    if save_dir is None:
        return None
    fh = logging.FileHandler(save_dir / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOGGER.addHandler(fh)
    return fh


def build_model_for(args: dict, nc: int, names: dict):
    """The YOLO wrapper to train: from a YAML (fresh), a .pt (fine-tune; head re-sized to ``nc``), plus optional
    ``pretrained=<.pt>`` weight transfer. Returns the YOLO object with ``names`` set to the dataset's."""
    from jaxyolo.engine.model import YOLO
    from jaxyolo.nn.build import build_model
    from jaxyolo.engine.model import init_variables
    from jaxyolo.nn.transfer import transfer_variables

    src = str(args.get("model") or "yolov8n-cls.yaml")
    yolo = YOLO(src, nc=nc) if src.endswith((".yaml", ".yml")) else YOLO(src)
    pretrained = args.get("pretrained")
    if isinstance(pretrained, str) and pretrained.endswith(".pt"):
        donor = YOLO(pretrained)
        yolo.variables, n = transfer_variables(donor.variables, yolo.variables)
        LOGGER.info(f"Transferred {n} tensors from {pretrained}")
    if yolo.nc != nc:  # fine-tuning on a dataset with another class count: new head (Ultralytics' reshape_outputs)
        module, cfg = build_model(yolo.cfg, nc=nc)
        fresh = init_variables(module, int(args["seed"]), cfg["channels"])
        variables, n = transfer_variables(yolo.variables, fresh)
        LOGGER.info(f"Re-sized the Classify head from {yolo.nc} to {nc} classes ({n} tensors transferred)")
        yolo.module, yolo.cfg, yolo.variables = module, cfg, variables
    yolo.names = dict(names)
    return yolo


def train(overrides: dict | None = None, save_dir: str | Path | None = None) -> ClassifyMetrics:
    """Train a classification model; ``overrides`` use Ultralytics' argument names (see ``cfg/default.yaml``).

    ``save_dir`` (``--workdir``) fixes the run directory; rerunning with the same directory resumes exactly.
    Returns the validation metrics of the best epoch.
    """
    args = check_values(get_cfg(overrides))
    args["imgsz"] = check_imgsz(args["imgsz"])
    args["aug_backend"] = check_aug_backend(args["aug_backend"])
    args["seed"] = check_seed(args["seed"])
    args["checkpoint_interval"] = check_seconds("checkpoint_interval", args["checkpoint_interval"])
    if args["int8"] or (args["quantize"] is not None and quantize_flags(args["quantize"])[1]):
        raise ValueError("int8 / quantize=8 in training (Ultralytics 8.4's quantization-aware training) is not "
                         "available in jaxyolo: train in fp32, then export with int8=True (or quantize=8)")
    select_device(args["device"])
    proc, nproc = jax.process_index(), jax.process_count()
    main = proc == 0

    # ---- run directory and logging ----------------------------------------------------------------------------
    if save_dir is None and args["resume"]:
        runs = sorted(Path(args["project"] or "runs/classify").glob("*/checkpoints"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise TrainingError(f"resume=True but no run with checkpoints under {args['project'] or 'runs/classify'}")
        save_dir = runs[-1].parent
    save_dir = Path(save_dir) if save_dir is not None else run_dir(args["project"], args["name"], "train",
                                                                    args["exist_ok"])
    created = not save_dir.exists()
    (save_dir / "weights").mkdir(parents=True, exist_ok=True)
    log_file = setup_logging(save_dir if main else None, bool(args["verbose"]))
    done = False
    try:
        with paused_for_set_up() as set_up_done:  # the garbage collector skips what lives for the whole run
            metrics = _set_up_and_train(args, save_dir, proc, nproc, set_up_done)
        done = True
        return metrics
    finally:
        if log_file is not None:
            LOGGER.removeHandler(log_file)
            log_file.close()
        if not done and created and nproc == 1 and not _has_results(save_dir):
            shutil.rmtree(save_dir, ignore_errors=True)  # a run that failed before it had anything: no stray folder


def _has_results(save_dir: Path) -> bool:
    """Whether a run folder holds weights or a checkpoint (what a failed run must keep: it resumes from them)."""
    ckpts = save_dir / "checkpoints"
    return any((save_dir / "weights").iterdir()) or (ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()))


def _set_up_and_train(args, save_dir, proc, nproc, set_up_done=lambda: None) -> ClassifyMetrics:
    """Dataset, mesh, resume point and the background input pipeline; then the epochs (``_train``), which calls
    ``set_up_done()`` once the steps are compiled."""
    from jaxyolo import data

    imgsz = args["imgsz"]

    # ---- data -----------------------------------------------------------------------------------------------------
    ds = data.load_dataset(str(args["data"]), data_dir=args["data_dir"], fraction=args["fraction"],
                           files_in_background=True)  # (a first digits run: its folder is written meanwhile)
    mesh = parallel.make_mesh()
    n_dev = mesh.devices.size
    batch = int(args["batch"])
    if batch < 1 or batch % n_dev or batch % nproc:
        raise TrainingError(f"batch={batch} must be a positive multiple of the device count ({n_dev}) and of the "
                            f"process count ({nproc})" + (" (Ultralytics' AutoBatch, batch=-1 or a fraction, is not "
                                                          "available: give the global batch size)" * (batch < 1)))
    nb = data.num_train_batches(ds, batch)
    if nb < 1:
        raise TrainingError(f"batch={batch} is larger than the training split ({ds.splits.get('train', 0)} images)")
    val_split = "val" if "val" in ds.splits else "test"
    aug = {k: args[k] for k in AUG_KEYS}

    # ---- resume point, then the input pipeline starts on a background thread --------------------------------------
    # (tracing the augmentation graph and each next epoch's iterator overlap model set-up, compilation and validation)
    ckpt = Checkpointer(save_dir / "checkpoints", mesh, keep=int(args["keep_checkpoints"]))
    latest = ckpt.latest_step()
    resume_at = ckpt.restore_meta(latest) if latest is not None else {"epoch": 0, "batch": 0}

    def epoch_batches(epoch: int, start_batch: int):
        return data.train_batches(ds, imgsz=imgsz, batch_size=batch, seed=int(args["seed"]), epoch=epoch,
                                  start_batch=start_batch, aug=aug, process_index=proc, process_count=nproc,
                                  cache=args["cache"], workers=int(args["workers"]))

    prefetch = EpochPrefetcher(epoch_batches, int(resume_at["epoch"]), int(args["epochs"]),
                               int(resume_at["batch"]))
    writer_bg = BackgroundWriter()

    try:
        best = _train(args, ds, save_dir, mesh, batch, nb, val_split, ckpt, prefetch, writer_bg, set_up_done)
    finally:
        prefetch.close()
        writer_bg.close()
        ckpt.close()
    ds.wait_files()  # a first digits run writes its folder meanwhile (data/digits.py): there when train() returns
    return best


def _train(args, ds, save_dir, mesh, batch, nb, val_split, ckpt, prefetch, writer_bg, set_up_done) -> ClassifyMetrics:
    imgsz = args["imgsz"]
    proc, nproc = jax.process_index(), jax.process_count()
    main = proc == 0
    n_dev = mesh.devices.size

    # ---- model, optimizer and state ---------------------------------------------------------------------------------
    yolo = build_model_for(args, ds.nc, ds.names)
    on_accel = jax.default_backend() in ("gpu", "tpu")
    dtype = jnp.bfloat16 if (args["amp"] and on_accel) else jnp.float32
    module = yolo.module.clone(dtype=dtype, dropout=float(args["dropout"]))
    recipe = optim.resolve_recipe(args, ds.nc, ds.splits["train"], nb)
    tx = optim.build_tx(recipe)
    state = create_state(yolo.variables, tx, np)  # flat (engine/flat.py), raveled on the host
    shardings = parallel.state_shardings(mesh, state, bool(args["fsdp"]))
    state = jax.device_put(state, shardings)
    batch_sh = parallel.data_sharding(mesh)
    rep = parallel.replicated(mesh)
    mode = update_mode(recipe.accumulate)  # "split" (CPU, accumulating): the optimizer is its own executable
    params = sum(sum(seg.sizes) for _, seg in state.layout.groups)
    quick = quick_compile(params, imgsz, recipe.epochs * ds.splits["train"])  # a short run: compile time matters
    jit_kw = dict(donate_argnums=(0,), compiler_options=train_compiler_options(quick))  # traced once per machine
    step_fn = CachedJit(make_train_step(module, tx, float(args["label_smoothing"]), dtype, int(args["seed"]),
                                        step_update(mode)),
                        name="train_step" + ("_accumulate" if mode == "split" else ""),
                        key=(repr(module), repr(recipe), float(args["label_smoothing"]), jnp.dtype(dtype).name,
                             int(args["seed"]), mode, quick),
                        out_tree=jax.tree.structure((state, 0)), in_shardings=(shardings, batch_sh, batch_sh, rep, rep),
                        out_shardings=(shardings, rep), **jit_kw)
    opt_fn = (CachedJit(make_optimizer_step(tx), name="optimizer_step", key=(repr(recipe), jnp.dtype(dtype).name),
                        out_tree=jax.tree.structure((state,)), in_shardings=(shardings, rep),
                        out_shardings=(shardings,), **jit_kw) if mode == "split" else None)
    evaluator = Evaluator(module, ds.nc, mesh, dtype, prepare=state.layout.unravel_variables,  # takes the flat EMA
                          quick=quick)
    val_batches = KeptBatches(lambda: split_batches(ds, val_split, imgsz, batch * 2, n_dev, args["cache"],
                                                    int(args["workers"])))
    hw = parse_hw(imgsz)
    eval_ready = _compile_eval_ahead(evaluator, state.ema, batch, hw, n_dev)  # beside the train step's tracing
    # Once it has compiled, while the train step's compilation keeps one core busy, the other makes training batches
    # ahead (up to PREFETCH_MAX_BYTES: a digits run's all) instead of idling (EpochPrefetcher.deepen)
    deep = max(4, PREFETCH_MAX_BYTES // ((batch // nproc) * hw[0] * hw[1] * 3))
    eval_ready.add_done_callback(lambda _: prefetch.deepen(deep))
    if main and args["plots"]:  # matplotlib's import for the plots at the end, while XLA compiles (which leaves a
        writer_bg.submit(plots.try_plot, plots.load_matplotlib)  # core idle in its sequential passes)
    train_args = _train_args(state, batch, batch_sh, hw, direct=nproc == 1)
    opt_args = (train_args[0], train_args[3])  # (state, hp)
    with quick_trace(quick):  # the train step's convolution choices, wherever it is traced (step_fn's key holds
        step_leaves = step_fn.bind(*train_args)  # quick); called with leaves: no pytree work per batch
        opt_leaves = opt_fn.bind(*opt_args) if opt_fn else None  # (CachedJit.bind)
        _warm_up([(step_fn, train_args)] + ([(opt_fn, opt_args)] if opt_fn else []), eval_ready)
    set_up_done()  # (utils/collector.py)
    val_batches.read_ahead()  # the first validation's batches are read while epoch 1 trains
    LOGGER.info(f"optimizer: {recipe.name}(lr={recipe.lr0:.6g}, momentum={recipe.momentum}) with parameter groups "
                f"weight(decay={recipe.weight_decay:.6g}), bn(decay=0.0), bias(decay=0.0); accumulate "
                f"{recipe.accumulate}, warmup {recipe.warmup_iters} iterations")

    # ---- resume ---------------------------------------------------------------------------------------------------
    meta = {"epoch": 0, "batch": 0, "last_opt_step": -1, "best_fitness": None, "best_epoch": -1, "history": [],
            "patience_left": int(args["patience"]), "train_time": 0.0, "loss_sum": 0.0, "loss_n": 0}
    if (latest := ckpt.latest_step()) is not None:
        state, meta = ckpt.restore(latest, abstract_like(state, shardings))
        LOGGER.info(f"Resuming {save_dir} from epoch {meta['epoch'] + 1}, batch {meta['batch']} (checkpoint {latest})")
    elif main:
        (save_dir / "args.yaml").write_text(yaml.safe_dump({**args, "imgsz": list(imgsz) if isinstance(imgsz, tuple)
                                                            else imgsz}, sort_keys=False))
    tb = {"writer": _tensorboard(save_dir) if main else None}  # scalars are written on the background writer

    # ---- preemption: SIGTERM -> checkpoint at the next batch boundary, then exit ------------------------------------
    stop = {"sigterm": False}
    old_handler = signal.signal(signal.SIGTERM, lambda *_: stop.update(sigterm=True)) if main or nproc == 1 else None

    def checkpoint(epoch: int, batch_i: int, ni: int, force: bool = False):
        meta.update(epoch=epoch, batch=batch_i)
        ckpt.save(ni, jax.tree.unflatten(state_tree, leaves), dict(meta), force=force)
        nonlocal last_saved
        last_saved = time.perf_counter()

    # An epoch end checkpoints once ``checkpoint_interval`` seconds have passed since the last checkpoint, and always
    # after the last epoch: short epochs do not each pay for a save (a digits epoch is ~0.5 s, a save ~50 ms of CPU
    # beside the steps: ~0.3 s of the README job's epochs), and a killed run loses at most that long of training.
    last_saved = time.perf_counter()

    LOGGER.info(f"Training {yolo} on {ds.source}: {ds.splits['train']} train / {ds.splits.get(val_split, 0)} "
                f"{val_split} images, imgsz={imgsz}, batch={batch} on {n_dev} device(s) x {nproc} process(es), "
                f"logging to {save_dir}")
    best = None
    leaves, state_tree = jax.tree.flatten(state)  # the state lives as leaves in the loop; `state` is rebuilt as needed
    layout = state.layout
    del state
    start_epoch = int(meta["epoch"])
    epoch = start_epoch
    try:
        for epoch in range(start_epoch, recipe.epochs):
            # -- one epoch of training --
            t_epoch = time.perf_counter()
            first = int(meta["batch"]) if epoch == start_epoch else 0
            if first == 0:
                meta["loss_sum"], meta["loss_n"] = 0.0, 0
            batches = prefetch.epoch(epoch)
            pbar = tqdm(batches, total=nb, initial=first, desc=f"{epoch + 1}/{recipe.epochs}", disable=not main,
                        dynamic_ncols=True, leave=True)
            pending = []
            lrs = [0.0, 0.0, 0.0]
            for i, (images, labels) in enumerate(pbar, start=first):
                ni = i + nb * epoch
                lrs, mom, acc = recipe.batch_hparams(ni, epoch)
                do_update = ni - int(meta["last_opt_step"]) >= acc
                if do_update:
                    meta["last_opt_step"] = ni
                hp = np.array([*lrs, mom, float(do_update)], np.float32)
                x, y = images, labels.astype(np.int32)  # one process: the jitted step places them (in_shardings)
                if nproc > 1:
                    x, y = parallel.global_batch(batch_sh, x, y)
                *leaves, loss = step_leaves(leaves, [x], [y], [hp], [np.int32(ni)])
                if do_update and opt_leaves is not None:
                    leaves = list(opt_leaves(leaves, [hp]))
                pending.append(loss)
                if main and args["plots"] and ni < 3:
                    writer_bg.submit(plots.try_plot, plots.plot_batch, images, labels, ds.names,
                                     save_dir / f"train_batch{ni}.jpg")
                k = int(args["checkpoint_every"])
                save_now = stop["sigterm"] or (k > 0 and (ni + 1) % k == 0 and i + 1 < nb)
                if len(pending) >= 10 or i == nb - 1 or save_now:
                    vals = [float(v) for v in pending]  # the only host sync: every 10 batches
                    pending.clear()
                    if not all(math.isfinite(v) for v in vals):
                        raise TrainingError(f"NaN/inf loss at epoch {epoch + 1}, batch {i + 1}: training diverged; "
                                            f"lower lr0 (now {recipe.lr0}) or check the data. best.pt was not "
                                            f"overwritten.")
                    meta["loss_sum"] += sum(vals)
                    meta["loss_n"] += len(vals)
                    rate = (i + 1 - first) * batch / max(time.perf_counter() - t_epoch, 1e-9)
                    pbar.set_postfix_str(f"loss={meta['loss_sum'] / meta['loss_n']:.4g} lr={lrs[0]:.3g} "
                                         f"img/s={rate:.0f}")
                if save_now:
                    checkpoint(epoch, i + 1, ni + 1, force=stop["sigterm"])
                    if stop["sigterm"]:
                        ckpt.wait()
                        LOGGER.warning(f"SIGTERM: checkpoint saved at epoch {epoch + 1}, batch {i + 1}; rerun the "
                                       f"same command to resume")
                        raise SystemExit(143)
            pbar.close()
            meta["train_time"] = float(meta["train_time"]) + time.perf_counter() - t_epoch

            # -- validation on the EMA model, results.csv, weights --
            ema = jax.tree.unflatten(state_tree, leaves).ema
            ema_vars = layout.unravel_variables(jax.device_get(ema)) if main else None
            metrics = evaluator(ema, val_batches)
            if not math.isfinite(metrics.loss):
                raise TrainingError(f"NaN/inf validation loss at epoch {epoch + 1}: the EMA weights diverged; lower "
                                    f"lr0 (now {recipe.lr0}) or check the data. best.pt was not overwritten.")
            tloss = meta["loss_sum"] / max(meta["loss_n"], 1)
            row = [epoch + 1, round(meta["train_time"], 3), tloss, metrics.top1, metrics.top5, metrics.loss, *lrs]
            meta["history"].append(row)
            LOGGER.info(f"{'':>11}{val_split}: {metrics.summary_line()}  val/loss {metrics.loss:.4f}")
            improved = meta["best_fitness"] is None or metrics.fitness > meta["best_fitness"]
            if improved:
                meta["best_fitness"], meta["best_epoch"] = metrics.fitness, epoch
                meta["patience_left"] = int(args["patience"])
                best = metrics
            else:
                meta["patience_left"] = int(meta["patience_left"]) - 1
            if main:
                _write_csv(save_dir / "results.csv", meta["history"])
                if tb["writer"] is not None:
                    writer_bg.submit(_log_scalars, tb, dict(zip(CSV_COLUMNS[2:], row[2:])), epoch + 1)
                extra = {"epoch": epoch, "best_fitness": meta["best_fitness"],
                         "train_metrics": {**metrics.results_dict, "val/loss": metrics.loss},
                         "train_results": {c: [r[j] for r in meta["history"]] for j, c in enumerate(CSV_COLUMNS)}}
                paths = [save_dir / "weights" / n for n in (("last.pt", "best.pt") if improved else ("last.pt",))]
                writer_bg.submit(_save_weights, paths, yolo, ema_vars, args, extra)
            early = args["patience"] > 0 and meta["patience_left"] <= 0  # (patience=0: never, as Ultralytics)
            final = epoch + 1 == recipe.epochs or early
            if final or time.perf_counter() - last_saved >= args["checkpoint_interval"]:
                checkpoint(epoch + 1, 0, nb * (epoch + 1))
            if early:
                LOGGER.info(f"EarlyStopping: no improvement in the last {args['patience']} epochs; best epoch "
                            f"{meta['best_epoch'] + 1}")
                break
    finally:
        val_batches.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)

    if best is None:  # resumed after the last epoch, or best came from before the restart: re-validate best.pt
        best = metrics if "metrics" in locals() else ClassifyMetrics()
    if main and args["plots"] and meta["history"]:  # once, at the end (as Ultralytics): the best epoch's matrix
        writer_bg.submit(plots.try_plot, plots.plot_results, save_dir / "results.csv")
        if best.confusion_matrix is not None:
            writer_bg.submit(plots.try_plot, plots.plot_confusion_matrix, best.confusion_matrix, ds.names, save_dir)
    writer_bg.wait()
    best.save_dir = save_dir
    LOGGER.info(f"{recipe.epochs - start_epoch} epochs completed in {float(meta['train_time']) / 3600:.3f} hours. "
                f"Results saved to {save_dir}; best weights {save_dir / 'weights' / 'best.pt'}")
    return best


def _train_args(state, batch, batch_sh, hw: tuple[int, int], direct: bool) -> tuple:
    """The train step's arguments as ``ShapeDtypeStruct``s, equal to the real ones in shape, dtype *and* sharding,
    or the jit cache misses and the step compiles twice (``JAX_EXPLAIN_CACHE_MISSES=1`` shows why): hp, ni and, in
    one process (``direct``), the numpy batch arrive uncommitted; several processes pass global arrays."""
    sds = jax.ShapeDtypeStruct
    sh = None if direct else batch_sh
    return (state, sds((batch, *hw, 3), jnp.uint8, sharding=sh), sds((batch,), jnp.int32, sharding=sh),
            sds((5,), jnp.float32), sds((), jnp.int32))


def _compile_eval_ahead(evaluator, ema, batch, hw: tuple[int, int], n_dev):
    """Start compiling the eval step on a thread of its own, before the train step is traced: its compilation (C++,
    without the GIL) then runs on the second core while the main thread traces the train step (Python, ~0.5 s), where
    it used to wait for that trace and then share both cores with the train step's compilation (digits first run
    ~0.3 s sooner to its first batch, session 34). Returns the compilation's future; only a speed optimisation
    (``_warm_up``)."""
    from concurrent.futures import ThreadPoolExecutor

    ex = ThreadPoolExecutor(1, thread_name_prefix="jaxyolo-compile-eval")
    future = ex.submit(evaluator.warm_up, ema, eval_batch_size(batch * 2, n_dev), hw)
    ex.shutdown(wait=False)  # (the thread ends with the compilation)
    return future


def _warm_up(train_fns, eval_ready) -> None:
    """Compile the train step (and the optimizer step, ``(fn, args)`` each) side by side, and wait for the eval step
    (``_compile_eval_ahead``'s future), before the first batch (each XLA compile is mostly one thread, and the input
    pipeline is tracing on another); the jit calls afterwards hit the compilation cache. Only a speed optimisation:
    any failure here is ignored and the steps compile on first use as usual."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    jobs = [lambda f=f, a=a: f.lower(*a).compile() for f, a in train_fns]
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="jaxyolo-compile") as ex:  # (traced in the caller's context)
            for f in [ex.submit(contextvars.copy_context().run, j) for j in jobs]:
                f.result()
    except Exception as e:  # noqa: BLE001
        LOGGER.debug(f"ahead-of-time compilation skipped: {e}")
    try:
        eval_ready.result()
    except Exception as e:  # noqa: BLE001
        LOGGER.debug(f"ahead-of-time compilation of the eval step skipped: {e}")


def _tensorboard(save_dir: Path):
    try:
        from jaxyolo.utils.tensorboard import ScalarWriter

        return ScalarWriter(save_dir)
    except Exception as e:  # TensorBoard is a convenience: never fail a run over it
        LOGGER.warning(f"TensorBoard logging disabled: {e}")
        return None


def _log_scalars(tb: dict, scalars: dict, step: int) -> None:
    """Write one epoch's scalars to ``tb['writer']``; on any TensorBoard failure warn once and drop the writer."""
    writer = tb["writer"]
    if writer is None:
        return
    try:
        writer.write(scalars, step)
    except Exception as e:  # TensorBoard is a convenience: never fail a run over it
        LOGGER.warning(f"TensorBoard logging disabled: {e}")
        tb["writer"] = None


def _write_csv(path: Path, history: list) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in history:
            w.writerow([r[0], *(f"{v:.6g}" if isinstance(v, float) else v for v in r[1:])])
    tmp.replace(path)


def _save_weights(paths: list[Path], yolo, variables, args: dict, extra: dict) -> None:
    """last.pt (and best.pt) in Ultralytics' format, written without torch (``converters/torch_weights/writer.py``).
    The files of one epoch hold the same weights and keys: the first is written, the others are atomic copies of it
    (one model serialisation per epoch, not two)."""
    from converters.torch_weights.save import save_pt

    path = paths[0]
    imgsz = args["imgsz"]
    train_args = {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}, "task": "classify",
                  "imgsz": imgsz if isinstance(imgsz, int) else list(imgsz)}
    save_pt(path, yolo.module, variables, yolo.cfg, yolo.names, train_args=train_args, **extra)
    for other in paths[1:]:
        copy_atomic(path, other)
