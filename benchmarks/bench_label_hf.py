"""Benchmark: a Hugging Face teacher (`hf:DIR`) through `mtdistill label` against its forward pass alone.

Where it sits: the HF adapter (teachers/hf.py: the model's own image processor, forward, upsampling to
the frame) inside the labeling job (pipeline/label/job.py), as bench_label.py measures it for our own
ResNet-38. The teacher is a SegFormer with MiT-b0's widths (random weights built from its config, saved
with save_pretrained: no download), its processor resizing to the frame size. Prints forward-only
frames/s (Teacher.predict on frames already in memory, shard by shard, in a fresh process), end-to-end
labeling frames/s (cluster start excluded) and their ratio over interleaved rounds, headlined by the median
of each round's own ratio (target >= 0.9; bench_label.compare): at --threads torch threads with 1 local
worker, and at all cores, where `label` runs its default plan (cluster.plan_local: on up to 4 cores one
1-thread worker per core) and the forward alone uses every core.
With --device cuda: the forward alone on the GPU against `label --device cuda`, for --model segformer-b0 (the
default) or depth-anything-small (Depth Anything V2 Small's config: DINOv2-S backbone, its processor at 518
pixels keeping the aspect ratio; metric, so no anchoring pass).
Usage: python benchmarks/bench_label_hf.py [--frames 256 --size 128x128 --batch 8 --threads 1 --rounds 5]
                                           [--device cuda --model segformer-b0|depth-anything-small]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

import torch
from bench_label import compare, default_plan, forward_only, gpu_rounds, label, make_store, stage_shares

from pipeline.label.cluster import cpu_count
from stores.classes import NYUD40_NAMES


def make_segformer(folder: Path, size) -> str:
    """MiT-b0-sized SegFormer over the 40 NYUDv2 class names; processor resizes to `size` (H, W)."""
    import transformers as tf

    torch.manual_seed(0)
    names = list(NYUD40_NAMES)
    cfg = tf.SegformerConfig(hidden_sizes=[32, 64, 160, 256], decoder_hidden_size=256, num_labels=len(names),
                             id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    tf.SegformerForSemanticSegmentation(cfg).save_pretrained(folder)
    tf.SegformerImageProcessor(size={"height": size[0], "width": size[1]}).save_pretrained(folder)
    return f"hf:{folder}"


def make_depth_anything_small(folder: Path) -> str:
    """Depth Anything V2 Small's architecture (DINOv2-S/14 backbone, DPT head), random weights, metric depth
    up to 80 m; its processor as the published model's (518 pixels, aspect ratio kept, multiple of 14)."""
    import transformers as tf

    torch.manual_seed(0)
    backbone = tf.Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                               image_size=518, patch_size=14, out_indices=[3, 6, 9, 12], apply_layernorm=True,
                               reshape_hidden_states=False)
    cfg = tf.DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                                 neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
                                 depth_estimation_type="metric", max_depth=80)
    tf.DepthAnythingForDepthEstimation(cfg).save_pretrained(folder)
    tf.DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                         resample=3, do_pad=False).save_pretrained(folder)
    return f"hf:{folder}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--size", default="128x128", help="WIDTHxHEIGHT")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (forward and the labeling worker)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="segformer-b0", choices=["segformer-b0", "depth-anything-small"])
    args = ap.parse_args()
    if args.model != "segformer-b0" and args.device != "cuda":
        ap.error(f"--model {args.model} is measured on a GPU only: add --device cuda")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    w, h = (int(v) for v in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="bench_label_hf_"))
    try:
        import transformers
        print(f"HF labeling benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
              f"{torch.__version__}, transformers {transformers.__version__}, {args.threads} torch thread(s), {args.device}")
        store = make_store(tmp / "syn.ice", args.frames, (h, w), synthetic=True)
        if args.device == "cuda":
            task = "segm" if args.model == "segformer-b0" else "depth"
            spec = (make_segformer(tmp / "segformer", (h, w)) if task == "segm"
                    else make_depth_anything_small(tmp / "depth-anything"))
            print(f"store: {store.num_frames} synthetic frames {w}x{h}; teacher {args.model} (random weights); batch "
                  f"{args.batch}; {args.rounds} interleaved rounds")
            print(gpu_rounds(store, spec, args.batch, args.rounds, task))
            return
        spec = make_segformer(tmp / "segformer", (h, w))
        print(f"store: {store.num_frames} synthetic frames {w}x{h}; teacher SegFormer MiT-b0 widths, 40 classes "
              f"matched by name; batch {args.batch}; {args.rounds} interleaved rounds")
        cores = cpu_count()
        fwd, e2e, fwd_all, plan = [], [], [], []
        for k in range(args.rounds):                 # interleaved, so load from elsewhere hits all alike
            fwd.append(forward_only(store, spec, args.batch, args.threads))
            e2e.append(label(store, spec, f"hf-{k}", args.batch, torch_threads=args.threads))
            fwd_all.append(forward_only(store, spec, args.batch, cores))
            plan.append(label(store, spec, f"hf-default-{k}", args.batch, workers=0))
        print(compare(f"{args.threads} torch thread(s), label 1 worker", fwd, e2e, store, 0.9))
        print(compare(f"all cores: forward at {cores} threads, label default plan ({default_plan(cores)})",
                      fwd_all, plan, store, 0.9))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
