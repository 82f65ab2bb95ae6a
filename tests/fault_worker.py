"""Run as a separate process by tests/test_faults_store.py: creates / ingests stores so that tests can
race two creations or kill -9 one midway. Usage: fault_worker.py MODE STORE SEED N [START_AT]."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CLASSES, H, W, random_frames  # noqa: E402

import stores.repo  # noqa: E402
from pipeline.ingest import open_or_create, run_ingest  # noqa: E402
from stores.sources.base import SkipLog  # noqa: E402

mode, path, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
start_at = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0

if mode == "create-hang":  # the repository exists, its layout commit never comes: kill -9 it here
    def hang(*args, **kwargs):
        print("building", flush=True)
        time.sleep(600)
    stores.repo.create_layout = hang
time.sleep(max(0.0, start_at - time.time()))   # both racers reach creation at the same moment
store = open_or_create(path, classes=CLASSES, frame_size=(H, W))
result = run_ingest(store, random_frames(n, seed=seed), kind="test", source={"path": "w"}, skips=SkipLog())
print("done", result.added, flush=True)
