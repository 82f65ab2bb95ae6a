"""`mtdistill ingest folder|nyud|kitti|synthetic`: any source into a store, one commit per ingest.

Thin wrappers: parse options into a source config, open (or create) the store, run pipeline.ingest.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from pipeline.cli.util import SEED, STORE, TEXT, FiniteFloat, SizeType, count, echo_json, user_errors, workers
from stores.classes import CLASS_LISTS, class_list, make_classes
from stores.errors import UserError
from stores.sources.base import SPLITS, SkipLog

FIT = click.Choice(["resize", "crop"])


def common_options(fn):
    """Options every file source shares: size/fit for a new store, skipping bad files, output."""
    for opt in reversed([
        click.option("--size", type=SizeType(), default=None, help="Frame WIDTHxHEIGHT of a NEW store "
                     "(default: the source's usual size); an existing store of another size refuses it."),
        click.option("--fit", type=FIT, default="resize", show_default=True,
                     help="Frames of another size: resize (bilinear / nearest for labels and depth) "
                          "or centre-crop."),
        click.option("--skip-bad", is_flag=True, help="Pass over bad files and record them in the commit."),
        click.option("--replace", is_flag=True, help="Frames already in the store: overwrite an annotation "
                     "that differs from the one given (default: refuse; a missing one is always added)."),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable summary."),
    ]):
        fn = opt(fn)
    return fn


SPLIT_FILE_HELP = ('One frame per line: "<file name> <split>", the split last after a tab, comma or space '
                   '(names may hold spaces); # starts a comment line.')


def suffix_options(fn):
    """--segm-suffix / --depth-suffix: how annotation file names end (photo1_mask.png -> _mask)."""
    for opt in reversed([
        click.option("--segm-suffix", default=None, help="Label files are NAME<suffix>.png (default: NAME, "
                     "or NAME with _mask, _label or _gt)."),
        click.option("--depth-suffix", default=None, help="Depth files are NAME<suffix>.png/.npy (default: "
                     "NAME, or NAME with _depth or _gt)."),
    ]):
        fn = opt(fn)
    return fn


@click.group()
def ingest():
    """Add frames and their real annotations to a store (created on first use).

    \b
    Examples:
      mtdistill ingest synthetic data.ice --preset indoor --frames 500
      mtdistill ingest nyud nyud_root/ nyud.ice
      mtdistill ingest folder photos/ mine.ice --segm labels/ --depth depth/ --depth-scale 1000
    """


def report(result, store_path, as_json: bool) -> None:
    """What the ingest did (pipeline.ingest.format_result): summary on stdout, skipped and unmatched
    files on stderr; or the whole result as JSON."""
    from pipeline.ingest import format_result

    if as_json:
        return echo_json({"store": str(store_path), **result.__dict__})
    out, err = format_result(result, store_path)
    for line in out:
        click.echo(line)
    for line in err:
        click.echo(line, err=True)


def _ingest_files(store, kind, classes, default_size, size, cfg, lister, iterate, skip_bad, as_json,
                  first_image=None, replace=False):
    """Shared flow of the file sources: list (for the total), open/create the store, iterate, commit.

    iterate(cfg, frame_size, num_classes, skips, items) -> frames. A new store without --size or a
    source default takes the size of the first image that reads (EXIF orientation applied)."""
    from pipeline.ingest import check_store_path, first_frame_size, open_or_create, run_ingest
    from stores.repo import FrameStore

    check_store_path(store)
    skips = SkipLog(skip_bad=skip_bad)
    items = lister(cfg, skips)
    if not items:
        raise UserError(f"{getattr(cfg, 'path', getattr(cfg, 'images', '?'))}: no frames found")
    if size:
        frame_size = size
    elif default_size:
        frame_size = default_size
    elif FrameStore.exists(store):
        frame_size = None                                   # an existing store keeps its own size
    else:
        frame_size, items = first_frame_size(items, first_image, skips)
    s = open_or_create(store, classes=classes, frame_size=frame_size, size_asked=size)
    frames = iterate(cfg, s.frame_size, s.num_classes, skips, items)
    result = run_ingest(s, frames, kind=kind, source={**cfg.to_dict(), "size_policy": cfg.fit},
                        skips=skips, total=len(items), replace=replace)
    report(result, store, as_json)


def parse_classes(text: str) -> list[dict]:
    """A known class list name, or a JSON file: a list of names or of {"name", "color"} dicts."""
    if text in CLASS_LISTS:
        return class_list(text)
    import json
    try:
        data = json.loads(Path(text).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--classes {text}: not one of {sorted(CLASS_LISTS)} and not a readable JSON "
                        f"file ({e})") from None
    if not isinstance(data, list) or not data or len(data) > 255:
        raise UserError(f"--classes {text}: expected a JSON list of 1..255 class names")
    if all(isinstance(d, str) for d in data):
        return make_classes(data)
    try:
        return make_classes([d["name"] for d in data], [tuple(d["color"]) for d in data])
    except (KeyError, TypeError):
        raise UserError(f"--classes {text}: entries must be names or {{\"name\", \"color\"}} objects") from None


@ingest.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.argument("store", type=STORE)
@click.option("--segm", type=click.Path(exists=True, file_okay=False), help="Folder of label PNGs (same stems).")
@click.option("--depth", type=click.Path(exists=True, file_okay=False),
              help="Folder of depth maps: 16-bit PNG (see --depth-scale) or .npy metres.")
@click.option("--depth-scale", type=FiniteFloat(0, 1e9, min_open=True), default=1000.0, show_default=True,
              help="16-bit depth PNGs: metres = value / scale.")
@click.option("--label-format", type=click.Choice(["auto", "ids", "color"]), default="auto", show_default=True)
@click.option("--colormap", type=click.Path(exists=True, dir_okay=False),
              help="JSON colour map for colour-coded labels (default: the store's class colours).")
@click.option("--color-tolerance", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option("--classes", "classes_", type=TEXT, default=None,
              help="Class list of a NEW store: nyud40 (default), kitti6, or a JSON file of names; an existing "
                   "store keeps its own.")
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True)
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False), help=SPLIT_FILE_HELP)
@click.option("--recursive", is_flag=True, help="Also read sub-folders.")
@suffix_options
@common_options
@user_errors
def folder(path, store, segm, depth, depth_scale, label_format, colormap, color_tolerance, classes_, split,
           split_file, recursive, segm_suffix, depth_suffix, size, fit, skip_bad, replace, as_json):
    """A folder of RGB images, with optional segmentation and depth folders.

    Annotation files pair with images by name: photo1.png, or photo1_mask.png / _label / _gt (labels),
    photo1_depth.png / _gt (depth), or your own --segm-suffix / --depth-suffix; files that pair with no
    image are listed. Run again with new annotation folders to add annotations to frames already stored.

    \b
    Example:
      mtdistill ingest folder photos/ mine.ice --segm labels/ --depth depth/ --size 640x480
      mtdistill ingest folder photos/ mine.ice --segm photos/ --segm-suffix _seg
    """
    from stores.sources.folder import FolderConfig, iter_folder, list_folder

    cfg = FolderConfig(images=path, segm=segm, depth=depth, recursive=recursive, label_format=label_format,
                       colormap=colormap, color_tolerance=color_tolerance, depth_scale=depth_scale,
                       split=split, split_file=split_file, fit=fit, segm_suffix=segm_suffix,
                       depth_suffix=depth_suffix)
    from stores.repo import FrameStore
    if classes_ is None and FrameStore.exists(store):
        classes = FrameStore.open(store).classes
    else:
        classes = parse_classes(classes_ or "nyud40")

    def iterate(cfg, frame_size, num_classes, skips, items):
        return iter_folder(cfg, frame_size, num_classes, skips, entries=items,
                           class_colors=[tuple(c["color"]) for c in classes])

    _ingest_files(store, "folder", classes, None, size, cfg, list_folder, iterate, skip_bad, as_json,
                  first_image=lambda entry: entry.rgb, replace=replace)


@ingest.command()
@click.argument("path", type=click.Path(exists=True))
@click.argument("store", type=STORE)
@click.option("--train-list", type=click.Path(exists=True, dir_okay=False))
@click.option("--test-list", type=click.Path(exists=True, dir_okay=False))
@click.option("--splits", type=click.Path(exists=True, dir_okay=False),
              help="Official splits.mat, MATLAB v5 or v7.3 (.mat input).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False),
              help="894->40 class table (.npy) for the official .mat.")
@click.option("--unlisted", type=click.Choice([*SPLITS, "skip"]), default="unlabeled", show_default=True)
@click.option("--depth-scale", type=FiniteFloat(0, 1e9, min_open=True), default=5000.0, show_default=True)
@common_options
@user_errors
def nyud(path, store, train_list, test_list, splits, mapping, unlisted, depth_scale, size, fit, skip_bad,
         replace, as_json):
    """NYUDv2: the preprocessed layout (rgb/, masks/, depth/, list files) or nyu_depth_v2_labeled.mat.

    \b
    Example:
      mtdistill ingest nyud nyu_depth_v2_labeled.mat nyud.ice --mapping map894to40.npy --splits splits.mat
    """
    from stores.sources.nyud import NyudConfig, iter_nyud, list_nyud

    cfg = NyudConfig(path=path, train_list=train_list, test_list=test_list, splits=splits, mapping=mapping,
                     unlisted=unlisted, depth_scale=depth_scale, fit=fit)

    def iterate(cfg, frame_size, num_classes, skips, items):
        return iter_nyud(cfg, frame_size, num_classes, skips, items=items)

    _ingest_files(store, "nyud", class_list("nyud40"), (480, 640), size, cfg, list_nyud, iterate,
                  skip_bad, as_json, replace=replace)


@ingest.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.argument("store", type=STORE)
@click.option("--segm", type=click.Path(exists=True, file_okay=False), help="Colour-coded KITTI-6 labels.")
@click.option("--depth", type=click.Path(exists=True, file_okay=False), help="uint16 depth PNGs (value / 256).")
@click.option("--color-tolerance", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option("--split", type=click.Choice(SPLITS), default="train", show_default=True)
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False), help=SPLIT_FILE_HELP)
@suffix_options
@common_options
@user_errors
def kitti(path, store, segm, depth, color_tolerance, split, split_file, segm_suffix, depth_suffix, size, fit,
          skip_bad, replace, as_json):
    """KITTI frames with optional colour-coded KITTI-6 segmentation and sparse depth PNGs.

    \b
    Example:
      mtdistill ingest kitti kitti/image_2 kitti.ice --segm kitti/segm --depth kitti/depth
    """
    from stores.sources.kitti import KittiConfig, iter_kitti, list_kitti

    cfg = KittiConfig(images=path, segm=segm, depth=depth, color_tolerance=color_tolerance, split=split,
                      split_file=split_file, fit=fit, segm_suffix=segm_suffix, depth_suffix=depth_suffix)
    def iterate(cfg, frame_size, num_classes, skips, items):
        return iter_kitti(cfg, frame_size, num_classes, skips, entries=items)

    _ingest_files(store, "kitti", class_list("kitti6"), (352, 1216), size, cfg, list_kitti, iterate,
                  skip_bad, as_json, replace=replace)


def parse_fractions(text: str, what: str):
    """'0.1' (train and val alike) or '0.1,0.5' (train, val)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{what} {text!r}: expected a number or TRAIN,VAL numbers") from None
    return values[0] if len(values) == 1 else values


@ingest.command()
@click.argument("store", type=STORE)
@click.option("--preset", type=click.Choice(["indoor", "outdoor"]), default="indoor", show_default=True,
              help="indoor: NYUDv2-like rooms, 40 classes; outdoor: KITTI-like streets, 6 classes.")
@click.option("--frames", type=count(1, 10**7), default=200, show_default=True,
              help="Frame indices 0..N-1 (indices already in the store are not rendered again).")
@click.option("--size", type=SizeType(min_side=16, max_side=4096), default=None,
              help="WIDTHxHEIGHT (default 640x480 indoor, 1216x352 outdoor).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="World seed.")
@click.option("--style", type=SEED, default=0, show_default=True,
              help="Appearance domain (textures, palettes, lighting).")
@click.option("--segm-fraction", type=TEXT, default="0.5", show_default=True,
              help="Share of train/val frames with segmentation: F or TRAIN,VAL.")
@click.option("--depth-fraction", type=TEXT, default="1.0", show_default=True, help="Same, for depth.")
@click.option("--splits", type=TEXT, default="0.7,0.1,0.1,0.1", show_default=True,
              help="Fractions of train,val,test,unlabeled frames (test always has both annotations).")
@click.option("--clean-depth", is_flag=True, help="Store exact depth instead of the simulated sensor's.")
@click.option("--workers", type=workers(1), default=2, show_default=True,
              help="Rendering processes.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@user_errors
def synthetic(store, preset, frames, size, seed, style, segm_fraction, depth_fraction, splits, clean_depth,
              workers, as_json):
    """The built-in synthetic RGB-D world with exact ground truth and asymmetric annotations.

    \b
    Example:
      mtdistill ingest synthetic data.ice --preset indoor --frames 500 --size 320x240 --segm-fraction 0.1
    """
    from pipeline.ingest import check_store_path, open_or_create, run_ingest
    from stores.sources.synthetic import SyntheticConfig, class_list_for, frame_name, iter_frames

    check_store_path(store)
    try:
        split_fractions = tuple(float(v) for v in splits.split(","))
    except ValueError:
        raise UserError(f"--splits {splits!r}: expected four numbers TRAIN,VAL,TEST,UNLABELED") from None
    cfg = SyntheticConfig(preset=preset, frames=frames, size=size, seed=seed,
                          style=style, segm_fraction=parse_fractions(segm_fraction, "--segm-fraction"),
                          depth_fraction=parse_fractions(depth_fraction, "--depth-fraction"),
                          splits=split_fractions, sensor=not clean_depth)
    s = open_or_create(store, classes=class_list_for(preset), frame_size=cfg.size, size_asked=size)
    if s.frame_size != cfg.size:          # no --size: an existing store renders at its own size
        cfg = dataclasses.replace(cfg, size=s.frame_size)
    present = set(s.root["frames/name"][:].tolist())
    start = next((i for i in range(frames) if frame_name(cfg, i) not in present), frames)
    source = {"path": f"synthetic/{preset}", **{k: (list(v) if isinstance(v, tuple) else v)
                                                for k, v in cfg.__dict__.items()}, "start": start}
    result = run_ingest(s, iter_frames(cfg, start=start, workers=workers), kind="synthetic", source=source,
                        skips=SkipLog(), total=frames - start)
    result.duplicates += start
    report(result, store, as_json)
