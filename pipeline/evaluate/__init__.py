"""Measuring models on a store: metrics (mIoU, depth errors), evaluate (a checkpoint on a split), qa
(a pseudo-label set against real targets)."""
