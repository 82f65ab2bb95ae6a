"""Teacher networks and loaders: the experts that label frames offline (see DESIGN.md, data flow).

resnet38.py (segmenter), depth.py (depth experts), archs.py (names -> configs/models), remap.py (ontology
remapping), external.py (checkpoint / TorchScript / ONNX / entry-point files), base.py (Teacher,
load_teacher, save_teacher).
"""
from teachers.base import Teacher, load_teacher, save_teacher
from teachers.remap import Remap, load_remap

__all__ = ["Teacher", "load_teacher", "save_teacher", "Remap", "load_remap"]
