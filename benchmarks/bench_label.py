"""Benchmark: the labeling job (`mtdistill label`) end to end against the teacher's forward pass alone.

Where it sits: measures pipeline/label/job.py (read frames -> teacher -> write whole shards -> merge forks ->
commit) on a synthetic store. Prints
1. end-to-end labeling frames/s (cluster start excluded) vs the same teacher's forward-only frames/s
   (Teacher.predict on frames already in memory, same batch size, in a fresh process; interleaved rounds in
   the same run) and their ratio, headlined by the median of each round's own ratio (`compare`): at 1 torch
   thread (1 worker; target >= 0.9), and at all cores, where the
   forward alone uses every core and `label` runs its default plan (cluster.plan_local: on up to 4 cores one
   1-thread worker per core; target >= 0.95) and, for comparison, 1 worker whose teacher uses every core;
2. scaling from 1 worker x 1 thread to the default plan;
3. peak RSS of the coordinating (client) process at two dataset sizes, each in a fresh process with a
   tiny teacher (flat memory: it should not grow with the number of frames).
With --device cuda it prints the forward alone on the GPU against `label --device cuda` instead of 1-3.
Usage: python benchmarks/bench_label.py [--frames 256 --size 128x128 --width 0.25 --batch 8 --rounds 3 --rss 1000,10000]
                                        [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.label.cluster import plan_local
from pipeline.label.job import LabelConfig, cpu_count, run_label
from pipeline.runtime import ALLOCATOR_ENV, environ
from stores.classes import NYUD40
from stores.repo import FrameStore
from stores.sources.base import Frame
from teachers.base import load_teacher, save_teacher
from teachers.resnet38 import ResNet38, ResNet38Config


def make_store(path: Path, frames: int, size, synthetic: bool) -> FrameStore:
    """Synthetic-world frames (benchmarks 1-2) or random pixels (RSS runs: content does not matter)."""
    h, w = size
    store = FrameStore.create(path, name="bench", classes=NYUD40, frame_size=(h, w), shard_frames=32)
    if synthetic:
        from stores.sources.synthetic import SyntheticConfig, iter_frames
        source = iter_frames(SyntheticConfig(frames=frames, size=(h, w)), workers=2)
    else:
        rng = np.random.default_rng(0)
        source = (Frame(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), split="train", name=f"r{i}")
                  for i in range(frames))
    with store.append("bench frames", {"kind": "ingest"}) as writer:
        for f in source:
            writer.add(f)
    return store.reopen()


def make_teacher(path: Path, width: float) -> str:
    torch.manual_seed(0)
    cfg = ResNet38Config(num_classes=40, width=width, units=1, dropout=False)
    save_teacher(path, ResNet38(cfg), cfg, "segm", classes=NYUD40)
    return str(path)


def forward_only(store, teacher_path: str, batch: int, threads: int, task: str = "segm", device: str = "cpu") -> float:
    """Frames/s of the `task` teacher `teacher_path` (a file or any teacher spec, e.g. hf:DIR) alone on `device`,
    shard by shard, in a fresh process started as each labeling worker is (no threads or heap left over from
    earlier runs of this benchmark; the workers' allocator settings, runtime.ALLOCATOR_ENV), so the ratio
    measures what the job adds. predict returns numpy arrays: each shard's time includes the copy back from a GPU."""
    return in_fresh_process(ALLOCATOR_ENV, _forward_only, str(store.path), teacher_path, batch, threads, task, device)


def in_fresh_process(env: dict, fn, *args):
    """fn(*args) in a fresh (spawned) process started with `env`'s variables set (value None: unset)."""
    with environ(env), mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _forward_only(store_path: str, teacher_path: str, batch: int, threads: int, task: str, device: str) -> float:
    torch.set_num_threads(threads)
    store = FrameStore.open(store_path)
    teacher = load_teacher(teacher_path, task, batch_size=batch, device=device,
                           store_classes=store.classes if task == "segm" else None)
    rgb = store.root["frames/rgb"][:]
    teacher.predict(rgb[:batch])                                   # warm-up
    t = time.perf_counter()
    for start in range(0, len(rgb), store.shard_frames):           # shard by shard, like the job
        teacher.predict(rgb[start:start + store.shard_frames])
    return len(rgb) / (time.perf_counter() - t)


def label(store, teacher_path, name, batch, workers=1, task: str = "segm", **kw):
    """`mtdistill label --frames all` of `store` with one `task` teacher; the LabelResult."""
    cfg = LabelConfig(store=str(store.path), name=name, teachers=((task, teacher_path),), frames="all",
                      workers=workers, batch_size=batch, **kw)
    return run_label(cfg)


def gpu_rounds(store, spec: str, batch: int, rounds: int, task: str = "segm") -> str:
    """On CUDA: the teacher's forward alone vs `label --device cuda` (its default plan: one worker per GPU) over
    interleaved rounds; `compare`'s lines (target >= 0.9)."""
    fwd, runs = [], []
    for k in range(rounds):
        fwd.append(forward_only(store, spec, batch, cpu_count(), task, device="cuda"))
        runs.append(label(store, spec, f"cuda-{task}-{k}", batch, workers=0, task=task, device="cuda"))
        print(f"  round {k}: forward {fwd[-1]:.1f} frames/s, label {runs[-1].frames_per_s:.1f} frames/s", flush=True)
    return compare(f"{torch.cuda.get_device_name()}, {task}", fwd, runs, store, 0.9)


def compare(what: str, fwd: list[float], runs: list, store, target: float | None) -> str:
    """Two lines: `what`'s forward-only vs `label` frames/s over interleaved rounds. Headline: the median of each
    round's own ratio (label / the forward run just before it), which a drift of the machine's speed between
    rounds moves far less than the best of each side (that pairs runs minutes apart); then best of each side,
    every round's figures and where the best label run's time went. `target` None: no target (a comparison)."""
    paired = sorted(x.frames_per_s / v for v, x in zip(fwd, runs))
    med, labeled = statistics.median(paired), [x.frames_per_s for x in runs]
    r = max(runs, key=lambda x: x.frames_per_s)
    return (f"{what}: forward only {statistics.median(fwd):6.1f} frames/s, label {statistics.median(labeled):6.1f} "
            f"frames/s (medians) -> ratio within a round: median {med:.2f} ({paired[0]:.2f}..{paired[-1]:.2f})"
            + (f", target >= {target}: {'met' if med >= target else 'NOT met'}" if target else "") + "\n"
            f"    best of each side: forward {max(fwd):.1f}, label {r.frames_per_s:.1f} -> "
            f"{r.frames_per_s / max(fwd):.2f}; rounds: forward {', '.join(f'{v:.1f}' for v in fwd)}; label "
            f"{', '.join(f'{v:.1f}' for v in labeled)}; {stage_shares(store, r.name)}; cluster start "
            f"{r.startup_s:.1f} s (not counted)")


def default_plan(cores: int) -> str:
    """'W workers x T thread(s)': what `label` starts on this CPU without --workers / --torch-threads."""
    workers = plan_local("cpu", 0, 2, 0, cores=cores).workers
    return f"{workers} workers x {max(1, cores // workers)} thread(s)"


def stage_shares(store, name: str) -> str:
    """Where the job's time went, from its commits' metadata: how busy the teacher was, and the tasks'
    read / wait-for-teacher / infer / write seconds."""
    sums = {"read": 0.0, "wait": 0.0, "infer": 0.0, "write": 0.0}
    wall = 0.0
    for e in store.reopen().log():
        md = e["metadata"]
        if md.get("name") == name and "task_seconds" in md:
            wall += md["seconds"]
            for k in sums:
                sums[k] += md["task_seconds"][k]
    return (f"teacher busy {100 * sums['infer'] / wall:.0f}% of the wall time; task seconds "
            + ", ".join(f"{k} {v:.2f}" for k, v in sums.items()) + f"; wall {wall:.2f}")


def child_rss(store_path: str, teacher_path: str) -> None:
    """Runs in a fresh process: label everything, report this process's peak RSS."""
    store = FrameStore.open(store_path)
    r = label(store, teacher_path, "rss", batch=32)
    print(json.dumps({"frames": store.num_frames, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "frames_per_s": r.frames_per_s, "commits": r.commits, "missing": len(r.missing)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--size", default="128x128", help="WIDTHxHEIGHT")
    ap.add_argument("--width", type=float, default=0.25, help="ResNet-38 width of the benchmark teacher")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (ratio: median of the rounds' own)")
    ap.add_argument("--rss", default="1000,10000", help="dataset sizes of the RSS runs ('' = skip)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: the forward alone and `label --device cuda` on the GPU (no thread counts, no RSS runs)")
    ap.add_argument("--child-rss", nargs=2, metavar=("STORE", "TEACHER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_rss:
        return child_rss(*args.child_rss)
    w, h = (int(v) for v in args.size.split("x"))
    threads = cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="bench_label_"))
    try:
        print(f"labeling benchmark: {platform.processor() or platform.machine()}, {threads} cpus, torch "
              f"{torch.__version__} ({torch.get_num_threads()} threads), device {args.device}")
        store = make_store(tmp / "syn.ice", args.frames, (h, w), synthetic=True)
        teacher = make_teacher(tmp / "segm.pt", args.width)
        print(f"store: {store.num_frames} synthetic frames {w}x{h}, shards of {store.shard_frames}; teacher ResNet-38 "
              f"width {args.width} units 1 (40 classes); batch {args.batch}; {args.rounds} interleaved rounds")
        if args.device == "cuda":
            print(gpu_rounds(store, teacher, args.batch, args.rounds))
            return
        thread_counts = sorted({1, threads})
        fwd = {t: [] for t in thread_counts}
        e2e = {t: [] for t in thread_counts}
        plan = []
        for k in range(args.rounds):                       # interleaved, so load from elsewhere hits all alike
            for t in thread_counts:
                fwd[t].append(forward_only(store, teacher, args.batch, t))
                e2e[t].append(label(store, teacher, f"w1-t{t}-{k}", args.batch, torch_threads=t))
            plan.append(label(store, teacher, f"default-{k}", args.batch, workers=0))
        for t in thread_counts:
            print(compare(f"{t} torch thread(s), label 1 worker", fwd[t], e2e[t], store, 0.9 if t == 1 else None))
        print(compare(f"all cores: forward at {threads} threads, label default plan ({default_plan(threads)})",
                      fwd[threads], plan, store, 0.95))
        best1, b = (max(runs, key=lambda r: r.frames_per_s) for runs in (e2e[1], plan))
        print(f"scaling: default plan = x{b.frames_per_s / best1.frames_per_s:.2f} of 1 worker x 1 thread (best runs)")
        sizes = [int(v) for v in args.rss.split(",") if v]
        if sizes:
            small = make_teacher(tmp / "tiny.pt", 1 / 16)
            print("client peak RSS (fresh process each, random 64x64 frames, tiny teacher, batch 32):")
            for n in sizes:
                path = tmp / f"rss{n}.ice"
                make_store(path, n, (64, 64), synthetic=False)
                out = subprocess.run([sys.executable, __file__, "--child-rss", str(path), small], check=True,
                                     capture_output=True, text=True).stdout.strip().splitlines()[-1]
                res = json.loads(out)
                print(f"  {n:>6} frames: peak RSS {res['peak_rss_mb']:7.1f} MB, {res['frames_per_s']:7.1f} frames/s, "
                      f"{res['commits']} commits")
                shutil.rmtree(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
