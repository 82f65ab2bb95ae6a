"""The one training loop, for the student and for teachers (`mtdistill train`, `mtdistill teacher train`).

Reads in order: seed -> data -> model -> optimiser -> resume -> steps (train, evaluate each epoch,
checkpoint). Data is one store snapshot (recorded in the checkpoint and tagged `train/<run>`), targets
come from the merge rule (stores/merge.py). Sample order and augmentation are functions of (seed,
epoch, position), so `--resume` after a kill reaches the same weights as an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.augment import AugmentConfig, augment, normalize
from pipeline.models import build_model, load_checkpoint, model_tasks, param_groups
from pipeline.progress import progress_bar
from stores.dataset import FrameDataset
from stores.errors import UserError
from stores.merge import MergePolicy
from stores.repo import FrameStore
from student.losses import MultiTaskLoss


@dataclass(frozen=True)
class TrainConfig:
    store: str
    run: str = "student"
    out: str = "runs"
    ref: str = "main"
    arch: dict = field(default_factory=lambda: {"name": "student"})  # num_classes filled from the store
    policy: MergePolicy = MergePolicy()
    split: str = "train"                          # one split, or several joined by commas
    val_split: str | None = "val"
    epochs: int = 10
    steps: int = 0                                # fixed step budget (overrides epochs); 0 = epochs decide
    batch_size: int = 6
    augment: AugmentConfig = AugmentConfig()
    lr_encoder: float = 1e-3
    lr_decoder: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-5
    milestones: tuple[float, ...] = (0.5, 0.75)   # fractions of the run where the lr is multiplied by gamma
    gamma: float = 0.1
    task_weights: tuple[tuple[str, float], ...] = (("segm", 0.5), ("depth", 0.5))
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    encoder_weights: str | None = None
    pretrained: bool = False
    ckpt_every: int = 0                           # steps between checkpoints; 0 = at each epoch end
    stop_after: int = 0                           # stop (as if killed) after this many steps; 0 = never

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"], d["task_weights"] = list(self.milestones), [list(t) for t in self.task_weights]
        if d["augment"]["crop"] is not None:
            d["augment"]["crop"] = list(d["augment"]["crop"])
        return d


def lr_factor(step: int, total: int, milestones, gamma: float) -> float:
    """Step decay: multiply by gamma at each milestone (a fraction of `total` steps)."""
    return gamma ** sum(step >= math.ceil(m * total) for m in milestones)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device on this machine")
    return torch.device(name)


class RunSampler(torch.utils.data.Sampler):
    """Batches of (epoch, position, item) for every remaining step of the run, from `start_step` on.
    Each epoch is a permutation drawn from (seed, epoch); incomplete last batches are dropped."""

    def __init__(self, n: int, batch: int, epochs: int, seed: int, start_step: int = 0):
        self.n, self.batch, self.epochs, self.seed, self.start = n, batch, epochs, seed, start_step
        self.steps_per_epoch = max(1, n // batch)

    def __len__(self):
        return self.epochs * self.steps_per_epoch - self.start

    def __iter__(self):
        for step in range(self.start, self.epochs * self.steps_per_epoch):
            epoch, k = divmod(step, self.steps_per_epoch)
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            if self.n < self.batch:                      # tiny sets: repeat to fill one batch
                perm = np.resize(perm, self.batch)
            yield [(epoch, k * self.batch + j, int(perm[k * self.batch + j])) for j in range(self.batch)]


class AugmentedItems(torch.utils.data.Dataset):
    def __init__(self, base: FrameDataset, cfg: AugmentConfig, seed: int):
        self.base, self.cfg, self.seed = base, cfg, seed

    def __len__(self):
        return len(self.base)

    def __getitem__(self, key):
        epoch, pos, i = key
        return augment(self.base[i], self.cfg, np.random.default_rng([self.seed, 7, epoch, pos]))


def make_loader(dataset, sampler, workers: int):
    kw = {"num_workers": workers}
    if workers:  # zarr and icechunk hold threads: never fork (STORAGE.md)
        kw.update(multiprocessing_context="forkserver", persistent_workers=True, prefetch_factor=4)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, pin_memory=torch.cuda.is_available(), **kw)


def targets_of(batch: dict, tasks, device) -> dict:
    return {t: batch[t].to(device, non_blocking=True) for t in tasks}


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, resume: bool = False, evaluate_fn=None) -> dict:
    """Run a training run, or continue a stopped one with `resume`; returns {"checkpoint", "step", ...}."""
    from pipeline.evaluate import evaluate_model

    evaluate_fn = evaluate_fn or evaluate_model
    run_dir = Path(cfg.out) / cfg.run
    ckpt_path = run_dir / "last.pt"
    if resume and not ckpt_path.exists():
        raise UserError(f"{ckpt_path}: nothing to resume (no checkpoint of run {cfg.run!r})")
    if not resume and ckpt_path.exists():
        raise UserError(f"{ckpt_path}: run {cfg.run!r} already exists; pass --resume or another --run")
    resume = load_checkpoint(ckpt_path) if resume else None

    # seed -> data
    torch.manual_seed(cfg.seed)
    store = FrameStore.open(cfg.store, resume["snapshot"] if resume else cfg.ref)
    arch = resume["arch"] if resume else {**cfg.arch, **({"num_classes": store.num_classes}
                                                          if cfg.arch["name"] in ("student", "resnet38") else {})}
    tasks = model_tasks(arch)
    train_idx = np.concatenate([store.indices(s) for s in cfg.split.split(",")])
    if len(train_idx) == 0:
        raise UserError(f"{cfg.store}: no frames in split {cfg.split!r} at {cfg.ref}")
    base = FrameDataset(store.path, store.snapshot_id, train_idx, cfg.policy)
    if resume:
        check_resumable(resume, cfg, ckpt_path)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        tag_run(store, cfg.run)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    device = resolve_device(cfg.device)

    # model -> optimiser
    model = build_model(arch, encoder_weights=cfg.encoder_weights, pretrained=cfg.pretrained).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    groups = param_groups(model, cfg.lr_encoder, cfg.lr_decoder)
    for g in groups:
        g["base_lr"] = g["lr"]
    opt = torch.optim.SGD(groups, lr=cfg.lr_decoder, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loss_fn = MultiTaskLoss({t: w for t, w in cfg.task_weights if t in tasks})

    if not resume:
        init_depth_bias(model, base)

    # resume
    step = 0
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        step = resume["step"]
        torch.set_rng_state(resume["rng"]["torch"])
    spe = max(1, len(base) // cfg.batch_size)
    epochs = math.ceil(cfg.steps / spe) if cfg.steps else cfg.epochs
    sampler = RunSampler(len(base), cfg.batch_size, epochs, cfg.seed, start_step=step)
    total = cfg.steps or epochs * spe
    loader = make_loader(AugmentedItems(base, cfg.augment, cfg.seed), sampler, cfg.workers)
    val_idx = store.indices(cfg.val_split) if cfg.val_split else np.array([], int)
    log_path = run_dir / "metrics.jsonl"

    def checkpoint(metrics=None):
        save_atomic({
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "scheduler": {"kind": "step", "milestones": list(cfg.milestones),
                                                         "gamma": cfg.gamma, "total_steps": total},
            "step": step, "config": cfg.to_dict(), "arch": arch, "snapshot": store.snapshot_id,
            "store": str(Path(cfg.store).resolve()), "merge_policy": cfg.policy.to_dict(),
            "classes": store.classes, "tasks": list(tasks), "rng": {"torch": torch.get_rng_state()},
            "metrics": metrics or {}}, ckpt_path)

    # steps
    metrics, seen, data_wait, t_epoch = {}, 0, 0.0, time.perf_counter()
    model.train()
    with progress_bar(f"train {cfg.run}", total, unit="steps") as advance:
        advance(step)
        t_ready = time.perf_counter()
        for batch in loader:
            data_wait += time.perf_counter() - t_ready
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_factor(step, total, cfg.milestones, cfg.gamma)
            x = normalize(batch["rgb"].to(device, non_blocking=True))
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model(x)
            out = {k: v.float() for k, v in out.items()}
            losses = loss_fn(out, targets_of(batch, tasks, device))
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            step += 1
            seen += len(x)
            advance(1, info=" ".join(f"{k} {v.item():.3f}" for k, v in losses.items()))
            epoch_end = step % sampler.steps_per_epoch == 0 or step == total
            if epoch_end:
                elapsed = time.perf_counter() - t_epoch
                metrics = {"epoch": math.ceil(step / sampler.steps_per_epoch), "step": step,
                           **{f"loss_{k}": v.item() for k, v in losses.items()},
                           "images_per_s": seen / elapsed, "data_wait_frac": data_wait / elapsed,
                           "lr_decoder": opt.param_groups[1]["lr"]}
                if len(val_idx):
                    model.eval()
                    metrics["val"] = evaluate_fn(model, store, val_idx, device=device, tasks=tasks)
                    model.train()
                with open(log_path, "a") as f:
                    f.write(json.dumps(json_safe(metrics)) + "\n")
                seen, data_wait, t_epoch = 0, 0.0, time.perf_counter()
            if epoch_end or (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == total:
                checkpoint(metrics)
            if step >= total or (cfg.stop_after and step >= cfg.stop_after):
                break
            t_ready = time.perf_counter()
    return {"checkpoint": str(ckpt_path), "step": step, "total_steps": total, "metrics": metrics,
            "snapshot": store.snapshot_id}


def init_depth_bias(model, dataset, frames: int = 16) -> None:
    """Start the student's depth output at the median training depth: from random weights a ReLU'd
    depth head that starts near or below 0 gets no gradient and can die before it learns."""
    heads = getattr(model, "heads", None)
    if heads is None or "depth" not in heads:
        return
    picks = np.linspace(0, len(dataset) - 1, min(frames, len(dataset))).astype(int)
    valid = [d[d > 0] for d in (dataset[int(i)]["depth"] for i in picks)]
    values = torch.cat(valid) if valid else torch.empty(0)
    if values.numel():
        with torch.no_grad():
            heads["depth"][-1].bias.fill_(float(values.median()))


def json_safe(obj):
    """NaN (e.g. IoU of a class absent from the split) -> null, so the log stays valid JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def check_resumable(ckpt: dict, cfg: TrainConfig, path: Path) -> None:
    """A run resumes only with the settings it started with (stop_after and workers may differ)."""
    old = {k: v for k, v in ckpt["config"].items() if k not in ("stop_after", "workers", "device")}
    new = {k: v for k, v in cfg.to_dict().items() if k not in ("stop_after", "workers", "device")}
    changed = sorted(k for k in new if old.get(k) != new[k] and k != "ref")
    if changed:
        raise UserError(f"{path}: run {cfg.run!r} exists with other settings ({', '.join(changed)}); "
                        f"use another --run name or the same settings to resume")


def tag_run(store: FrameStore, run: str) -> None:
    """Tag the snapshot a run reads as train/<run> (once; a new run under an old name is refused)."""
    name = f"train/{run}"
    tags = store.tags()
    if name in tags and tags[name] != store.snapshot_id:
        raise UserError(f"{store.path}: tag {name} already points at {tags[name]}; choose another --run")
    if name not in tags:
        store.tag(name, store.snapshot_id)
