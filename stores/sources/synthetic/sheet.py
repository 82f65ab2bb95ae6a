"""Contact sheets of the synthetic world: rows of RGB | segmentation colours | clean depth | sensor depth.

Sits beside stores/sources/synthetic/__init__.py as its visual check (docs/contact_sheet_*.png are made by
`python -m stores.sources.synthetic.sheet`). Depth uses turbo on 1 - sqrt(depth / max depth) (near = red,
far = blue);
pixels without depth are black, in both the clean and the sensor column.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from stores.classes import palette
from stores.sources.synthetic import PRESETS, class_list_for, render_frame


def depth_colours(depth: np.ndarray, max_depth: float, cmap: str = "turbo") -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8; 0 (no depth) -> black."""
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    x = 1.0 - np.sqrt(np.clip(depth / max_depth, 0, 1))        # near = warm, far = dark blue
    out = lut[np.clip(x * 255, 0, 255).astype(np.uint8)]
    out[depth <= 0] = 0
    return out


def contact_sheet(preset: str = "indoor", indices=range(6), seed: int = 0, size=None, style: int = 0,
                  path: str | Path | None = None, gap: int = 4) -> np.ndarray:
    """Render frames `indices` and tile them one per row; write a PNG to `path` if given. -> uint8 image."""
    lut = palette(class_list_for(preset))
    max_depth = PRESETS[preset][2]
    rows = []
    for i in indices:
        rgb, segm, clean, sensor = render_frame(preset, i, seed, size, style)
        cells = [rgb, lut[segm], depth_colours(clean, max_depth), depth_colours(sensor, max_depth)]
        h = rgb.shape[0]
        sep = np.full((h, gap, 3), 255, np.uint8)
        rows.append(np.concatenate([x for c in cells for x in (c, sep)][:-1], axis=1))
    sep = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    sheet = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
    if path is not None:
        Image.fromarray(sheet).save(path, optimize=True)
    return sheet


def main(argv=None) -> None:
    """python -m stores.sources.synthetic.sheet [OUT_DIR]: write docs/contact_sheet_{indoor,outdoor}.png."""
    out = Path((argv or sys.argv[1:] or ["docs"])[0])
    out.mkdir(parents=True, exist_ok=True)
    contact_sheet("indoor", range(6), size=(240, 320), path=out / "contact_sheet_indoor.png")
    contact_sheet("outdoor", range(5), size=(176, 608), path=out / "contact_sheet_outdoor.png")


if __name__ == "__main__":
    main()
