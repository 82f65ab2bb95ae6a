"""Before the labeling job runs: the teacher's classes are checked against the store or the remap
(issue 10 item 11), and the GPU worker plan (item 14) - both without a cluster or a GPU."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import pipeline.label.task as task
from pipeline.label.cluster import LocalPlan, plan_local, task_options
from pipeline.label.job import LabelConfig, run_label
from stores.errors import UserError


class Wide(nn.Module):
    """A segmentation model without a class list: `channels` outputs at 1/4 resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 4, stride=4)

    def forward(self, x):
        return self.conv(x)


def wide19() -> nn.Module:
    torch.manual_seed(0)
    return Wide(19)


def wide5() -> nn.Module:
    torch.manual_seed(0)
    return Wide(5)


def label(store, teacher, **kw):
    return run_label(LabelConfig(store=str(store.path), name="x", teachers=(("segm", teacher),), device="cpu",
                                 **kw))


# ---- item 11 ------------------------------------------------------------------------------------

def test_teacher_with_more_classes_than_the_store_is_refused_before_labeling(store, tmp_path):
    head = store.snapshot_id
    with pytest.raises(UserError) as e:
        label(store, "test_label_plan:wide19")                       # entry point, no class list
    assert str(e.value) == ("test_label_plan.wide19: the teacher outputs 19 classes but the store has 5 "
                            "(c0, c1, c2, ...) and no remap is given; give --remap FILE mapping its classes "
                            "to the store's")
    ts = tmp_path / "wide19.ts"
    torch.jit.script(wide19()).save(str(ts))
    with pytest.raises(UserError, match=r"wide19: the teacher outputs 19 classes but the store has 5"):
        label(store, str(ts))                                        # TorchScript file, no class list
    assert store.reopen().snapshot_id == head and store.reopen().pseudo_sets() == []   # nothing written


def test_remap_must_cover_the_teachers_output_classes(store, tmp_path):
    remap = tmp_path / "r.json"
    remap.write_text('{"teacher_classes": ["a", "b", "c", "d", "e"], "map": {"a": "c1", "b": "c2"}}')
    with pytest.raises(UserError, match=r"outputs 19 classes but the remap .*r.json maps 5$"):
        label(store, "test_label_plan:wide19", remap=str(remap))


def test_matching_teacher_passes_the_check(store):
    from teachers.base import load_teacher

    t = load_teacher("test_label_plan:wide5", "segm", store_classes=store.classes)
    assert t.output_classes(store.frame_size) == 5
    t.check_classes(store.classes, store.frame_size)                 # no error
    with pytest.raises(UserError, match="outputs 5 classes but the store has 6"):
        t.check_classes([f"k{i}" for i in range(6)], store.frame_size)


# ---- item 14 ------------------------------------------------------------------------------------

def test_plan_one_worker_per_gpu_two_shards_in_flight():
    assert plan_local("cuda", 0, 1, gpu_count=4, cores=2) == LocalPlan(4, 2, ("cuda:0", "cuda:1", "cuda:2", "cuda:3"))
    assert plan_local("cuda", 3, 4, gpu_count=2, cores=2) == LocalPlan(3, 4, ("cuda:0", "cuda:1", "cuda:0"))
    assert plan_local("cuda:1", 0, 2, gpu_count=2, cores=2) == LocalPlan(1, 2, ("cuda:1",))
    assert plan_local("cpu", 0, 2, gpu_count=0, cores=1) == LocalPlan(1, 2, ("cpu",))
    assert plan_local("cpu", 0, 2, gpu_count=0, cores=2) == LocalPlan(2, 2, ("cpu",) * 2)       # one per core
    assert plan_local("cpu", 0, 2, gpu_count=0, cores=64) == LocalPlan(4, 2, ("cpu",) * 4)      # capped
    assert plan_local("cpu", 0, 2, gpu_count=0, cores=8, torch_threads=4) == LocalPlan(2, 2, ("cpu",) * 2)
    assert plan_local("cpu", 3, 1, gpu_count=8, cores=2) == LocalPlan(3, 1, ("cpu",) * 3)
    with pytest.raises(UserError, match="--device cuda:2: this machine has 2 CUDA device"):
        plan_local("cuda:2", 0, 2, gpu_count=2, cores=2)
    with pytest.raises(UserError, match="has 0 CUDA device"):
        plan_local("cuda", 0, 2, gpu_count=0, cores=2)


def test_tasks_ask_for_no_resource_and_go_to_gpu_workers_of_a_remote_cluster():
    assert task_options("cuda", ["tcp://a:1", "tcp://b:2"]) == {"workers": ["tcp://a:1", "tcp://b:2"],
                                                              "allow_other_workers": False}
    assert task_options("cuda", []) == {} and task_options("cpu", ["tcp://a:1"]) == {}


def test_each_worker_runs_its_teachers_on_its_own_gpu(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(str(d)))
    monkeypatch.setattr(task, "_pinned", {})
    assert task.worker_device("cuda") == "cuda" and task.pin_device({}, 0) is None
    devices = dict(enumerate(plan_local("cuda", 0, 2, gpu_count=3, cores=2).devices))
    assert task.pin_device(devices, 2) == "cuda:2" and chosen == ["cuda:2"]
    assert task.worker_device("cuda") == "cuda:2" and task.worker_device("cpu") == "cpu"


def start_environ() -> dict:
    """This process's environment as it started (what glibc read), not os.environ as changed since."""
    from pathlib import Path

    return dict(v.split("=", 1) for v in Path("/proc/self/environ").read_text().split("\0") if "=" in v)


def test_local_workers_run_with_the_allocator_settings_and_without_dask_profiler():
    """The LocalCluster's workers start with runtime.ALLOCATOR_ENV (not the nanny's MALLOC_TRIM_THRESHOLD_=65536)
    and no statistical profiler sampling stacks under the GIL. With dask's default HTTP port taken (another
    cluster on the machine), the job prints no port warning."""
    import os
    import socket
    import warnings

    import dask

    from pipeline.label.cluster import open_client
    from pipeline.runtime import ALLOCATOR_ENV

    cfg = LabelConfig(store="unused", name="x", teachers=(("segm", "m:f"),), workers=1, device="cpu")
    with socket.socket() as other, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            other.bind(("127.0.0.1", 8787))                   # else something already holds it: same case
            other.listen()
        except OSError:
            pass
        before = {k: os.environ.get(k) for k in ALLOCATOR_ENV}
        with open_client(cfg) as (client, *_):
            got = client.run(lambda: (dask.config.get("distributed.worker.profile.enabled"), start_environ()))
        assert {k: os.environ.get(k) for k in ALLOCATOR_ENV} == before   # set for the workers' start only
    profile, env = list(got.values())[0]
    assert profile is False and {k: env.get(k) for k in ALLOCATOR_ENV} == ALLOCATOR_ENV
    assert not [w for w in caught if "already in use" in str(w.message)]


def test_allocator_settings_take_on_glibc():
    """mallopt accepts every value of runtime.ALLOCATOR_ENV on glibc (it refuses out-of-range ones); elsewhere
    nothing is changed."""
    import platform

    from pipeline.runtime import keep_freed_memory

    assert keep_freed_memory() is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")


def test_environ_sets_unsets_and_restores_only_its_keys(monkeypatch):
    import os

    from pipeline.runtime import environ

    monkeypatch.setenv("MTD_KEEP", "1")
    monkeypatch.setenv("MTD_GONE", "old")
    monkeypatch.delenv("MTD_NEW", raising=False)
    with environ({"MTD_GONE": None, "MTD_NEW": "2"}):
        assert "MTD_GONE" not in os.environ and os.environ["MTD_NEW"] == "2" and os.environ["MTD_KEEP"] == "1"
        os.environ["MTD_OTHER"] = "3"                        # set inside by someone else: left alone
    assert os.environ["MTD_GONE"] == "old" and "MTD_NEW" not in os.environ
    assert os.environ.pop("MTD_OTHER") == "3"
