"""`mtdistill demo`: the paper's experiment end to end on the synthetic world.

1. ingest a target domain with asymmetric annotations (few segmentation labels, holey sensor depth,
   unannotated frames, a fully annotated test split), its full-ground-truth twin (for the oracle), and a
   second, fully labeled appearance domain for the teachers (the paper's Cityscapes -> KITTI situation);
2. train the teachers on the second domain and label the target frames missing targets (dask job);
3. train the student three ways with the same step budget: (a) real targets only, (b) real + pseudo
   targets (the paper's method), (c) full ground truth (oracle);
4. evaluate teachers and students on the target test split; 5. write report.md (pipeline/demo/report.py).
Every stage is a store version or a checkpoint; re-running the command skips finished stages.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict
from pathlib import Path

import click
import torch

from pipeline.demo.config import PSEUDO, REGIMES, DemoConfig
from pipeline.train.augment import AugmentConfig
from stores.errors import UserError
from stores.files import atomic_write
from stores.merge import MergePolicy

def say(text: str) -> None:
    """Print a stage heading (bold, to stderr)."""
    click.secho(text, bold=True, err=True)


# ---- 1. data ------------------------------------------------------------------------------------

def ingest_plans(cfg: DemoConfig) -> dict:
    """store name -> (SyntheticConfig, frames() -> iterator of Frames, exact number of frames it yields)."""
    from stores.sources.base import Frame
    from stores.sources.synthetic import (SyntheticConfig, assignment, frame_name, iter_frames, make_frame,
                                          render_frame)

    size = cfg.frame_size()
    target = SyntheticConfig(preset=cfg.preset, frames=cfg.frames, size=size, seed=cfg.seed, style=0,
                             segm_fraction=(cfg.segm_fraction, 1.0), depth_fraction=1.0,
                             splits=(0.6, 0.1, 0.15, 0.15), sensor=True)
    source = SyntheticConfig(preset=cfg.preset, frames=cfg.source_frames, size=size, seed=cfg.seed + 1,
                             style=1, segm_fraction=1.0, depth_fraction=1.0, splits=(0.9, 0.1, 0.0, 0.0),
                             sensor=False)
    seen = [i for i in range(cfg.frames) if cfg.teacher_sees_target
            and assignment(target, i)[0] == "train" and assignment(target, i)[1]]

    def target_frames():
        return iter_frames(target, workers=cfg.workers)

    def oracle_frames():
        """The target frames, every one with exact segmentation and the sensor's depth (what every
        annotated target frame has); unannotated frames join train."""
        for i in range(cfg.frames):
            split = assignment(target, i)[0]
            rgb, segm, _, sensor = render_frame(cfg.preset, i, cfg.seed, size, 0)
            yield Frame(rgb, "train" if split == "unlabeled" else split, frame_name(target, i), segm, sensor)

    def source_frames():
        """The second domain, plus (teacher_sees_target) the target's segmented train frames."""
        yield from iter_frames(source, workers=cfg.workers)
        yield from (make_frame(target, i) for i in seen)

    return {"target.ice": (target, target_frames, cfg.frames),
            "oracle.ice": (target, oracle_frames, cfg.frames),
            "source.ice": (source, source_frames, cfg.source_frames + len(seen))}


def ingest_world(cfg: DemoConfig, out: Path) -> dict:
    """The demo's three stores (target, oracle, second domain), each ingested once; progress totals exact."""
    from pipeline.ingest import open_or_create, run_ingest
    from stores.sources.base import SkipLog
    from stores.sources.synthetic import class_list_for

    stores = {}
    for name, (syn, frames, total) in ingest_plans(cfg).items():
        path = out / name
        store = open_or_create(path, classes=class_list_for(cfg.preset), frame_size=cfg.frame_size())
        if store.num_frames < syn.frames:
            run_ingest(store, frames(), kind="synthetic", skips=SkipLog(), total=total,
                       source={"path": f"synthetic/{cfg.preset}", "demo_store": name,
                               **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(syn).items()},
                               "generator": frames.__name__})
        stores[name] = str(path)
    return stores


# ---- 2. teachers and labeling ---------------------------------------------------------------------

def train_config(cfg: DemoConfig, store: str, run: str, arch: dict, split: str, policy: MergePolicy,
                 steps: int, tasks=(("segm", 0.5), ("depth", 0.5))):
    """TrainConfig of one demo run: fixed `steps` budget, val split "val", scale augmentation 0.8-1.5, output
    under cfg.out/runs/<run>.
    """
    from pipeline.train.config import TrainConfig
    return TrainConfig(store=store, run=run, out=str(Path(cfg.out) / "runs"), arch=arch, policy=policy,
                       split=split, val_split="val", steps=steps, batch_size=cfg.batch_size,
                       augment=AugmentConfig(scale_min=0.8, scale_max=1.5, strong=cfg.strong_augment),
                       seed=cfg.seed, lr_encoder=cfg.lr_encoder, grad_clip=cfg.grad_clip, warmup=cfg.warmup,
                       pseudo_drop=cfg.pseudo_drop if policy.pseudo else 0.0,
                       workers=min(cfg.workers, 2), device=cfg.device, task_weights=tasks)


def finished(tcfg) -> dict | None:
    """The checkpoint of a run that already reached its budget, else None."""
    from pipeline.checkpoint import load_checkpoint
    path = Path(tcfg.out) / tcfg.run / "last.pt"
    if path.exists():
        ckpt = load_checkpoint(path)
        if ckpt["step"] >= tcfg.steps:
            return {"checkpoint": str(path), "step": ckpt["step"]}
    return None


def run_training(tcfg) -> dict:
    """Train one run, resuming from its last.pt if any; returns {"checkpoint", "step", ...}, without training
    when the run already reached its step budget.
    """
    from pipeline.train.loop import train
    done = finished(tcfg)
    if done:
        return done
    return train(tcfg, resume=(Path(tcfg.out) / tcfg.run / "last.pt").exists())


def train_teachers(cfg: DemoConfig, stores: dict) -> dict:
    """Teachers trained on the second domain (and the target's few labels): {task: {teacher, checkpoint}}."""
    if cfg.teacher == "student":
        return student_teacher(cfg, stores)
    if cfg.teacher != "resnet38":
        raise UserError(f"teacher {cfg.teacher!r}: choose student or resnet38")
    from pipeline.train.teacher import train_teacher

    teachers = {}
    for task, arch in (("segm", "resnet38"), ("depth", "resnet38_depth")):
        arch = {"name": arch, "width": cfg.teacher_width, "units": list(cfg.teacher_units)}
        tcfg = train_config(cfg, stores["source.ice"], f"teacher-{task}", arch, "train", MergePolicy(),
                            cfg.teacher_steps, tasks=((task, 1.0),))
        run_dir = Path(tcfg.out) / tcfg.run
        out = run_dir / "teacher.pt"
        if not (out.exists() and finished(tcfg)):
            say(f"teacher {task}: ResNet-38 (width {cfg.teacher_width}) on the fully labeled second domain")
            train_teacher(tcfg, task, out, resume=(run_dir / "last.pt").exists())
        teachers[task] = {"teacher": str(out), "checkpoint": str(run_dir / "last.pt")}
    return teachers


class OneTask(torch.nn.Module):
    """One task's output of a multi-task network, as a plain tensor (for a TorchScript teacher file)."""

    def __init__(self, model, task: str):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, x):
        """float32 (B, 3, H, W) normalised RGB -> the wrapped model's output for `task`: segm logits (B, C, H/4, W/4)
        or depth (B, 1, H/4, W/4) metres for the student.
        """
        return self.model(x)[self.task]


def student_teacher(cfg: DemoConfig, stores: dict) -> dict:
    """An MT-LW-RefineNet trained longer on more labeled data, written as two TorchScript teacher files."""
    from pipeline.checkpoint import model_from_checkpoint

    tcfg = train_config(cfg, stores["source.ice"], "teacher-mt", {"name": "student"}, "train", MergePolicy(),
                        cfg.teacher_steps)
    run_dir = Path(tcfg.out) / tcfg.run
    if not finished(tcfg):
        say(f"teacher: MT-LW-RefineNet, {cfg.teacher_steps} steps on the fully labeled second domain")
    ckpt = run_training(tcfg)["checkpoint"]
    model = model_from_checkpoint(ckpt)[0]
    example = torch.zeros(1, 3, *cfg.frame_size())
    teachers = {}
    for task in ("segm", "depth"):
        path = run_dir / f"teacher-{task}.ts"
        if not path.exists():
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing and jit.save warn about their own deprecation
                traced = torch.jit.trace(OneTask(model, task).eval(), example)
                atomic_write(path, lambda tmp: torch.jit.save(traced, str(tmp)))
        teachers[task] = {"teacher": str(path), "checkpoint": ckpt}
    return teachers


def label_target(cfg: DemoConfig, stores: dict, teachers: dict):
    """Stage 2b: pseudo-label every target frame into pseudo set "teachers" (dask job; flip TTA gives the depth
    confidence; frames with real targets get labels too, for LiDAR hole filling and `qa`);
    returns the LabelResult. UserError when shards are left unlabeled.
    """
    from pipeline.label.job import LabelConfig, format_result, run_label

    say("labeling every target frame, flip TTA for depth confidence (dask.distributed)")
    lcfg = LabelConfig(store=stores["target.ice"], name=PSEUDO,
                       teachers=tuple(sorted((t, v["teacher"]) for t, v in teachers.items())),
                       frames="all", flip=True, topk=cfg.segm_topk, workers=cfg.workers, batch_size=cfg.batch_size,
                       device=cfg.device)
    result = run_label(lcfg)
    if result.missing:
        raise UserError(f"labeling left {len(result.missing)} shard(s) unlabeled: {result.missing}")
    click.echo(format_result(result), err=True)
    return result


def teacher_check(stores: dict) -> dict:
    """`mtdistill qa` of the pseudo set on the val split (frames the teachers never saw), before any student
    trains; its verdict lines are printed and go into the report."""
    from pipeline.evaluate.qa import quality_report
    from stores.repo import FrameStore

    try:
        qa = quality_report(FrameStore.open(stores["target.ice"]), PSEUDO, split="val")
    except UserError as e:                     # e.g. a tiny demo whose val split has no annotated frame
        qa = {"verdict": {"all": f"not measured: {e}"}}
    for line in qa["verdict"].values():
        click.echo(f"qa verdict: {line}", err=True)
    return qa


# ---- 3. students --------------------------------------------------------------------------------

def train_students(cfg: DemoConfig, stores: dict) -> dict:
    """Stage 3: train the student under each regime (a) real only, (b) real + pseudo, (c) oracle, with the
    same step budget; returns {regime key: checkpoint path}.
    """
    runs = {}
    for name, (title, store, split, policy) in REGIMES.items():
        if policy is None:
            policy = cfg.pseudo_policy()
        tcfg = train_config(cfg, stores[store], f"student-{name}", {"name": "student"}, split, policy,
                            cfg.student_steps, cfg.student_tasks())
        say(f"student {title}: {cfg.student_steps} steps" + (" (done before)" if finished(tcfg) else ""))
        runs[name] = run_training(tcfg)["checkpoint"]
    return runs


def run_demo(cfg: DemoConfig) -> dict:
    """All five stages (data, teachers + labeling, students, evaluation, report); each is skipped where its
    store version or checkpoint already exists. Returns {"report": path of report.md, "results": ...,
    "seconds": {stage: wall seconds in this call, "total"}} (the seconds also go into the report).
    """
    from pipeline.demo.report import evaluate_all, write_report

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds, t0 = {}, time.perf_counter()

    def lap(stage: str) -> None:
        seconds[stage] = time.perf_counter() - t0 - sum(seconds.values())

    say(f"1/5 data: {cfg.frames} target frames ({100 * cfg.segm_fraction:.0f}% of train segmented), "
        f"{cfg.source_frames} second-domain frames, {cfg.frame_size()[1]}x{cfg.frame_size()[0]}")
    stores = ingest_world(cfg, out)
    lap("data")
    say("2/5 teachers")
    teachers = train_teachers(cfg, stores)
    lap("teachers")
    label = label_target(cfg, stores, teachers)
    lap("labeling")
    qa = teacher_check(stores)
    lap("qa")
    say("3/5 students")
    students = train_students(cfg, stores)
    lap("students")
    say("4/5 evaluation on the target test split")
    results = evaluate_all(cfg, stores, teachers, students)
    lap("evaluation")
    say("5/5 report")
    seconds["total"] = time.perf_counter() - t0        # up to the report; the report itself takes seconds
    report = write_report(cfg, stores, teachers, students, results, label, qa, seconds)
    return {"report": str(report), "results": results, "seconds": seconds}
