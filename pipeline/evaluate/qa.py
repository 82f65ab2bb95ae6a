"""Quality report of a pseudo-label set (`mtdistill qa`): how far to trust a teacher, measured where real
targets exist.

Flow: after `mtdistill label` (best with `--frames all`, so frames with real targets get pseudo-labels
too) -> **quality_report** streams the labeled shards once: segmentation mIoU / per-class IoU against
real labels (pipeline.evaluate.metrics.SegmMetrics), confidence calibration (accuracy per confidence bin, ECE,
accuracy and coverage above each merge threshold), depth RMSE / abs rel / delta1 (DepthMetrics), and a
held-out check of depth: per frame the real depth points in 1/5 of its 16x16 tiles are held out, the teacher's depth is
anchored (stores/depthfit.py, scale) on the rest and compared on them with what the real depth alone gives
there (the frame's median real depth; and, for scale, each point filled from its nearest kept real point)
-> one verdict line per task, text,
JSON and a reliability plot. Only frames of shards whose done flag is set count.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline.evaluate.metrics import DepthMetrics, SegmMetrics, iou_table
from stores.depthfit import fit_depth
from stores.errors import UserError
from stores.schema import HAS_TARGET

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
HOLD_OUT = 5            # 1/5 of each frame's TILE x TILE tiles (a per-frame random draw) are held out
TILE = 16               # pixels: held-out tiles are holes to fill, not single points next to kept ones
GOOD_ACCURACY = 0.8     # pseudo-labels this accurate (vs real labels) are worth training on


class Calibration:
    """Per-pixel confidence (uint8 = p x 255) vs correctness, kept as 256-level histograms."""

    def __init__(self):
        self.count = np.zeros(256, np.int64)
        self.correct = np.zeros(256, np.int64)

    def update(self, conf: np.ndarray, correct: np.ndarray) -> None:
        """Add pixels: conf uint8 (..., H, W) teacher confidence x255, correct bool of the same shape."""
        c = conf.ravel().astype(np.int64)
        self.count += np.bincount(c, minlength=256)
        self.correct += np.bincount(c, weights=correct.ravel().astype(np.float64), minlength=256).astype(np.int64)

    def bins(self, n: int = 10) -> list[dict]:
        """n equal-width confidence bins over [0, 1]: pixels, mean confidence, accuracy."""
        p = np.arange(256) / 255.0
        which = np.minimum((p * n).astype(int), n - 1)
        out = []
        for b in range(n):
            m = which == b
            k = int(self.count[m].sum())
            out.append({"lo": b / n, "hi": (b + 1) / n, "pixels": k,
                        "confidence": float((self.count[m] * p[m]).sum() / k) if k else None,
                        "accuracy": float(self.correct[m].sum() / k) if k else None})
        return out

    def ece(self, n: int = 10) -> float:
        """Expected calibration error over n equal-width bins: sum over bins of pixel share x |accuracy - mean
        confidence| (Guo et al. 2017); NaN when no pixel was seen.
        """
        total = self.count.sum()
        return float(sum(b["pixels"] / total * abs(b["accuracy"] - b["confidence"])
                         for b in self.bins(n) if b["pixels"])) if total else float("nan")

    def thresholds(self, values=THRESHOLDS) -> list[dict]:
        """What `train --segm-threshold t` would keep: share of pixels and their accuracy."""
        total = self.count.sum()
        out = []
        for t in values:
            keep = np.arange(256) >= np.ceil(t * 255 - 1e-6)          # same integer rule as the merge
            k = int(self.count[keep].sum())
            out.append({"threshold": t, "kept": k / total if total else float("nan"),
                        "accuracy": float(self.correct[keep].sum() / k) if k else None})
        return out

    def summary(self) -> dict:
        """{"pixels", "mean_confidence", "accuracy", "ece", "bins", "thresholds"}; confidences and accuracies 0..1."""
        total = int(self.count.sum())
        mean_conf = float((self.count * np.arange(256) / 255).sum() / total) if total else float("nan")
        acc = float(self.correct.sum() / total) if total else float("nan")
        return {"pixels": total, "mean_confidence": mean_conf, "accuracy": acc, "ece": self.ece(),
                "bins": self.bins(), "thresholds": self.thresholds()}


def labeled_frames(store, name: str, split: str | None) -> np.ndarray:
    """Frames of done shards (optionally of one split: UserError when it holds no frame)."""
    g = store.pseudo(name)
    done = g["done"][:]
    s, n = store.shard_frames, g["segm"].shape[0]
    ok = np.repeat(done, s)[:n]
    idx = store.indices(split, required=True)
    idx = idx[idx < n]
    return idx[ok[idx]]


class _Tally:
    """What quality_report accumulates shard by shard."""

    def __init__(self, num_classes: int):
        self.segm, self.calib, self.depth = SegmMetrics(num_classes, invalid_pred="ignore"), Calibration(), DepthMetrics()
        self.held = {k: DepthMetrics() for k in ("teacher", "real_median", "real_nearest")}   # held-out points
        self.cover = {"segm": [0, 0], "depth": [0, 0]}                 # [pseudo-labeled, real] pixels
        self.used = {"segm": 0, "depth": 0}                            # frames with the real target

    def add(self, store, g, task: str, idx: np.ndarray) -> None:
        """Frames `idx` (sorted, inside one shard) of pseudo set `g` that have the real target of `task`."""
        lo, hi = int(idx.min()), int(idx.max()) + 1
        rel = idx - lo
        keys = ("segm", "conf") if task == "segm" else ("depth",)
        self.add_arrays(task, idx, store.root[f"real/{task}"][lo:hi][rel], {k: g[k][lo:hi][rel] for k in keys})

    def add_arrays(self, task: str, idx: np.ndarray, real: np.ndarray, pseudo: dict) -> None:
        """Frames `idx` with real target `real` (B, H, W) and the teacher's {"segm", "conf"} uint8 or {"depth"}
        metres (B, H, W), as stored in a pseudo set or returned by Teacher.predict."""
        self.used[task] += len(idx)
        if task == "segm":
            labels, conf = pseudo["segm"], pseudo["conf"]
            valid, both = real != 255, (real != 255) & (labels != 255)
            self.segm.update(labels, real)             # 255 on either side is ignored
            self.calib.update(conf[both], labels[both] == real[both])
            self.cover["segm"][0] += int(both.sum())
            self.cover["segm"][1] += int(valid.sum())
        else:
            depth = pseudo["depth"].astype(np.float32)
            both = (real > 0) & (depth > 0)
            self.depth.update(depth, np.where(both, real, 0))
            for i, r, p in zip(idx, real, depth):
                self.add_held_out(int(i), r, p)
            self.cover["depth"][0] += int(both.sum())
            self.cover["depth"][1] += int((real > 0).sum())

    def add_held_out(self, index: int, real: np.ndarray, pseudo: np.ndarray) -> None:
        """One frame: the teacher's depth, scale-anchored on the real points outside 1/5 of its 16x16 tiles, the
        median of those real points (what a target-less hole teaches: nothing better than the frame's typical
        depth) and the nearest of them (interpolating the real depth), all compared on the held-out tiles."""
        valid = (real > 0) & (pseudo > 0)
        h, w = real.shape
        tiles = np.random.default_rng([index, 5]).integers(0, HOLD_OUT, (-(-h // TILE), -(-w // TILE))) == 0
        held = valid & np.kron(tiles, np.ones((TILE, TILE), bool))[:h, :w]
        kept = (real > 0) & ~held
        fit = fit_depth(pseudo, real, "scale", mask=kept)
        if fit is None or not held.any():
            return
        target = np.where(held, real, 0)
        self.held["teacher"].update(fit.apply(pseudo), target)
        self.held["real_median"].update(np.full(real.shape, np.median(real[kept]), np.float32), target)
        nearest = ndimage.distance_transform_edt(~kept, return_distances=False, return_indices=True)
        self.held["real_nearest"].update(real[tuple(nearest)], target)

    def coverage(self, task: str) -> float:
        return self.cover[task][0] / max(self.cover[task][1], 1)


def quality_report(store, name: str, split: str | None = None) -> dict:
    """Pseudo vs real on every labeled frame that has the real target (module docstring). A task with no
    pixel to compare is left out and named in "not_measured" with the reason; UserError when no task
    has one (e.g. a set labeled with --frames missing: frames with real targets got no pseudo-label)."""
    g = store.pseudo(name)
    tasks = list(g.attrs.get("tasks", ["segm", "depth"]))
    frames = labeled_frames(store, name, split)
    has = {task: store.root[path][:] for task, path in HAS_TARGET.items()}
    tally, s = _Tally(store.num_classes), store.shard_frames
    for start in range(0, store.num_frames, s):                          # one shard at a time
        sel = frames[(frames >= start) & (frames < start + s)]
        for task in tasks:
            if has[task][sel].any():
                tally.add(store, g, task, sel[has[task][sel]])
    return tally_report(tally, tasks, {"store": str(store.path), "snapshot": store.snapshot_id, "pseudo": name,
                                       "split": split, "teachers": dict(g.attrs.get("teachers", {})),
                                       "labeled_frames": int(len(frames))},
                        f"pseudo set {name!r}", "label with --frames all so frames with real targets get "
                        "pseudo-labels too")


def tally_report(tally: _Tally, tasks, head: dict, what: str, hint: str) -> dict:
    """The report dict (`head` + per-task figures + verdicts) of a tally; UserError naming `what` and `hint`
    when no task had a pixel to compare."""
    missing = {t: _not_measured(t, tally.used[t]) for t in tasks if not tally.cover[t][0]}
    if len(missing) == len(tasks):
        split = head.get("split")
        raise UserError(f"{head['store']}: {what}{f' in split {split!r}' if split else ''}: "
                        + "; ".join(missing.values()) + f"; nothing to measure the teacher on ({hint})")
    out = {**head, "not_measured": missing}
    if "segm" in tasks and "segm" not in missing:
        out["segm"] = {**tally.segm.compute(), "frames": tally.used["segm"], "coverage": tally.coverage("segm"),
                       "calibration": tally.calib.summary()}
    if "depth" in tasks and "depth" not in missing:
        out["depth"] = {**tally.depth.compute(), "frames": tally.used["depth"], "coverage": tally.coverage("depth"),
                        "held_out": {k: v.compute() for k, v in tally.held.items()}}
    out["verdict"] = verdicts(out)
    return out


def verdicts(r: dict) -> dict:
    """One line per measured task: is the teacher worth training on? segm: yes when the pseudo-labels kept
    at some threshold of THRESHOLDS are at least GOOD_ACCURACY accurate against real labels (the lowest such
    threshold is suggested); depth: yes when, on the held-out points, the anchored teacher's RMSE is below that
    of each frame's median real depth (the real depth alone, without a teacher, says no more about a hole);
    filling from the nearest real point is printed beside it for scale."""
    out = {}
    if "segm" in r:
        ok = [t for t in r["segm"]["calibration"]["thresholds"]
              if t["accuracy"] is not None and t["accuracy"] >= GOOD_ACCURACY and t["kept"] >= 0.1]
        miou = 100 * r["segm"]["miou"]
        out["segm"] = (f"segm: worth it: pseudo-labels at --segm-threshold {ok[0]['threshold']:g} are "
                       f"{100 * ok[0]['accuracy']:.1f}% accurate on {100 * ok[0]['kept']:.0f}% of the labeled pixels "
                       f"(mIoU {miou:.1f}%)" if ok else
                       f"segm: NOT worth it: at no threshold are the pseudo-labels {100 * GOOD_ACCURACY:.0f}% accurate "
                       f"on 10% of the pixels (mIoU {miou:.1f}%); train on real labels only or get a better teacher")
    held = r.get("depth", {}).get("held_out", {})
    if held and held["teacher"]["pixels"]:
        t, m, n = (held[k]["rmse"] for k in ("teacher", "real_median", "real_nearest"))
        out["depth"] = (f"depth: {'worth it' if t < m else 'NOT worth it'}: anchored to each frame's real depth, "
                        f"the teacher's RMSE on held-out real points is {t:.3f} m vs {m:.3f} m for the frame's median "
                        f"real depth ({n:.3f} m from the nearest real point; {held['teacher']['pixels']} points)")
    return out


def _not_measured(task: str, frames: int) -> str:
    """Why a task has no figure: no labeled frame with its real target, or none with a pseudo-label too."""
    if not frames:
        return f"{task}: no labeled frame has a real {task} target (no ground truth)"
    return (f"{task}: none of the {frames} frame(s) with a real {task} target has a pseudo-label "
            f"(labeled with --frames missing?)")


def reliability_plot(report: dict, path) -> str:
    """Reliability diagram (accuracy vs confidence per bin, the diagonal = perfect calibration) and the
    confidence histogram, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = report["segm"]["calibration"]
    bins = [b for b in cal["bins"] if b["pixels"]]                     # empty bins draw nothing
    centers = np.array([(b["lo"] + b["hi"]) / 2 for b in bins])
    acc = np.array([b["accuracy"] for b in bins])
    conf = np.array([b["confidence"] for b in bins])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    ax1.bar(centers, acc, width=0.09, color="#4878d0", edgecolor="black", label="accuracy")
    ax1.bar(centers, conf - acc, bottom=acc, width=0.09, color="#ee854a", alpha=0.5,
            edgecolor="black", label="gap to confidence")
    ax1.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax1.set(xlim=(0, 1), ylim=(0, 1), xlabel="teacher confidence", ylabel="accuracy vs real labels",
            title=f"{report['pseudo']}: ECE {cal['ece']:.3f}")
    ax1.legend(loc="upper left", fontsize=8)
    ax2.bar(centers, [b["pixels"] for b in bins], width=0.09, color="#6acc64", edgecolor="black")
    ax2.set(xlim=(0, 1), xlabel="teacher confidence", ylabel="pixels", title="confidence histogram")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def _num(v, fmt: str, scale: float = 1.0) -> str:
    """A figure, or "-" for one that is missing (None after json_safe, or NaN)."""
    return "-" if v is None or v != v else format(scale * v, fmt)


def format_report(r: dict, class_names) -> str:
    """The report for people; a task without a comparison says why instead of printing a figure."""
    what = f"pseudo set {r['pseudo']!r}" if r.get("pseudo") else "teacher " + ", ".join(
        f"{t}={v.get('name', '?')}" for t, v in r.get("teachers", {}).items())
    lines = [f"{what} vs real targets ({r['labeled_frames']} labeled frames"
             f"{', split ' + r['split'] if r['split'] else ''}; store snapshot {r['snapshot']})"]
    if "segm" in r:
        s, c = r["segm"], r["segm"]["calibration"]
        gap = (c["mean_confidence"] or 0) - (c["accuracy"] or 0)
        lines += [f"segm ({s['frames']} frames, {100 * s['coverage']:.1f}% of real-labeled pixels have a pseudo label):",
                  f"  mIoU {_num(s['miou'], '.2f', 100)} %   pixel accuracy {_num(s['pixel_acc'], '.2f', 100)} %",
                  f"  calibration: ECE {_num(c['ece'], '.3f')}, mean confidence {_num(c['mean_confidence'], '.3f')}"
                  f" vs accuracy {_num(c['accuracy'], '.3f')} ({'over' if gap > 0 else 'under'}confident by "
                  f"{abs(gap):.3f})",
                  "  --segm-threshold  kept   accuracy"]
        for t in c["thresholds"]:
            lines.append(f"  {t['threshold']:>16.2f}  {_num(t['kept'], '5.1f', 100)}%  "
                         f"{_num(t['accuracy'], '6.1f', 100)}%")
        lines += iou_table(s["iou"], class_names)
    if "depth" in r:
        d = r["depth"]
        lines.append(f"depth ({d['frames']} frames, {100 * d['coverage']:.1f}% of valid real pixels covered):")
        lines.append(f"  RMSE {_num(d['rmse'], '.3f')} m   abs rel {_num(d['abs_rel'], '.3f')}   "
                     f"delta<1.25 {_num(d['delta1'], '.3f')}   RMSE(log) {_num(d['rmse_log'], '.3f')}")
    lines += [f"{why}; not measured" for why in r.get("not_measured", {}).values()]
    lines += [f"verdict: {v}" for v in r.get("verdict", {}).values()]
    return "\n".join(lines)
