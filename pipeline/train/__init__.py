"""Training (`mtdistill train`, `mtdistill teacher train`): the one loop (loop.py) over merged targets,
its augmentation (augment.py) and teacher training on top of it (teacher.py)."""
