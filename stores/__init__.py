"""DATA layer: the versioned frame store and everything that fills it (see DESIGN.md, data flow).

Ingest writes here (sources/ -> writer.py -> repo.py), labeling adds pseudo/<name>/ groups, training and
evaluation read a fixed snapshot (dataset.py, merge.py). Imports no model and no process.
"""
