"""Student speed: latency and throughput of several execution paths, their agreement with eager fp32, GMACs.

Flow: checkpoint (or random weights) -> student -> **bench_student** -> dict (`mtdistill bench`,
benchmarks/bench_student.py). Paths are timed in interleaved rounds (one call of each per round), so
load from other processes hits all of them alike.
- CPU: "eager" (fp32, NCHW), "channels_last", "onnxruntime" (fp32 ONNX Runtime on the exported,
  rewritten graph, see pipeline/deploy/export.py) and "onnxruntime-int8" (static int8, pipeline/deploy/quantize.py).
- CUDA: "eager", "channels_last", "fp16" and "bf16" (autocast, channels_last), "cuda-graph-fp16".
Agreement with eager fp32 on the same input: segmentation argmax agreement (fraction of pixels at the
output's 1/4 resolution), depth max / mean absolute difference (metres).
"""
from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.deploy.export import export_onnx, ort_session, run_onnx
from pipeline.deploy.quantize import quantize_onnx, random_calibration
from pipeline.checkpoint import read_student
from pipeline.runtime import resolve_device
from stores.errors import UserError
from student.model import build_student, count_parameters


def count_macs(model: nn.Module, size: tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass on a (1, in_channels, H, W) input, (H, W) = size: torch's
    FlopCounterMode (convolutions and matrix products; 1 MAC = 2 FLOPs), run on the meta device (no memory,
    no time)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model).to("meta").eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, in_channels, *size, device="meta"))
    return counter.get_total_flops() // 2


def load_student(checkpoint: str | Path) -> nn.Module:
    """The student of a checkpoint, in eval mode (see read_student)."""
    return read_student(checkpoint)[0]


def _cpu_paths(model: nn.Module, x: torch.Tensor, tmp: Path, threads: int) -> dict[str, Callable]:
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fp32 = export_onnx(model, tmp / "student.onnx")
    int8 = quantize_onnx(fp32, tmp / "student.int8.onnx", random_calibration(4, tuple(x.shape[-2:]), seed=1))
    x_np = x.numpy()
    sessions = {"onnxruntime": ort_session(fp32, threads), "onnxruntime-int8": ort_session(int8, threads)}
    paths = {"eager": lambda: model(x), "channels_last": lambda: cl_model(x_cl)}
    for name, sess in sessions.items():
        paths[name] = (lambda s: lambda: run_onnx(s, x_np))(sess)
    return paths


def _cuda_paths(model: nn.Module, x: torch.Tensor) -> dict[str, Callable]:
    model, x = model.to("cuda"), x.to("cuda")
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def autocast(dtype):
        def run():
            with torch.autocast("cuda", dtype=dtype):
                return cl_model(x_cl)
        return run

    static_x = x_cl.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.autocast("cuda", dtype=torch.float16):
        for _ in range(3):  # warm up kernels / cuDNN choices outside the capture
            cl_model(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
        static_out = cl_model(static_x)

    def replay():
        graph.replay()
        return static_out

    return {"eager": lambda: model(x), "channels_last": lambda: cl_model(x_cl),
            "fp16": autocast(torch.float16), "bf16": autocast(torch.bfloat16), "cuda-graph-fp16": replay}


def _numpy_outputs(out: dict) -> dict[str, np.ndarray]:
    return {k: (v.float().cpu().numpy() if hasattr(v, "cpu") else np.asarray(v, dtype=np.float32))
            for k, v in out.items()}


def _agreement(out: dict, ref: dict) -> dict:
    diff = np.abs(out["depth"] - ref["depth"])
    return {"segm_agreement": float((out["segm"].argmax(1) == ref["segm"].argmax(1)).mean()),
            "depth_max_diff": float(diff.max()), "depth_mean_diff": float(diff.mean())}


def time_calls(calls: dict[str, Callable], iters: int, warmup: int = 2,
               sync: Callable = lambda: None) -> dict[str, list[float]]:
    """Wall-clock milliseconds of each call, `iters` interleaved rounds (every call once per round, so
    machine noise hits all alike) after `warmup` untimed rounds; `sync` (e.g. torch.cuda.synchronize) runs
    before each clock read so asynchronous devices are timed to completion."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    sync()
    times = {name: [] for name in calls}
    for _ in range(iters):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - start) * 1000)
    return times


def bench_student(num_classes: int = 40, size: tuple[int, int] = (480, 640), batch: int = 1,
                  device: str = "cpu", threads: int = 2, checkpoint: str | Path | None = None,
                  iters: int = 10, warmup: int = 2, seed: int = 0) -> dict:
    """Time the student's execution paths at (H, W) = size; random weights unless `checkpoint`.

    Returns {"device", "size", "batch", "threads", "num_classes", "params", "gmac", "paths":
    {name: {"median_ms", "p90_ms", "mean_ms", "std_ms", "images_per_s", "segm_agreement",
    "depth_max_diff", "depth_mean_diff"}}, "fastest", "fastest_vs_channels_last"}.
    """
    if min(size) < 64:
        raise UserError(f"size {size[1]}x{size[0]}: width and height must be at least 64")
    device = resolve_device(device).type
    torch.manual_seed(seed)
    model = load_student(checkpoint) if checkpoint is not None else build_student(num_classes).eval()
    num_classes = model.num_classes
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    result = {"device": device, "size": list(size), "batch": batch, "threads": threads,
              "num_classes": num_classes, "params": count_parameters(model),
              "gmac": count_macs(model, size) / 1e9}
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    try:
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
            paths = _cpu_paths(model, x, Path(tmp), threads) if device == "cpu" else _cuda_paths(model, x)
            outputs = {name: _numpy_outputs(fn()) for name, fn in paths.items()}
            time_calls(paths, iters=0, warmup=warmup, sync=sync)
            times = time_calls(paths, iters=iters, warmup=0, sync=sync)
    finally:
        torch.set_num_threads(old_threads)
    result["paths"] = {}
    for name, ts in times.items():
        ts = np.asarray(ts)
        median = float(np.median(ts))
        result["paths"][name] = {"median_ms": median, "p90_ms": float(np.percentile(ts, 90)),
                                 "mean_ms": float(ts.mean()), "std_ms": float(ts.std()),
                                 "images_per_s": batch * 1000.0 / median,
                                 **_agreement(outputs[name], outputs["eager"])}
    fastest = min(result["paths"], key=lambda n: result["paths"][n]["median_ms"])
    result["fastest"] = fastest
    result["fastest_vs_channels_last"] = (result["paths"][fastest]["median_ms"]
                                          / result["paths"]["channels_last"]["median_ms"])
    return result


def format_table(result: dict) -> str:
    """Human-readable table of a bench_student result."""
    h, w = result["size"]
    lines = [f"student: {result['num_classes']} classes, {result['params']:,} params, "
             f"{result['gmac']:.2f} GMAC at {w}x{h}; batch {result['batch']}, {result['device']}, "
             f"{result['threads']} threads",
             f"{'path':<18}{'median ms':>10}{'p90 ms':>9}{'img/s':>8}{'segm agree':>12}{'depth max':>11}"
             f"{'depth mean':>12}"]
    for name, r in result["paths"].items():
        lines.append(f"{name:<18}{r['median_ms']:>10.1f}{r['p90_ms']:>9.1f}{r['images_per_s']:>8.1f}"
                     f"{r['segm_agreement']:>12.4f}{r['depth_max_diff']:>11.4f}{r['depth_mean_diff']:>12.4f}")
    lines.append(f"fastest: {result['fastest']} = {result['fastest_vs_channels_last']:.2f} x channels_last")
    return "\n".join(lines)
