"""Print the student's training throughput and the data loader's share of step time, on the synthetic world.

Usage: python benchmarks/bench_train.py [--threads 2] [--device cpu] [--quick] [--keep DIR]
Settings: 320x240 crops at batch 6 and 640x480 crops at batch 4 (the paper's batch 4-6) from 640x480
synthetic indoor frames (40 classes), default augmentation (scale 0.8-2.0, crop, flip). For each:
  read      FrameDataset items/s (store read + merge rule), one process
  loader    DataLoader items/s with augmentation (workers 0 and 2), excluding worker start-up
  compute   training steps alone (forward, losses, backward, SGD) on one batch held in memory, fp32 and
            channels_last + bf16 autocast (the loop's --amp; ratio in the same run); also at the demo's shape
  loop      the real training loop (pipeline/train/loop.py), 2 epochs of one step, workers 0 and 2: the
            images_per_s and data_wait_frac it writes to metrics.jsonl per epoch (epoch 1 includes
            worker start-up; in epoch 2 the workers have prefetched)
A run takes about 3 minutes on 2 free CPU cores (more on a loaded machine).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from pipeline.train.augment import AugmentConfig
from student.model import normalize
from pipeline.cli import cli
from pipeline.checkpoint import param_groups
from pipeline.train.config import TrainConfig
from pipeline.train.data import AugmentedItems, RunSampler, make_loader
from pipeline.train.loop import train
from pipeline.runtime import resolve_device
from stores.dataset import FrameDataset
from stores.repo import FrameStore
from student.losses import MultiTaskLoss
from student.model import build_student

# (name, crop (H, W), batch, steps per epoch, compute steps timed)
SETTINGS = (("320x240 b6", (240, 320), 6, 1, 2), ("640x480 b4", (480, 640), 4, 1, 2))
QUICK = (("320x240 b6", (240, 320), 6, 1, 1),)


def make_store(path: Path, frames: int) -> FrameStore:
    cli.main(["ingest", "synthetic", str(path), "--frames", str(frames), "--size", "640x480", "--splits",
              "1,0,0,0", "--segm-fraction", "1", "--workers", "2"], standalone_mode=False)
    return FrameStore.open(path)


def read_rate(store: FrameStore) -> float:
    ds = FrameDataset(store.path, store.snapshot_id, store.indices("train"))
    ds[0]  # open the store
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return len(ds) / (time.perf_counter() - start)


def loader_rate(store: FrameStore, crop, batch: int, workers: int, batches: int) -> float:
    base = FrameDataset(store.path, store.snapshot_id, store.indices("train"))
    sampler = RunSampler(len(base), batch, epochs=batches + 1, seed=0)
    loader = make_loader(AugmentedItems(base, AugmentConfig(crop=crop), seed=0), sampler, workers)
    it = iter(loader)
    next(it)  # worker start-up and the first batch are not timed
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.perf_counter() - start)
    del it, loader
    return rate


def compute_rate(crop, batch: int, steps: int, device: torch.device, bf16: bool = False,
                 classes: int = 40) -> tuple[float, float]:
    """(images/s, CPU seconds per image of this process: less sensitive to other jobs on the machine); `bf16`:
    channels_last tensors and bf16 autocast, as the training loop runs them with --amp on."""
    torch.manual_seed(0)
    model = build_student(classes).to(device).train()
    fmt = torch.channels_last if bf16 else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(param_groups(model, 1e-3, 1e-2), lr=1e-2, momentum=0.9, weight_decay=1e-5)
    loss_fn = MultiTaskLoss({"segm": 0.5, "depth": 0.5})
    x = normalize(torch.randint(0, 256, (batch, 3, *crop), dtype=torch.uint8)).to(device).contiguous(memory_format=fmt)
    targets = {"segm": torch.randint(0, classes, (batch, *crop)).to(device),
               "depth": torch.rand(batch, *crop).mul(8).to(device)}

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = loss_fn({k: v.float() for k, v in out.items()}, targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return steps * batch / wall, cpu / (steps * batch)


def loop_epochs(store: FrameStore, out: Path, run: str, crop, batch: int, workers: int, device: str) -> list:
    cfg = TrainConfig(store=str(store.path), run=run, out=str(out), val_split=None, epochs=2, batch_size=batch,
                      augment=AugmentConfig(crop=crop), workers=workers, device=device)
    train(cfg)
    return [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (main process)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="320x240 only, one compute step (a smoke run)")
    parser.add_argument("--keep", type=Path, default=None, help="keep stores and runs here (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {args.threads} threads, device {device}")
    fp32, _ = compute_rate((80, 256), 8, 6, device, classes=6)          # the demo's student step
    bf16, _ = compute_rate((80, 256), 8, 6, device, bf16=True, classes=6)
    print(f"== demo step (256x80, batch 8, 6 classes): fp32 {fp32 / 8:.2f} steps/s, channels_last + bf16 "
          f"{bf16 / 8:.2f} steps/s ({bf16 / fp32:.2f}x)")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for name, crop, batch, steps_per_epoch, steps in (QUICK if args.quick else SETTINGS):
            tag = name.replace(" ", "_")
            t0 = time.perf_counter()
            store = make_store(root / f"{tag}.ice", batch * steps_per_epoch)
            print(f"== {name}: {store.num_frames} train frames 640x480, crop {crop[1]}x{crop[0]}, batch {batch}")
            print(f"  read      {read_rate(store):7.1f} items/s   (FrameDataset: store read + merge)")
            for w in (0, 2):
                rate = loader_rate(store, crop, batch, w, batches=4)
                print(f"  loader    {rate:7.1f} items/s   (workers {w}: read + augment + collate)")
            comp, cpu = compute_rate(crop, batch, steps, device)
            print(f"  compute   {comp:7.2f} images/s  ({batch * 1000 / comp:.0f} ms/step: forward, loss, backward, "
                  f"SGD; {cpu:.2f} CPU-s/image)")
            fast, _ = compute_rate(crop, batch, steps, device, bf16=True)
            print(f"  bf16      {fast:7.2f} images/s  (channels_last + bf16 autocast: {fast / comp:.2f}x fp32)")
            for w in (0, 2):
                for m in loop_epochs(store, root / "runs", f"{tag}_w{w}", crop, batch, w, args.device):
                    print(f"  loop      {m['images_per_s']:7.2f} images/s  (workers {w}, epoch {m['epoch']}: "
                          f"data wait {100 * m['data_wait_frac']:.1f} % of the epoch)")
            print(f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
