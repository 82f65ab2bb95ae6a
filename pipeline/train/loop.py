"""The one training loop, for the student and for teachers (`mtdistill train`, `mtdistill teacher train`).

Reads in order: seed -> data -> model -> optimiser -> resume -> steps (train, evaluate each epoch,
checkpoint). Data is one store snapshot (recorded in the checkpoint and tagged `train/<run>`), targets
come from the merge rule (stores/merge.py). Sample order and augmentation are functions of (seed,
epoch, position), so `--resume` after a kill reaches the same weights as an uninterrupted run. Under
torchrun each process trains on its share of every batch through DDP (pipeline/train/distributed.py) and
only rank 0 writes; the order is that of the global batch, so a run resumes on any number of processes
(with the same weights up to float order under the conditions of pipeline/train/distributed.py).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.checkpoint import build_model, load_checkpoint, model_tasks, param_groups
from pipeline.runtime import console, json_safe, progress_bar
from pipeline.train import distributed
from pipeline.train.augment import cutmix
from pipeline.train.config import TrainConfig, lr_factor
from pipeline.train.data import AugmentedItems, RunSampler, make_loader
from pipeline.train.distributed import World, train_mode
from stores.dataset import FrameDataset, resolve_policy
from stores.errors import UserError
from stores.files import atomic_write
from stores.location import is_url
from stores.merge import SRC_PSEUDO
from stores.repo import FrameStore
from student.losses import MultiTaskLoss
from student.model import normalize

__all__ = ["TrainConfig", "train"]

SOFT_KEYS = ("segm_topk", "segm_topk_p")     # top-k soft segmentation targets (MergePolicy.segm_soft)


@dataclass
class Run:
    """What a run holds between steps: its data, model, optimiser and position. `model` is the bare module
    (checkpointed, evaluated); `net` is what the steps run (its DDP wrapper under torchrun, else `model`)."""
    cfg: TrainConfig
    store: FrameStore
    arch: dict
    tasks: tuple[str, ...]
    data: FrameDataset
    device: torch.device
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    loss_fn: MultiTaskLoss
    step: int = 0
    total: int = 0
    saved_step: int | None = None     # step of the checkpoint on disk, if any
    bf16: bool = False                # bf16 autocast + channels_last (use_bf16, decided once in build_run)
    started: bool = False      # run folder, config.json and train/<run> tag written (after the first step)
    world: World = field(default_factory=World)
    net: torch.nn.Module | None = None

    @property
    def dir(self) -> Path:
        """The run's output folder: cfg.out / cfg.run (checkpoints, metrics.jsonl)."""
        return Path(self.cfg.out) / self.cfg.run


def open_data(cfg: TrainConfig, resume: dict | None) -> tuple[FrameStore, dict, tuple[str, ...], FrameDataset]:
    """The store at the run's snapshot (a resumed run reads the snapshot it started on), the architecture
    dict (num_classes from the store), the tasks it trains and the merged-target dataset of its splits."""
    store = FrameStore.open(cfg.store, resume["snapshot"] if resume else cfg.ref)
    arch = resume["arch"] if resume else {**cfg.arch, **({"num_classes": store.num_classes}
                                                          if cfg.arch["name"] in ("student", "resnet38") else {})}
    idx = np.concatenate([store.indices(s) for s in cfg.split.split(",")])
    if len(idx) == 0:
        raise UserError(f"{cfg.store}: no frames in split {cfg.split!r} at {cfg.ref}")
    tasks = model_tasks(arch)
    check_targets(store, cfg, idx, tasks)
    policy = resolve_policy(cfg.policy, store, idx)
    return store, arch, tasks, FrameDataset(store.path, store.snapshot_id, idx, policy)


def check_targets(store: FrameStore, cfg: TrainConfig, idx, tasks) -> None:
    """Raise UserError when the training frames carry no target for any task the model learns (no real
    annotation and no pseudo-label set): such a run would train on nothing and report loss 0. A task
    without any target is named on stderr (its head will not learn)."""
    root = store.root
    has = {"segm": bool(root["real/has_segm"][:][idx].any()), "depth": bool(root["real/has_depth"][:][idx].any())}
    if cfg.policy.pseudo is not None:
        return                                     # the pseudo set supplies targets (checked by FrameDataset)
    missing = [t for t in tasks if not has.get(t, False)]
    if len(missing) == len(tasks):
        raise UserError(f"{cfg.store}: the {len(idx)} frame(s) of split {cfg.split!r} have no "
                        f"{' or '.join(missing)} annotation: nothing to train on (ingest annotations or "
                        f"merge a pseudo-label set with --pseudo NAME)")
    for t in missing:
        console.print(f"note: split {cfg.split!r} has no {t} annotation: the {t} head will not learn")


def build_run(cfg: TrainConfig, resume: dict | None, world: World, device: torch.device) -> Run:
    """seed -> data -> model -> optimiser -> resume -> DDP. Raises UserError before anything is written."""
    torch.manual_seed(cfg.seed)
    store, arch, tasks, data = open_data(cfg, resume)
    model = build_model(arch, encoder_weights=cfg.encoder_weights, pretrained=cfg.pretrained).to(device)
    bf16 = use_bf16(cfg.amp, device)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    groups = param_groups(model, cfg.lr_encoder, cfg.lr_decoder)
    for g in groups:
        g["base_lr"] = g["lr"]
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr_decoder, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr_decoder, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loss_fn = MultiTaskLoss({t: w for t, w in cfg.task_weights if t in tasks}, pseudo_drop=cfg.pseudo_drop)
    run = Run(cfg, store, arch, tasks, data, device, model, opt, loss_fn, bf16=bf16, world=world)
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        run.step = run.saved_step = resume["step"]
        torch.set_rng_state(resume["rng"]["torch"])
    else:
        init_depth_bias(model, data)
    run.net = distributed.distribute(model, world, device, cfg.batch_norm)
    return run


def start_run(run: Run) -> None:
    """Make the run's folder, tag the snapshot it reads and write config.json (a new run only). Called
    once the first step has succeeded: a run refused or failing before that leaves nothing behind. Rank 0 only."""
    if not run.world.main:
        return
    tag_run(run.store, run.cfg.run)
    run.dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run.dir / "config.json", lambda tmp: tmp.write_text(json.dumps(
        {**run.cfg.to_dict(), "world_size": run.world.size}, indent=2)))


def train_step(run: Run, batch: dict) -> dict[str, torch.Tensor]:
    """One SGD step on a batch {"rgb": (B,3,H,W) uint8, task: target, "<task>_src": source map}; returns the
    loss dict. With strong augmentation the batch is CutMixed first (drawn from (seed, step): resumable)."""
    if run.cfg.augment.strong:
        batch = cutmix(batch, np.random.default_rng([run.cfg.seed, 11, run.step]))
    for g in run.opt.param_groups:
        g["lr"] = g["base_lr"] * lr_factor(run.step, run.total, run.cfg.milestones, run.cfg.gamma,
                                                run.cfg.warmup)
    x = normalize(batch["rgb"].to(run.device, non_blocking=True))
    if run.bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.bf16):
        out = run.net(x)
    out = {k: v.float() for k, v in out.items()}
    targets = {t: batch[t].to(run.device, non_blocking=True)
               for t in (*run.tasks, *(SOFT_KEYS if "segm" in run.tasks and "segm_topk" in batch else ()))}
    pseudo = ({t: batch[f"{t}_src"].to(run.device, non_blocking=True) == SRC_PSEUDO for t in run.tasks}
              if run.cfg.pseudo_drop else None)
    losses = run.loss_fn(out, targets, pseudo)
    check_finite(run, distributed.mean_over_ranks(losses, run.world))     # every rank stops together
    run.opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    if run.cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.opt.step()
    run.step += 1
    return losses


def use_bf16(amp: str, device: torch.device) -> bool:
    """Whether training runs in bf16 autocast with channels_last tensors: amp "on", or "auto" on CUDA and on
    CPUs with native bf16 (AVX512-BF16 / AMX, where oneDNN's bf16 kernels roughly double the student's
    training steps/s; benchmarks/bench_train.py). Losses and the optimiser stay fp32."""
    if amp == "off":
        return False
    if device.type == "cuda" or amp == "on":
        return True
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Diverged(UserError):
    """The loss became NaN or infinite: the run stops before the bad step, keeping its last checkpoint."""


def check_finite(run: Run, losses: dict[str, torch.Tensor]) -> None:
    """Raise Diverged (naming the run, the step and each task's loss) if any loss is NaN or infinite,
    before the step that would write non-finite weights."""
    values = {k: float(v.detach()) for k, v in losses.items()}
    if all(math.isfinite(v) for v in values.values()):
        return
    parts = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    kept = (f"its last checkpoint {run.dir / 'last.pt'} (step {run.saved_step}) is kept"
            if run.saved_step is not None else "no checkpoint was written")
    raise Diverged(f"run {run.cfg.run!r}: the loss is not finite at step {run.step + 1} ({parts}); training "
                   f"stopped, {kept}; lower the learning rates or set --grad-clip")


def end_of_epoch(run: Run, losses: dict, timing: dict, steps_per_epoch: int, val_idx, evaluate_fn) -> dict:
    """Epoch metrics (losses averaged over ranks, images/s of all ranks, data-wait share, lr, val metrics),
    appended to metrics.jsonl by rank 0 (which alone evaluates); every rank must call it."""
    elapsed = time.perf_counter() - timing["t0"]
    metrics = {"epoch": math.ceil(run.step / steps_per_epoch), "step": run.step,
               **{f"loss_{k}": v.item() for k, v in distributed.mean_over_ranks(losses, run.world).items()},
               "images_per_s": timing["seen"] * run.world.size / elapsed, "data_wait_frac": timing["wait"] / elapsed,
               "lr_decoder": run.opt.param_groups[1]["lr"]}
    if not run.world.main:
        return metrics
    if len(val_idx):
        run.model.eval()
        metrics["val"] = evaluate_fn(run.model, run.store, val_idx, device=run.device, tasks=run.tasks)
        train_mode(run.model, run.cfg.batch_norm)
    with open(run.dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(json_safe(metrics)) + "\n")
    return metrics


def save_checkpoint(run: Run, metrics: dict) -> None:
    """Write OUT/RUN/last.pt atomically: weights, optimiser, step, config, arch, snapshot, merge policy,
    classes, tasks, RNG state, world_size and the last epoch's metrics (a plain dict, weights_only-loadable).
    Rank 0 only."""
    run.saved_step = run.step
    if not run.world.main:
        return
    cfg = run.cfg
    ckpt = {"model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
            "optimizer": run.opt.state_dict(),
            "scheduler": {"kind": "step", "milestones": list(cfg.milestones), "gamma": cfg.gamma,
                          "total_steps": run.total},
            "step": run.step, "config": cfg.to_dict(), "arch": run.arch, "snapshot": run.store.snapshot_id,
            "store": cfg.store if is_url(cfg.store) else str(Path(cfg.store).resolve()), "merge_policy": run.data.policy.to_dict(),
            "classes": run.store.classes, "tasks": list(run.tasks), "rng": {"torch": torch.get_rng_state()},
            "world_size": run.world.size, "metrics": metrics or {}}
    atomic_write(run.dir / "last.pt", lambda tmp: torch.save(ckpt, tmp))


def train(cfg: TrainConfig, resume: bool = False, evaluate_fn=None) -> dict:
    """Run a training run, or continue a stopped one with `resume`.

    Returns {"checkpoint": path of OUT/RUN/last.pt, "step", "total_steps", "metrics" (last epoch's),
    "snapshot", "rank" (torchrun's; only rank 0 wrote the checkpoint)}. Raises UserError (nothing written) for a missing or existing run, a changed config on
    resume, an unknown device, an empty split or a batch the torchrun processes cannot split evenly."""
    from pipeline.evaluate.evaluate import evaluate_model

    evaluate_fn = evaluate_fn or evaluate_model
    ckpt_path = Path(cfg.out) / cfg.run / "last.pt"
    if resume and not ckpt_path.exists():
        raise UserError(f"{ckpt_path}: nothing to resume (no checkpoint of run {cfg.run!r})")
    if not resume and ckpt_path.exists():
        raise UserError(f"{ckpt_path}: run {cfg.run!r} already exists; pass --resume or another --run")
    old = load_checkpoint(ckpt_path) if resume else None
    if old:
        check_resumable(old, cfg, ckpt_path)
    world, device = distributed.join_world(cfg.device)
    try:
        distributed.check_world(cfg.batch_size, cfg.batch_norm, world, device)
        run = build_run(cfg, old, world, device)
        run.started = bool(old)
        if not old:
            check_run_tag(run.store, cfg.run)
        spe = max(1, len(run.data) // cfg.batch_size)
        epochs = math.ceil(cfg.steps / spe) if cfg.steps else cfg.epochs
        sampler = RunSampler(len(run.data), cfg.batch_size, epochs, cfg.seed, start_step=run.step,
                             rank=world.rank, world_size=world.size)
        run.total = cfg.steps or epochs * spe
        loader = make_loader(AugmentedItems(run.data, cfg.augment, cfg.seed), sampler, cfg.workers)
        val_idx = run.store.indices(cfg.val_split) if cfg.val_split else np.array([], int)
        metrics = run_steps(run, loader, sampler.steps_per_epoch, val_idx, evaluate_fn)
    finally:
        distributed.leave_world()
    return {"checkpoint": str(ckpt_path), "step": run.step, "total_steps": run.total, "metrics": metrics,
            "snapshot": run.store.snapshot_id, "rank": world.rank}


def run_steps(run: Run, loader, steps_per_epoch: int, val_idx, evaluate_fn) -> dict:
    """The step loop with its progress bar, epoch ends and checkpoints; returns the last epoch's metrics."""
    cfg, metrics = run.cfg, {}
    timing = {"seen": 0, "wait": 0.0, "t0": time.perf_counter()}
    train_mode(run.model, cfg.batch_norm)
    with progress_bar(f"train {cfg.run}", run.total, unit="steps") as advance:
        advance(run.step)
        t_ready = time.perf_counter()
        for batch in loader:
            timing["wait"] += time.perf_counter() - t_ready
            losses = train_step(run, batch)
            if not run.started:
                start_run(run)
                run.started = True
            timing["seen"] += len(batch["rgb"])
            advance(1, info=" ".join(f"{k} {v.item():.3f}" for k, v in losses.items()))
            epoch_end = run.step % steps_per_epoch == 0 or run.step == run.total
            if epoch_end:
                metrics = end_of_epoch(run, losses, timing, steps_per_epoch, val_idx, evaluate_fn)
                timing = {"seen": 0, "wait": 0.0, "t0": time.perf_counter()}
            if epoch_end or (cfg.ckpt_every and run.step % cfg.ckpt_every == 0):
                save_checkpoint(run, metrics)
            if run.step >= run.total or (cfg.stop_after and run.step >= cfg.stop_after):
                break
            t_ready = time.perf_counter()
    return metrics


def init_depth_bias(model, dataset, frames: int = 16) -> None:
    """Start the student's depth output at the median training depth (metres): from random weights a
    ReLU'd depth head that starts near or below 0 gets no gradient and can die before it learns."""
    heads = getattr(model, "heads", None)
    if heads is None or "depth" not in heads:
        return
    picks = np.linspace(0, len(dataset) - 1, min(frames, len(dataset))).astype(int)
    valid = [d[d > 0] for d in (dataset[int(i)]["depth"] for i in picks)]
    values = torch.cat(valid) if valid else torch.empty(0)
    if values.numel():
        with torch.no_grad():
            heads["depth"][-1].bias.fill_(float(values.median()))


def check_resumable(ckpt: dict, cfg: TrainConfig, path: Path) -> None:
    """A run resumes only with the settings it started with (stop_after, workers and device may differ);
    raises UserError naming the changed settings."""
    free = ("stop_after", "workers", "device")
    old = with_defaults(ckpt["config"], TrainConfig(store=cfg.store).to_dict())  # settings added since
    old = {k: v for k, v in old.items() if k not in free}
    new = {k: v for k, v in cfg.to_dict().items() if k not in free}
    changed = sorted(k for k in new if old.get(k) != new[k] and k != "ref")
    if changed:
        raise UserError(f"{path}: run {cfg.run!r} exists with other settings ({', '.join(changed)}); "
                        f"use another --run name or the same settings to resume")


def with_defaults(saved: dict, defaults: dict) -> dict:
    """`saved` config dict with the keys it lacks (settings added after it was written) taken from
    `defaults`, recursively through nested dicts (the merge policy, the augmentation)."""
    out = dict(saved)
    for k, v in defaults.items():
        if k not in out:
            out[k] = v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = with_defaults(out[k], v)
    return out


def check_run_tag(store: FrameStore, run: str) -> None:
    """UserError if tag train/<run> already names another snapshot (a new run under an old name)."""
    name = f"train/{run}"
    tags = store.tags()
    if name in tags and tags[name] != store.snapshot_id:
        raise UserError(f"{store.path}: tag {name} already points at {tags[name]}; choose another --run")


def tag_run(store: FrameStore, run: str) -> None:
    """Tag the snapshot a run reads as train/<run> (once; a new run under an old name is refused)."""
    check_run_tag(store, run)
    if f"train/{run}" not in store.tags():
        store.tag(f"train/{run}", store.snapshot_id)
