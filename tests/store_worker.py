"""Run as a separate process by the store tests: ingests or labels into a store, for crash and
concurrency tests with real processes. Usage: store_worker.py MODE STORE SEED N [SLEEP]."""
import sys
import time

import numpy as np
import zarr

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from conftest import ingest, random_frames  # noqa: E402

from stores.repo import FrameStore  # noqa: E402
from stores.schema import create_pseudo  # noqa: E402

mode, path, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sleep = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
store = FrameStore.open(path)

if mode == "ingest-many":  # n separate ingests of 2 frames each
    for i in range(n):
        ingest(store, random_frames(2, seed=seed * 1000 + i), message=f"w{seed} ingest {i}")
elif mode == "ingest-slow":  # one ingest of n frames, announcing progress, so it can be killed midway
    def frames():
        for i, f in enumerate(random_frames(n, seed=seed)):
            if i == n // 2:
                print("halfway", flush=True)
            time.sleep(sleep)
            yield f
    ingest(store, frames(), message=f"slow ingest {seed}")
elif mode == "pseudo-many":  # n commits, each creating a pseudo set
    for i in range(n):
        s = store.writable_session()
        root = zarr.open_group(s.store, mode="a")
        create_pseudo(root, f"p{seed}_{i}", 4, {"tasks": ["segm"]})
        root[f"pseudo/p{seed}_{i}/segm"][:] = np.full((4, *root.attrs["frame_size"]), i % 5, np.uint8)
        store.commit(s, f"w{seed} pseudo {i}", {"kind": "label"})
print("done", flush=True)
