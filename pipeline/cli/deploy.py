"""`mtdistill predict`, `export` and `bench`: thin commands over pipeline.deploy.predict, pipeline.deploy.export /
pipeline.deploy.quantize and pipeline.deploy.bench, for a trained student checkpoint (the end of the flow)."""
from __future__ import annotations

import click

from pipeline.cli.util import (BATCH, MAX_PIXELS_PER_BATCH, REF, STORE, TEXT, THREADS, DeviceType,
                               FiniteFloat, OpsetType, SizeType, count, echo_json, in_file, out_file,
                               out_folder, user_errors)
from stores.errors import UserError


@click.command()
@click.argument("checkpoint", type=in_file())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=out_folder(), help="Output directory.")
@click.option("--device", type=DeviceType(), default="auto", show_default=True, help="auto, cpu, cuda, cuda:1...")
@click.option("--threads", type=THREADS, default=None, help="CPU threads (default: torch's).")
@click.option("--depth-range", nargs=2, type=FiniteFloat(0, 1e6), default=None, metavar="MIN MAX",
              help="Fixed depth colour range in metres (default: per image, 1st-99th percentile).")
@click.option("--depth-format", type=click.Choice(["png", "npy"]), default="png", show_default=True,
              help="Raw depth: 16-bit PNG in millimetres (clipped at 65.535 m) or float32 metres .npy.")
@click.option("--amp", is_flag=True, help="bf16 autocast on CUDA (faster; default fp32, same numbers as on CPU).")
@click.option("--overwrite", is_flag=True, help="Replace output files of an earlier run (default: refuse).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list of what was written.")
@user_errors
def predict(checkpoint, images, out, device, threads, depth_range, depth_format, amp, overwrite, as_json):
    """Segment and estimate depth on image files of any size; write pictures and raw outputs.

    Outputs keep the inputs' folders below the folder they share (cam_left/x.png -> OUT/cam_left/x_*);
    existing files in OUT are refused unless --overwrite. Per image NAME: NAME_panel.png (input | segmentation | depth, legend of the classes present),
    NAME_segm_color.png, NAME_depth_color.png (magma, near bright, with a colour bar), NAME_segm.png
    (uint8 class ids) and NAME_depth.png (uint16 mm) or NAME_depth.npy (float32 m).

    \b
    Example:
      mtdistill predict runs/distilled/last.pt photos/*.jpg --out predictions --threads 2
    """
    from pipeline.deploy.predict import predict_files
    from pipeline.runtime import progress_bar

    if depth_range and depth_range[0] >= depth_range[1]:
        raise click.BadParameter(f"{depth_range[0]} {depth_range[1]}: need MIN < MAX",
                                 param_hint="'--depth-range'")

    records = predict_files(checkpoint, images, out, device=device, threads=threads,
                            depth_range=tuple(depth_range) if depth_range else None, depth_format=depth_format,
                            progress=progress_bar, amp=amp, overwrite=overwrite)
    if as_json:
        return echo_json(records)
    for r in records:
        h, w = r["size"]
        lo, hi = r["depth_range"]
        clipped = f"; {r['depth_clipped_px']} px beyond 65.535 m clipped in the PNG" if r["depth_clipped_px"] else ""
        click.echo(f"{r['image']} ({w}x{h}) -> {r['files']['panel']}  depth {lo:.2f}-{hi:.2f} m  "
                   f"classes: {', '.join(r['classes_present'])}{clipped}"
                   + ("  (replaced the earlier files)" if r["replaced"] else ""))
    files = sum(len(r["files"]) for r in records)
    click.echo(f"wrote {files} files for {len(records)} image(s) under {out}")


@click.command("export")
@click.argument("checkpoint", type=in_file())
@click.option("--onnx", "onnx_path", required=True, type=out_file(),
              help="Output ONNX file (the int8 model with --int8).")
@click.option("--opset", type=OpsetType(), default=18, show_default=True, help="ONNX opset.")
@click.option("--int8", is_flag=True, help="Static int8 quantisation (QDQ), calibrated on --calibrate frames.")
@click.option("--calibrate", "calibrate", type=STORE, default=None,
              help="Store whose frames calibrate the int8 model (frames of the target dataset).")
@click.option("--calibrate-frames", type=count(1, 100_000), default=16, show_default=True,
              help="Number of calibration frames (evenly spread over the split).")
@click.option("--calibrate-split", type=TEXT, default="train", show_default=True,
              help="Split to calibrate on (all frames if it is empty).")
@click.option("--ref", type=REF, default=None, help="Store version for --calibrate (default: main).")
@click.option("--threads", type=THREADS, default=None, help="CPU threads for the agreement check.")
@click.option("--json", "as_json", is_flag=True)
@user_errors
def export_cmd(checkpoint, onnx_path, opset, int8, calibrate, calibrate_frames, calibrate_split, ref, threads,
               as_json):
    """Export a student checkpoint to ONNX: input "image" (B,3,H,W) ImageNet-normalised with dynamic
    batch/height/width (>= 64), outputs "segm" (B,C,H/4,W/4) logits and "depth" (B,1,H/4,W/4) metres.

    With --int8 the file is statically quantised, calibrated on frames of a store, and its agreement
    with the fp32 model is reported on those frames and on other frames of the store.

    \b
    Examples:
      mtdistill export runs/nyud/last.pt --onnx student.onnx
      mtdistill export runs/nyud/last.pt --onnx student.int8.onnx --int8 --calibrate nyud.ice --calibrate-frames 32
    """
    from pipeline.checkpoint import read_student
    from pipeline.deploy.export import export_onnx

    if int8 and not calibrate:
        raise UserError("--int8 needs --calibrate STORE (frames of the dataset the student will see)")
    if calibrate and not int8:
        raise UserError("--calibrate is only used with --int8")
    model, ckpt = read_student(checkpoint)
    if not int8:
        path = export_onnx(model, onnx_path, opset=opset)
        return echo_json({"onnx": str(path)}) if as_json else click.echo(f"wrote {path}")

    from pipeline.deploy.quantize import quantize_student, store_calibration
    from stores.repo import FrameStore

    store = FrameStore.open(calibrate, ref)
    names = [c["name"] for c in ckpt.get("classes", store.classes)]
    if model.num_classes != store.num_classes or names != [c["name"] for c in store.classes]:
        raise UserError(f"{calibrate}: store has {store.num_classes} classes ({store.classes[0]['name']}, ...), "
                        f"the checkpoint {checkpoint} {model.num_classes}: calibrate on frames of the "
                        f"student's dataset")
    calib, held = store_calibration(calibrate, calibrate_frames, ref=ref, split=calibrate_split)
    res = quantize_student(model, onnx_path, calib, held, opset=opset, threads=threads)
    if as_json:
        return echo_json(res)
    click.echo(f"wrote {res['int8']} (static int8, calibrated on {len(calib)} frame(s) of {calibrate})")
    for what in ("calibration", "held_out"):
        a = res[what]
        if a:
            click.echo(f"  vs fp32 on {a['frames']} {what.replace('_', '-')} frame(s): segm argmax agreement "
                       f"{100 * a['segm_agreement']:.2f} %, depth mean |diff| {a['depth_mean_diff']:.4f} m "
                       f"(mean depth {a['depth_mean']:.3f} m), max {a['depth_max_diff']:.3f} m")


@click.command()
@click.argument("checkpoint", required=False, type=in_file())
@click.option("--classes", type=count(1, 255), default=40, show_default=True,
              help="Number of classes for random weights (ignored with CHECKPOINT).")
@click.option("--size", type=SizeType(min_side=64), default="640x480", show_default=True,
              help="Input WIDTHxHEIGHT.")
@click.option("--batch", type=BATCH, default=1, show_default=True)
@click.option("--device", type=DeviceType(("cpu", "cuda")), default="cpu", show_default=True)
@click.option("--threads", type=THREADS, default=2, show_default=True, help="CPU threads.")
@click.option("--iters", type=count(1, 100_000), default=10, show_default=True, help="Timed rounds.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def bench(checkpoint, classes, size, batch, device, threads, iters, as_json):
    """Latency / throughput of the student's execution paths (random weights without CHECKPOINT).

    \b
    Example:
      mtdistill bench --size 640x480 --batch 1 --device cpu --threads 2
    """
    from pipeline.deploy.bench import bench_student, format_table

    if batch * size[0] * size[1] > MAX_PIXELS_PER_BATCH:
        raise click.BadParameter(f"{batch} x {size[1]}x{size[0]} pixels is more than {MAX_PIXELS_PER_BATCH} "
                                 f"pixels per batch", param_hint="'--batch' / '--size'")
    result = bench_student(classes, size=size, batch=batch, device=device, threads=threads,
                           checkpoint=checkpoint, iters=iters)
    if as_json:
        echo_json(result)
    else:
        click.echo(format_table(result))
