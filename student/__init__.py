"""MODEL: the real-time student, Multi-Task Light-Weight RefineNet on MobileNet-v2 (Nekrasov et al. 2019).

Trained by pipeline/train on merged real + pseudo targets, used by evaluate / predict / export / bench.
encoder.py (taps), refinenet.py (CRP, Decoder), model.py (heads, build_student, normalize), losses.py.
Imports nothing of the project.
"""
