"""The demo's evaluation table, pictures and report.md (pipeline/demo/run.py runs the stages before it)."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import click
import numpy as np
import torch

from pipeline.deploy.bench import count_macs, time_calls
from pipeline.evaluate.evaluate import evaluate_model, predict
from pipeline.checkpoint import model_from_checkpoint
from pipeline.runtime import json_safe, resolve_device
from pipeline.demo.config import PSEUDO, REGIMES
from pipeline.review import write_review
from stores.repo import FrameStore

TEACHERS = {"student": "an MT-LW-RefineNet (the student's architecture) trained on more labeled data for "
                        "longer, labeling both tasks (the paper's KITTI depth teacher was such a copy)",
            "resnet38": "ResNet-38 segmenter and ResNet-38 depth expert"}
PAPER_TABLE = """| NYUDv2 (paper, Table I) | mIoU % | RMSE m | RMSE log | params | GFLOPs | ms (GTX 1080Ti) |
|---|---|---|---|---|---|---|
| RefineNet-LW-50 (segm only) | 41.7 | - | - | - | - | 19.6 |
| Kendall & Gal | 37.3 | 0.506 | - | - | - | 150 |
| Eigen & Fergus | 34.1 | 0.641 | - | - | - | - |
| Laina et al. (depth only) | - | 0.573 | - | - | - | 55 |
| **MT-LW-RefineNet (ours in the paper)** | **42.02** | **0.565** | **0.205** | 3.07 M | 6.49 | 12.8 |"""


@torch.inference_mode()
def latency_ms(model, size, device, runs: int = 10) -> float:
    """Median batch-1 forward latency (ms) at `size` (H, W) on `device` (eager fp32), timed by
    pipeline.deploy.bench.time_calls."""
    model = model.to(device).eval()
    x = torch.randn(1, 3, *size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return float(np.median(time_calls({"eager": lambda: model(x)}, iters=runs, warmup=2, sync=sync)["eager"]))


def evaluate_all(cfg, stores: dict, teachers: dict, students: dict) -> dict:
    """Evaluate the teachers and the three students on the target store's test split.

    Returns {row name: JSON-safe metrics (mIoU, RMSE, ...) + checkpoint, params, gmac (G multiply-adds at the
    demo frame size), latency_ms (batch 1), tasks, steps}; student-architecture rows also get gmac_640x480.
    """

    store = FrameStore.open(stores["target.ice"])
    test = store.indices("test")
    device = resolve_device(cfg.device)
    size = cfg.frame_size()
    if len({v["checkpoint"] for v in teachers.values()}) == 1:   # one multi-task teacher
        rows = {"teacher (both tasks)": next(iter(teachers.values()))["checkpoint"]}
    else:
        rows = {f"teacher {t}": v["checkpoint"] for t, v in teachers.items()}
    rows.update({REGIMES[k][0]: v for k, v in students.items()})
    results = {}
    for name, ckpt_path in rows.items():
        model, ckpt = model_from_checkpoint(ckpt_path)
        model = model.to(device)
        res = evaluate_model(model, store, test, device=device, tasks=ckpt["tasks"])
        res.update(checkpoint=ckpt_path, params=sum(p.numel() for p in model.parameters()),
                   gmac=count_macs(model, size) / 1e9, latency_ms=latency_ms(model, size, device),
                   tasks=ckpt["tasks"], steps=ckpt["step"])
        if ckpt["arch"]["name"] == "student":
            res["gmac_640x480"] = count_macs(model, (480, 640)) / 1e9
        results[name] = json_safe(res)
    return results


def table(results: dict) -> str:
    """Markdown table of `evaluate_all` results: mIoU and pixel accuracy in %, RMSE / RMSE log in metres,
    abs rel, delta1, params (M), GMAC, latency (ms); "-" where a model lacks the task.
    """
    head = "| model | mIoU % | pixel acc % | RMSE m | RMSE log | abs rel | delta1 | params | GMAC | latency ms |"
    lines = [head, "|" + "---|" * 10]
    for name, r in results.items():
        s, d = r.get("segm"), r.get("depth")
        def f(v, scale=1.0, nd=3):
            return "-" if v is None else f"{v * scale:.{nd}f}"
        lines.append(
            f"| {name} | {f(s and s['miou'], 100, 1)} | {f(s and s['pixel_acc'], 100, 1)} | "
            f"{f(d and d['rmse'])} | {f(d and d['rmse_log'])} | {f(d and d['abs_rel'])} | "
            f"{f(d and d['delta1'])} | {r['params'] / 1e6:.2f} M | {r['gmac']:.2f} | {r['latency_ms']:.1f} |")
    return "\n".join(lines)


def qualitative_panel(cfg, stores: dict, students: dict, path: Path, frames: int = 3) -> Path:
    """PNG at `path` of the first `frames` test frames: input, ground truth and each student's segmentation
    row, then the same for depth (one colour range per frame, from its ground truth), with a class legend.
    """
    from pipeline.deploy.visual import colorize_depth, colorize_segm, depth_range, legend, panel

    store = FrameStore.open(stores["target.ice"])
    test = store.indices("test")[:frames]
    device = resolve_device(cfg.device)
    models = {REGIMES[k][0].split(" ")[0]: model_from_checkpoint(v)[0].to(device) for k, v in students.items()}
    rows, present = [], set()
    for i in test:
        d = store.read(int(i), int(i) + 1)
        rgb, gt_s, gt_d = d["frames/rgb"][0], d["real/segm"][0], d["real/depth"][0]
        x = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
        preds = {k: predict(m, x, device) for k, m in models.items()}
        lo, hi = depth_range(gt_d[gt_d > 0]) if (gt_d > 0).any() else (0.5, 10.0)
        present |= set(np.unique(gt_s).tolist())
        rows.append([("input", rgb), ("ground truth", colorize_segm(gt_s, store.classes))] +
                    [(k, colorize_segm(p["segm"][0].cpu().numpy(), store.classes)) for k, p in preds.items()])
        rows.append([("input", rgb), ("ground truth", colorize_depth(gt_d, lo, hi))] +
                    [(k, colorize_depth(p["depth"][0].cpu().numpy(), lo, hi)) for k, p in preds.items()])
    present.discard(255)
    img = panel(rows, height=max(160, cfg.frame_size()[0]), footer=legend(store.classes, sorted(present), width=900))
    from PIL import Image
    Image.fromarray(img).save(path)
    return path


def curves(students: dict, path: Path) -> Path:
    """PNG at `path` with each student's training loss, val mIoU % and val depth RMSE (m) against step, read
    from the runs' metrics.jsonl.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, ckpt in students.items():
        log = [json.loads(x) for x in (Path(ckpt).parent / "metrics.jsonl").read_text().splitlines()]
        steps = [m["step"] for m in log]
        label = REGIMES[name][0]
        axes[0].plot(steps, [m["loss_loss"] for m in log], label=label)
        axes[1].plot(steps, [100 * (m["val"]["segm"]["miou"] or 0) for m in log], label=label)
        axes[2].plot(steps, [m["val"]["depth"]["rmse"] for m in log], label=label)
    for ax, title in zip(axes, ("training loss (last batch)", "val mIoU %", "val depth RMSE m")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def machine() -> str:
    """One line describing this machine for the report: CPU cores and name, GPU name or "no GPU", torch version."""
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    import os
    return f"{os.cpu_count()}-core {cpu} CPU, {gpu}, torch {torch.__version__}"


def stage_times(seconds: dict | None) -> str:
    """One line of the stages' wall times (stages done by an earlier run take ~0 s), or "" without them."""
    if not seconds:
        return ""
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items() if k != "total")
    return f"Wall time of this run: {seconds['total'] / 60:.1f} min up to the report ({parts})."


def write_report(cfg, stores, teachers, students, results, label, qa: dict, seconds: dict | None = None) -> Path:
    """Print the results table and write report.md, results.json, qualitative.png and curves.png into cfg.out;
    returns the report's path. Assumes the last three results rows are students (a), (b), (c). `seconds`:
    stage -> wall seconds of this run (run_demo), printed under the table.
    """
    out = Path(cfg.out)
    tbl = table(results)
    click.echo(tbl)
    panel_png = qualitative_panel(cfg, stores, students, out / "qualitative.png")
    curves_png = curves(students, out / "curves.png")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    a, b, c = (results[k] for k in list(results)[-3:])
    verdict = summarize_effect(a, b, c)
    review = write_review(stores["target.ice"], PSEUDO, out / "review", sort="disagreement", limit=300)
    h, w = cfg.frame_size()
    text = f"""# mtdistill demo: distillation with asymmetric annotations on the synthetic world

Configuration: preset `{cfg.preset}`, {w}x{h} frames, {cfg.frames} target frames ({100 * cfg.segm_fraction:.0f}% of
the train split with segmentation, sensor depth with holes on all annotated frames, an unannotated split),
{cfg.source_frames} frames of a second appearance domain (style 1) fully labeled for the teachers{
" (plus the target's segmented train frames)" if cfg.teacher_sees_target else ""},
{cfg.student_steps} student steps per regime (batch {cfg.batch_size}), {cfg.teacher_steps} teacher steps, seed {cfg.seed};
teacher: {TEACHERS[cfg.teacher]}. All networks start from random weights (no ImageNet weights offline),
SGD with lr {cfg.lr_encoder:g} (encoder) / 1e-2 (decoder), step decay.
Machine: {machine()}. Labeling: {label.frames_labeled} frames in {label.seconds:.1f} s.
{stage_times(seconds)}

Evaluated on the target domain's test split ({results[list(results)[0]]['frames']} frames, sensor depth).
Latency: batch 1, eager fp32 at {w}x{h} on {resolve_device(cfg.device)}.

{tbl}

{verdict}

Before training, `mtdistill qa {out / 'target.ice'} --pseudo teachers --split val` judged the teacher on the
val split (frames it never saw):
{chr(10).join("- " + v for v in qa["verdict"].values())}

[Review page of the pseudo-labels]({review.relative_to(out)}) (300 frames, most disagreement with real labels
first; `mtdistill review`, then `mtdistill export-for-review` to correct the worst).

Regime (b) merges the teachers' labels by {merge_words(cfg)}; every student: gradient norm clipped at
{cfg.grad_clip:g}{f", {100 * cfg.warmup:g}% warm-up" if cfg.warmup else ""}{", CutMix and strong colour noise" if cfg.strong_augment else ""}.

Student GMAC at 640x480: {a.get('gmac_640x480', 0):.2f} (paper: 5.94 G multiply-adds; timm's MobileNet-v2 lacks one
1x1 conv of the reference, 0.08 GMAC).

![qualitative]({panel_png.name})

Rows: segmentation and depth of test frames; columns: input, ground truth, students (a), (b), (c).
The oracle (c) trains on the same frames with exact segmentation on every one and the same sensor depth
the annotated target frames have (so its advantage is the segmentation labels).

![curves]({curves_png.name})

## For comparison of structure: the paper's Table I (NYUDv2)
{PAPER_TABLE}

Stores: {', '.join(f'`{k}`' for k in stores)} under `{out}`; runs under `{out / 'runs'}`. Inspect them with
`mtdistill show/log`, `mtdistill qa {out / 'target.ice'} --pseudo teachers`, `mtdistill evaluate`.
"""
    path = out / "report.md"
    path.write_text(text)
    click.echo(verdict)
    click.echo(f"report: {path}")
    return path


def merge_words(cfg) -> str:
    """The demo's (b) merge policy in words."""
    p = cfg.pseudo_policy()
    if p.segm_soft:
        parts = [f"its top-{cfg.segm_topk} classes as soft targets (soft cross-entropy weighted by its confidence) "
                 f"on every pixel without a real label"]
    else:
        parts = [f"confidence >= {p.segm_threshold:g}" + (f" or within the top {100 * p.segm_class_share:g}% of "
                                                            f"its class" if p.segm_class_share else "")]
    where = "every LiDAR hole" if p.depth_fill == "holes" else "frames without real depth"
    parts.append(f"pseudo depth in {where}" + (" of classes that carry real depth" if p.depth_classes else ""))
    if p.depth_anchor != "none":
        parts.append("each frame's teacher depth scaled to its real depth")
    if p.depth_consistency:
        parts.append(f"dropped within {p.consistency_radius} px of real points it misses by > {100 * p.depth_consistency:g}%")
    if p.depth_threshold:
        parts.append(f"flip-TTA depth confidence >= {p.depth_threshold:g}")
    if cfg.pseudo_drop:
        parts.append(f"the {100 * cfg.pseudo_drop:g}% highest-loss pseudo pixels of each batch ignored")
    return "; ".join(parts)


def summarize_effect(a: dict, b: dict, c: dict) -> str:
    """One honest paragraph on what the numbers say about regime (b) vs (a) and (c)."""
    ma, mb, mc = (100 * (r["segm"]["miou"] or 0) for r in (a, b, c))
    ra, rb, rc = (r["depth"]["rmse"] for r in (a, b, c))
    gap = mc - ma
    closed = (mb - ma) / gap if gap > 0 else float("nan")
    words = ("beats" if mb > ma + 1 else "does not clearly beat")
    share = (f"(b) closes {100 * closed:.0f}% of the gap" if gap > 0 else
             "the oracle did not beat (a) here, so there is no gap to close")
    text = (f"Segmentation: (b) real + pseudo {words} (a) real only: {mb:.1f} vs {ma:.1f} mIoU "
            f"(oracle {mc:.1f}; {share}). "
            f"Depth RMSE: (a) {ra:.3f} m, (b) {rb:.3f} m, (c) {rc:.3f} m.")
    if mb <= ma + 1:
        text += (" The pseudo-labels did not help here: check the teacher's test mIoU in the table and "
                 "`mtdistill qa` (a weak teacher, a too-high confidence threshold or too short a budget).")
    return text
