"""`mtdistill review`, `mtdistill export-for-review` and `mtdistill ingest review`: look at the
pseudo-labels, send the doubtful ones to a labeling tool, take the corrected masks back as real labels.

Thin wrappers over pipeline/review (page, export) and pipeline/ingest with the review source
(stores/sources/review.py).
"""
from __future__ import annotations

import functools
import http.server
from pathlib import Path

import click

from pipeline.cli.util import (
    REF,
    STORE,
    TEXT,
    count,
    echo_json,
    out_folder,
    user_errors,
)


@click.command()
@click.argument("store", type=STORE)
@click.option("--pseudo", type=TEXT, required=True, help="Pseudo-label set to review.")
@click.option("--out", type=out_folder(), default=None, help="Folder of the page (default: review-<pseudo>).")
@click.option("--sort", type=TEXT, default="confidence", show_default=True,
              help="First order of the frames: confidence (lowest first) | disagreement (with real labels, "
                   "highest first) | class:NAME (largest share first); the page re-sorts too.")
@click.option("--limit", type=count(1), default=None, help="Only the first N frames in that order.")
@click.option("--ref", type=REF, default="main", show_default=True)
@click.option("--serve", is_flag=True, help="Also serve the page on http://127.0.0.1:PORT until Ctrl-C.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@user_errors
def review(store, pseudo, out, sort, limit, ref, serve, port):
    """Write a static HTML page to look at a pseudo-label set (opens from disk, works offline).

    Per frame: RGB, real annotation where there is one, pseudo segmentation and depth with their
    confidences; overlays toggled with the key o or a click; frames sorted by confidence, disagreement
    with real labels or a class's share; the qa figures on top.

    \b
    Example:
      mtdistill review data.ice --pseudo teachers-v1 --out review/ --sort disagreement
    """
    from pipeline.review.page import write_review
    from stores.repo import FrameStore

    path = write_review(FrameStore.open(store, ref), pseudo, out or f"review-{pseudo}", sort, limit)
    click.echo(f"wrote {path} (open it in a browser)")
    if serve:
        with page_server(path.parent, port) as httpd:
            click.echo(f"serving on http://127.0.0.1:{httpd.server_address[1]}/{path.name} (Ctrl-C stops)")
            try:
                httpd.serve_forever()
            except KeyboardInterrupt:
                pass


def page_server(folder, port: int) -> http.server.ThreadingHTTPServer:
    """An HTTP server of the files under `folder` on 127.0.0.1:`port` (0: any free port), not yet serving;
    a port in use is one UserError line."""
    from stores.errors import UserError

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as e:
        raise UserError(f"--port {port}: cannot serve on 127.0.0.1 ({e.strerror or e})") from None


@click.command("export-for-review")
@click.argument("store", type=STORE)
@click.option("--pseudo", type=TEXT, required=True, help="Pseudo-label set whose masks are the starting point.")
@click.option("--select", "select_", type=TEXT, default="lowest-confidence:200", show_default=True,
              help="Which frames without a real label: lowest-confidence:N | class:NAME:N.")
@click.option("--format", "fmt", type=click.Choice(["cvat", "folder"]), default="cvat", show_default=True,
              help='cvat: CVAT "Segmentation mask 1.1" (colour PNGs, labelmap.txt) + images; '
                   "folder: images + class-id PNGs.")
@click.option("--out", type=out_folder(), required=True, help="New (or empty) folder to write.")
@click.option("--round", "round_", type=TEXT, default=None,
              help="Name of this review round, recorded in the version the corrections make "
                   "(default: review-<pseudo>-<date>).")
@click.option("--ref", type=REF, default="main", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@user_errors
def export_for_review(store, pseudo, select_, fmt, out, round_, ref, as_json):
    """Write the most doubtful frames with their pseudo segmentation for correction in a labeling tool.

    Only frames without a real segmentation are chosen. The folder holds the images, the masks, and
    manifest.json tying every file to its frame and the store version; bring the corrected masks
    back with `mtdistill ingest review`.

    \b
    Example:
      mtdistill export-for-review data.ice --pseudo teachers-v1 --select lowest-confidence:200 --out fix/
      # correct fix/SegmentationClass/*.png (CVAT: create a task from fix/images, upload fix/annotations.zip)
      mtdistill ingest review fix/ data.ice
    """
    from pipeline.review.export import export_for_review as run
    from stores.repo import FrameStore

    manifest = run(FrameStore.open(store, ref), pseudo, out, select_, fmt, round_)
    if as_json:
        return echo_json(manifest)
    click.echo(f"wrote {len(manifest['frames'])} frame(s) of {pseudo!r} for review round "
               f"{manifest['round']!r} to {out} ({fmt}); correct the masks in {Path(out) / manifest['masks']}, "
               f"then: mtdistill ingest review {out} {store}")


@click.command("review")
@click.argument("export", type=click.Path(exists=True, file_okay=False))
@click.argument("store", type=STORE)
@click.option("--masks", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of the corrected masks (default: the export's own mask folder); a CVAT export "
                   "folder holding SegmentationClass/ works as it is.")
@click.option("--skip-bad", is_flag=True, help="Pass over bad or refused masks and record them in the commit.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@user_errors
def ingest_review(export, store, masks, skip_bad, as_json):
    """Corrected masks of an export-for-review folder -> real segmentation of those frames, one version.

    Masks pair with frames through the export's manifest.json; a mask of a frame that changed since
    the export (gone from the store, or given a real segmentation meanwhile) is refused, naming it.

    \b
    Example:
      mtdistill ingest review fix/ data.ice
      mtdistill ingest review fix/ data.ice --masks cvat_download/
    """
    from pipeline.cli.ingest import report
    from pipeline.ingest import run_ingest
    from stores.repo import FrameStore
    from stores.sources.base import SkipLog
    from stores.sources.review import iter_review, read_manifest, review_masks

    s = FrameStore.open(store)
    manifest = read_manifest(export, s)
    skips = SkipLog(skip_bad=skip_bad)
    pairs = review_masks(export, manifest, masks, skips)
    source = {"path": str(export), "masks": masks, "round": manifest["round"], "pseudo": manifest["pseudo"],
              "export_snapshot": manifest["snapshot"], "format": manifest["format"]}
    result = run_ingest(s, iter_review(s, manifest, pairs, skips), kind="review", source=source, skips=skips,
                        total=len(pairs))
    report(result, store, as_json)
