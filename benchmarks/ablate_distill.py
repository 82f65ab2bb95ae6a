"""Distillation ablation: the demo's students with each lever switched off (or on) in turn, decided on the
target store's **val** split, over several seeds; prints a markdown table (mean and spread over seeds) and
writes every figure as JSON.

Usage: python benchmarks/ablate_distill.py [--seeds 0 1 2] [--out ablate_out] [--variants NAME ...]
                                           [--steps N] [--resume] [--list] [--table JSON ...]
For each seed the whole demo runs first (`mtdistill demo --seed S --out OUT/seedS`, default configuration:
stores, teacher, labeling, the three students, report.md on the test split); each variant then trains the
student(s) it changes on the same stores and pseudo-label set with the demo's step budget, and every student
is evaluated on the val split (75 frames, every one with both annotations). A variant that changes a lever
of every student (stability, schedule, augmentation) retrains (a), (b) and (c); a merge lever retrains (b);
"round2" labels the target again with the demo's (b) student as teacher and trains (b) on that.
On 2 CPU cores a seed takes about 15 minutes for the demo plus about 2 minutes per retrained student.
--resume keeps the variants already in OUT/ablation.json and, for a seed found there, its finished demo
(OUT/seedS/results.json); it runs only what is missing (the same code gives the same students: training is
deterministic per seed). Resume with the same --steps: the file does not record them.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.demo.config import PSEUDO, REGIMES, DemoConfig
from pipeline.runtime import keep_freed_memory
from stores.files import atomic_write_text

ALL = ("a_real", "b_pseudo", "c_oracle")
# name -> (DemoConfig changes relative to the default, regimes it retrains)
VARIANTS = {
    "no grad clip": ({"grad_clip": 0.0}, ALL),
    "warm-up 5%": ({"warmup": 0.05}, ALL),
    "strong augmentation": ({"strong_augment": True}, ALL),
    "depth weight 1.0": ({"depth_weight": 1.0}, ALL),
    "hard class-balanced 0.5": ({"segm_soft": False, "segm_class_share": 0.5}, ("b_pseudo",)),  # vs "hard targets"
    "soft top-3 targets": ({"segm_topk": 3, "segm_soft": True}, ("b_pseudo",)),
    "hard targets": ({"segm_soft": False}, ("b_pseudo",)),
    "depth fill frames": ({"depth_fill": "frames"}, ("b_pseudo",)),
    "pseudo drop 10%": ({"pseudo_drop": 0.1}, ("b_pseudo",)),
    "pseudo depth on all classes": ({"depth_classes": None}, ("b_pseudo",)),
    "no depth anchor": ({"depth_anchor": "none"}, ("b_pseudo",)),
    "depth consistency 0.25": ({"depth_consistency": 0.25}, ("b_pseudo",)),
    "no depth threshold": ({"depth_threshold": 0.0}, ("b_pseudo",)),
    "round2": ({}, ("b_pseudo",)),
}


def val_metrics(ckpt: str, store: str, device: str) -> dict:
    """mIoU % and RMSE m of a checkpoint on the store's val split."""
    from pipeline.checkpoint import model_from_checkpoint
    from pipeline.evaluate.evaluate import evaluate_model
    from pipeline.runtime import resolve_device
    from stores.repo import FrameStore

    s = FrameStore.open(store)
    dev = resolve_device(device)
    model, c = model_from_checkpoint(ckpt)
    r = evaluate_model(model.to(dev), s, s.indices("val"), device=dev, tasks=c["tasks"])
    return {"miou": 100 * r["segm"]["miou"], "rmse": r["depth"]["rmse"]}


def label_again(cfg: DemoConfig, stores: dict, name: str, teachers: dict, topk: int) -> str:
    """Label every target frame into pseudo set `name` (flip TTA, top-k as asked) with `teachers` {task: file},
    as the demo does; returns the name."""
    from pipeline.label.job import LabelConfig, run_label

    run_label(LabelConfig(store=stores["target.ice"], name=name, teachers=tuple(sorted(teachers.items())),
                          frames="all", flip=True, topk=topk, workers=cfg.workers, batch_size=cfg.batch_size,
                          device=cfg.device))
    return name


def pseudo_set(vcfg: DemoConfig, cfg: DemoConfig, stores: dict, name: str, runs: Path) -> str:
    """The pseudo set a (b) variant trains on: the demo's, or one labeled again for "round2" (the (b) student as
    both teachers) or for a top-k the demo's set lacks."""
    if name == "round2":
        student = str(runs / "student-b_pseudo" / "last.pt")
        return label_again(cfg, stores, f"{PSEUDO}-round2", {"segm": student, "depth": student}, vcfg.segm_topk)
    if vcfg.segm_topk and vcfg.segm_topk != cfg.segm_topk:
        files = {t: str(runs / "teacher-mt" / f"teacher-{t}.ts") for t in ("segm", "depth")}
        return label_again(cfg, stores, f"{PSEUDO}-k{vcfg.segm_topk}", files, vcfg.segm_topk)
    return PSEUDO


def run_seed(seed: int, out: Path, variants, base: dict, done: dict, save) -> dict:
    """The demo and the variants for one seed -> {variant: {regime: {"miou", "rmse"}}} on val. `done`: results
    already measured (skipped, and the demo too when it has finished); `save(res)` after each variant."""
    from pipeline.demo.run import ingest_world, run_demo, run_training, train_config

    cfg = DemoConfig(out=str(out / f"seed{seed}"), seed=seed, **base)
    if not (done and (Path(cfg.out) / "results.json").exists()):
        demo = run_demo(cfg)
        print(json.dumps({"seed": seed, "demo_seconds": demo["seconds"]}), flush=True)
        done = {}
    stores = ingest_world(cfg, Path(cfg.out))
    runs = Path(cfg.out) / "runs"
    res = dict(done)
    res["default"] = {k: val_metrics(str(runs / f"student-{k}" / "last.pt"), stores[REGIMES[k][1]], cfg.device)
                      for k in ALL}
    print(json.dumps({"seed": seed, "variant": "default", **res["default"]}), flush=True)
    for name in variants:
        change, regimes = VARIANTS[name]
        vcfg = replace(cfg, **change)
        if (vcfg == cfg and name != "round2") or name in done:
            continue                                # the default already has this setting, or measured before
        res[name] = {}
        for key in regimes:
            _, store, split, policy = REGIMES[key]
            if policy is None:
                policy = replace(vcfg.pseudo_policy(), pseudo=pseudo_set(vcfg, cfg, stores, name, runs))
            run = "ablate-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("%", "pc")) + f"-{key}"  # a tag name
            tcfg = train_config(vcfg, stores[store], run, {"name": "student"}, split, policy, vcfg.student_steps,
                                vcfg.student_tasks())
            res[name][key] = val_metrics(run_training(tcfg)["checkpoint"], stores[store], cfg.device)
        print(json.dumps({"seed": seed, "variant": name, **res[name]}), flush=True)
        save(res)
    return res


def table(per_seed: dict) -> str:
    """Markdown: variant x regime, mean (min..max over seeds) of val mIoU % and RMSE m."""
    seeds = sorted(per_seed)
    names = list(dict.fromkeys(n for s in seeds for n in per_seed[s]))        # every variant of any seed
    lines = ["| variant (val split) | (a) mIoU % | (a) RMSE m | (b) mIoU % | (b) RMSE m | (c) mIoU % | (c) RMSE m |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        cells = []
        for key in ALL:
            for m, nd in (("miou", 1), ("rmse", 3)):
                v = [per_seed[s][name][key][m] for s in seeds if key in per_seed[s].get(name, {})]
                if not v:
                    cells.append("")
                    continue
                spread = f" ({min(v):.{nd}f}..{max(v):.{nd}f})" if len(v) > 1 else ""
                cells.append(f"{statistics.mean(v):.{nd}f}{spread}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="ablate_out")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="Names from --list (default: all).")
    ap.add_argument("--steps", type=int, default=None, help="Student steps (default: the demo's).")
    ap.add_argument("--resume", action="store_true", help="Keep finished demos and the variants already in "
                    "OUT/ablation.json; run only the rest.")
    ap.add_argument("--list", action="store_true", help="Print the variants and exit.")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="Only print the table of these ablation.json files "
                    "(e.g. one per seed, run as separate processes).")
    a = ap.parse_args()
    if a.list:
        print("\n".join(f"{k}: {v[0]} retrains {', '.join(v[1])}" for k, v in VARIANTS.items()))
        return
    if a.table:
        print(table({int(k): v for f in a.table for k, v in json.loads(Path(f).read_text()).items()}))
        return
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant(s) {unknown}; see --list")
    keep_freed_memory()                                  # as every `mtdistill` command does for its process
    base = {"student_steps": a.steps} if a.steps else {}
    out = Path(a.out)
    path = out / "ablation.json"
    per_seed = {int(k): v for k, v in json.loads(path.read_text()).items()} if a.resume and path.exists() else {}

    def save(seed, res):
        per_seed[seed] = res
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({str(k): v for k, v in sorted(per_seed.items())}, indent=2))

    for s in a.seeds:
        save(s, run_seed(s, out, a.variants, base, per_seed.get(s, {}), lambda res, s=s: save(s, res)))
    print(table({s: per_seed[s] for s in a.seeds}))


if __name__ == "__main__":
    main()
