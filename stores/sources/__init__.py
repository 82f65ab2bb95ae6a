"""Ingest sources: user files (folder, nyud, kitti) or the built-in synthetic world -> validated `Frame`s.

First step of the flow (`mtdistill ingest ...`); stores/writer.py appends what a source yields.
"""
