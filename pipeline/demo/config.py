"""The demo's configuration (`mtdistill demo` options -> DemoConfig) and its three student regimes; read by
pipeline/demo/run.py (the stages) and pipeline/demo/report.py (the table)."""
from __future__ import annotations

from dataclasses import dataclass

from stores.errors import UserError
from stores.merge import MergePolicy

REGIMES = {  # name -> (what it is, store, training splits, merge policy)
    "a_real": ("(a) real targets only", "target.ice", "train", MergePolicy()),
    "b_pseudo": ("(b) real + pseudo (paper)", "target.ice", "train,unlabeled", None),  # policy set below
    "c_oracle": ("(c) full ground truth", "oracle.ice", "train", MergePolicy()),
}
PSEUDO = "teachers"


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `mtdistill demo` (its options plus fixed ones); the defaults are sized for a CPU,
    `full()` gives the GPU-sized variant. UserError for segm_soft without segm_topk.
    """
    out: str = "demo_out"
    preset: str = "outdoor"                  # outdoor (KITTI-6) learns within a CPU budget; indoor has 40 classes
    size: tuple[int, int] | None = None      # (H, W); None = 96x128 indoor, 80x256 outdoor (full: preset size)
    frames: int = 500                        # target-domain frames
    source_frames: int = 300                 # fully labeled second domain for the teachers
    segm_fraction: float = 0.1               # share of target train frames with segmentation
    student_steps: int = 250
    teacher_steps: int = 1000                # bf16 training's speed-up went into the teacher
    batch_size: int = 8
    teacher: str = "student"                 # "student": an MT-LW-RefineNet teacher for both tasks (CPU);
                                             # "resnet38": ResNet-38 segmenter + ResNet-38 depth expert
    teacher_width: float = 0.5               # ResNet-38 width multiplier
    teacher_units: tuple[int, ...] = (3, 3, 6, 3)
    lr_encoder: float = 1e-2                 # no ImageNet weights offline: the encoder learns from scratch
    # levers for every student (no pseudo-labels needed): see BENCHMARKS.md, "Distillation ablation"
    grad_clip: float = 20.0                  # global gradient norm: trims the spikes of berHu in metres
    warmup: float = 0.0
    strong_augment: bool = False             # CutMix (all regimes); colour jitter + blur on pseudo-labeled frames
    depth_weight: float = 0.5                # every student's depth loss weight (segmentation 0.5, as the paper)
    # the merge of (b)
    segm_threshold: float = 0.5
    segm_class_share: float = 0.0
    segm_topk: int = 3                       # label with the teacher's top-k classes per pixel (0 = off)
    segm_soft: bool = True                   # (b) learns those top-k soft targets where no real label
    pseudo_drop: float = 0.0
    depth_classes: str | None = "observed"   # no pseudo depth on classes a LiDAR never returns (sky)
    depth_fill: str = "holes"                # pseudo depth in LiDAR holes ("frames": only frames without depth)
    depth_anchor: str = "scale"              # each frame's teacher depth scaled to its own LiDAR points
    depth_threshold: float = 0.5             # flip-TTA agreement of the teacher's depth
    depth_consistency: float = 0.0           # 0.25: no pseudo depth near LiDAR points it misses by > 25% (off:
                                             # better on val over three seeds, BENCHMARKS.md)
    teacher_sees_target: bool = True         # teachers also train on the target's few labeled frames
    seed: int = 0
    device: str = "auto"
    workers: int = 2                         # labeling workers and DataLoader workers

    def __post_init__(self):
        if self.segm_soft and not self.segm_topk:
            raise UserError("segm_soft learns the teacher's top-k classes: set segm_topk (e.g. 3)")

    @classmethod
    def full(cls, **kw) -> "DemoConfig":
        """A larger configuration meant for a GPU."""
        kw.setdefault("size", {"indoor": (480, 640), "outdoor": (352, 1216)}[kw.get("preset", "outdoor")])
        base = dict(frames=3000, source_frames=2000, student_steps=6000, teacher_steps=8000,
                    teacher="resnet38", batch_size=8)
        return cls(**{**base, **kw})

    def pseudo_policy(self) -> MergePolicy:
        """The merge policy of regime (b): real targets, then the teachers' labels as the levers above say."""
        return MergePolicy(pseudo=PSEUDO, segm_threshold=self.segm_threshold, segm_class_share=self.segm_class_share,
                           segm_soft=self.segm_soft,
                           depth_fill=self.depth_fill, depth_classes=self.depth_classes, depth_anchor=self.depth_anchor,
                           depth_threshold=self.depth_threshold, depth_consistency=self.depth_consistency)

    def student_tasks(self) -> tuple[tuple[str, float], ...]:
        """The students' loss weights per task (TrainConfig.task_weights)."""
        return (("segm", 0.5), ("depth", self.depth_weight))

    def frame_size(self) -> tuple[int, int]:
        """(H, W) of every demo store: `size` if set, else 96x128 (indoor) or 80x256 (outdoor) pixels."""
        if self.size:
            return self.size
        return {"indoor": (96, 128), "outdoor": (80, 256)}[self.preset]


def demo_config(full: bool, **kw) -> DemoConfig:
    """Click options (None = default) -> DemoConfig; --full starts from the GPU-sized configuration."""
    kw = {k: v for k, v in kw.items() if v is not None}
    if kw.get("preset", DemoConfig.preset) not in ("indoor", "outdoor"):
        raise UserError(f"--preset {kw['preset']!r}: choose indoor or outdoor")
    return DemoConfig.full(**kw) if full else DemoConfig(**kw)
