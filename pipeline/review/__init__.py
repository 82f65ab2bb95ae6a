"""Review of pseudo-labels by people: a static HTML page of the labeled frames (page.py, thumbs.py),
and the doubtful frames exported to a labeling tool for correction (export.py); the corrected masks come
back through `mtdistill ingest review` (stores/sources/review.py).

Flow: `mtdistill label` -> **review** (stats.py: per-frame mean confidence, disagreement with real
labels, class shares; page.py) -> **export-for-review** -> people correct masks in CVAT or any editor ->
`ingest review` (real annotations, one new version) -> `train` again.
"""
from pipeline.review.page import write_review  # noqa: F401 - the one call the demo report needs
