"""The review page: one self-contained static HTML file (no server, no network) that shows every labeled
frame of a pseudo set: RGB, real annotation, pseudo segmentation and depth with their confidences, an
overlay toggled by key or click, frames sortable by mean confidence, disagreement with real labels or
the share of a class, and the qa figures (per-class IoU, reliability plot, depth error) on top.

Flow: stats.py (per-frame figures) -> thumbs.py (pictures next to the page, lazy-loaded) -> **write_review**
fills page.html's template with one JSON blob and the qa header (pipeline/evaluate/qa.py).
"""
from __future__ import annotations

import html
import json
from importlib.resources import files
from pathlib import Path

import numpy as np

from pipeline.evaluate.qa import quality_report, reliability_plot
from pipeline.review.stats import frame_stats, order, parse_sort
from pipeline.review.thumbs import thumb_size, write_thumbs
from pipeline.runtime import json_safe, progress_bar
from stores.errors import UserError
from stores.files import atomic_write_text
from stores.schema import SPLIT_NAMES

PAGE = "index.html"
# Headless Chromium flags to open the page as root on a machine without network (the browser test, the
# benchmark): without the background-networking ones a closed network refuses many connections.
HEADLESS_CHROMIUM = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync")


def write_review(store, pseudo: str, out, sort: str = "confidence", limit: int | None = None) -> Path:
    """Write the review page of pseudo set `pseudo` of `store` (a FrameStore, or a store path opened at
    main) into folder `out` (created; earlier pages and thumbnails there are overwritten): out/index.html,
    out/thumbs/*.webp, out/reliability.png when segmentation was measured. The page lists the `limit`
    first frames (default all) in `sort` order ('confidence' | 'disagreement' | 'class:NAME'). Returns
    the page's path. UserError for a bad sort or a set with nothing labeled; StoreError for an unknown set."""
    from stores.repo import FrameStore

    store = store if isinstance(store, FrameStore) else FrameStore.open(store)
    kind, cls = parse_sort(sort, store.classes)
    out = Path(out)
    stats = frame_stats(store, pseudo)
    rows = order(stats, kind, cls)[:limit]
    with progress_bar("review thumbnails", len(rows)) as advance:
        kinds = write_thumbs(store, pseudo, stats.index[rows], out, advance)
    data = page_data(store, pseudo, stats, rows, kinds, sort)
    page = template().replace("{{TITLE}}", html.escape(f"review: {pseudo} @ {store.path.name}"))
    page = page.replace("{{HEADER}}", qa_header(store, pseudo, out))
    page = page.replace("{{DATA}}", json.dumps(data, separators=(",", ":")).replace("</", "<\\/"))
    return atomic_write_text(out / PAGE, page)


def template() -> str:
    """page.html, the page's markup, style and script, with {{TITLE}}, {{HEADER}} and {{DATA}} slots."""
    return files("pipeline.review").joinpath("page.html").read_text(encoding="utf-8")


def page_data(store, pseudo: str, stats, rows, kinds: dict, sort: str) -> dict:
    """The page's JSON blob: store facts, classes, thumbnail size and one compact record per frame:
    i index, n name, s split, c mean confidence, d disagreement (null: no real label), k thumbnail kinds,
    sh {class id: share in per mille} of the classes present."""
    names = store.root["frames/name"][:]
    splits = store.splits()
    tw, th = thumb_size(store.frame_size)
    frames = []
    for r in rows:
        i = int(stats.index[r])
        sh = np.round(stats.shares[r] * 1000).astype(int)
        frames.append({"i": i, "n": str(names[i]), "s": SPLIT_NAMES[int(splits[i])],
                       "c": round(float(stats.mean_conf[r]), 4), "d": round(float(stats.disagreement[r]), 4),
                       "k": kinds[i], "sh": {str(c): int(v) for c, v in enumerate(sh) if v}})
    return json_safe({"store": str(store.path), "snapshot": store.snapshot_id, "pseudo": pseudo,
                      "sort": sort, "thumb": [tw, th], "labeled": len(stats.index),
                      "classes": [{"id": c["id"], "name": c["name"], "color": c["color"]} for c in store.classes],
                      "frames": frames})


def qa_header(store, pseudo: str, out: Path) -> str:
    """HTML of the qa figures: segmentation mIoU, calibration and per-class IoU with the reliability plot,
    depth RMSE / abs rel / delta1 against real depth; a task without real targets says why."""
    try:
        r = json_safe(quality_report(store, pseudo))
    except UserError as e:
        return f'<p class="qa-none">qa: {html.escape(str(e))}</p>'
    parts = []
    if "segm" in r:
        s, c = r["segm"], r["segm"]["calibration"]
        reliability_plot(r, out / "reliability.png")
        rows = "".join(f"<tr><td>{html.escape(cl['name'])}</td><td>{_pct(s['iou'][k])}</td></tr>"
                       for k, cl in enumerate(store.classes) if k < len(s["iou"]))
        parts.append(f'<div class="qa-segm"><h2>segmentation vs real labels ({s["frames"]} frames)</h2>'
                     f'<p>mIoU {_pct(s["miou"])} %, pixel accuracy {_pct(s["pixel_acc"])} %, ECE '
                     f'{_num(c["ece"])}</p><details><summary>per-class IoU</summary><table class="iou">'
                     f'<tr><th>class</th><th>IoU %</th></tr>{rows}</table></details>'
                     f'<img class="plot" src="reliability.png" alt="reliability plot"></div>')
    if "depth" in r:
        d = r["depth"]
        parts.append(f'<div class="qa-depth"><h2>depth vs real depth ({d["frames"]} frames)</h2>'
                     f'<p>RMSE {_num(d["rmse"])} m, abs rel {_num(d["abs_rel"])}, delta&lt;1.25 '
                     f'{_num(d["delta1"])}</p></div>')
    parts += [f'<p class="qa-none">{html.escape(why)}; not measured</p>' for why in r["not_measured"].values()]
    return "".join(parts)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"
