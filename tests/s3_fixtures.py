"""Fixtures of the object-storage tests: a local S3-compatible server (moto's standalone server, started
on 127.0.0.1 once per test run and stopped at its end), one fresh bucket per test, the AWS_* variables
that point the code at it, and a dask cluster of separately started processes (`dask scheduler`,
`dask worker`) whose workers reach the server. Used as `pytest_plugins = ("s3_fixtures",)`; the tests
reach the helpers through the fixtures (S3Server), so this module is never imported before pytest
registers it.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, f"{what} exited with {proc.returncode}"
            assert time.time() < deadline, f"{what} did not listen on port {port} in {timeout} s"
            time.sleep(0.1)


def stop(procs) -> None:
    """End the processes a fixture started (each in its own process group), politely, then for sure."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


class S3Server:
    """The test S3 server: `vars` (the AWS_* variables that point at it) and helpers through boto3."""

    def __init__(self, port: int):
        self.vars = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                     "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true"}

    def client(self):
        """A boto3 S3 client of the server (with credentials)."""
        import boto3

        v = self.vars
        return boto3.client("s3", endpoint_url=v["AWS_ENDPOINT_URL"], region_name=v["AWS_REGION"],
                            aws_access_key_id=v["AWS_ACCESS_KEY_ID"], aws_secret_access_key=v["AWS_SECRET_ACCESS_KEY"])

    def make_bucket(self, name: str) -> str:
        """Create bucket `name`; returns the name."""
        self.client().create_bucket(Bucket=name)
        return name

    def allow_public_reads(self, bucket: str) -> None:
        """A bucket policy that lets anyone (unsigned requests) list and read `bucket`."""
        import json

        arn = f"arn:aws:s3:::{bucket}"
        self.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
             "Resource": [arn, f"{arn}/*"]}]}))

    def list_keys(self, bucket: str) -> list[str]:
        """Every object key in `bucket`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    free_port = staticmethod(free_port)


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server started for this test run on 127.0.0.1 (stopped at the end), as an S3Server.
    Skips when moto[server] is not installed."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install -e '.[test]')")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc, "moto_server")
        yield S3Server(port)
    finally:
        stop([proc])


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> S3Server:
    """The server, its variables set in this process's environment for the test (and the processes it starts)."""
    for k, v in s3_server.vars.items():
        monkeypatch.setenv(k, v)
    return s3_server


@pytest.fixture
def bucket(s3_env, request) -> str:
    """A new, empty bucket named after the test."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    return s3_env.make_bucket(f"{name}-{time.time_ns() % 10**9}")


@pytest.fixture(scope="module")
def dask_cluster(s3_server, tmp_path_factory):
    """Address of a dask cluster started as separate commands: `dask scheduler` and two `dask worker`
    processes (one thread each), with the S3 variables and this checkout (and the tests' teachers) on
    their PYTHONPATH. MTD_SLOW_FILE / MTD_HOLD_FILE (see test_label_teachers) are files under a fresh folder."""
    port = free_port()
    slow = tmp_path_factory.mktemp("dask-slow") / "seconds"
    env = {**os.environ, **s3_server.vars, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
           "MTD_SLOW_FILE": str(slow), "MTD_HOLD_FILE": str(slow.with_name("hold")), "OMP_NUM_THREADS": "1"}
    common = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True,
              "cwd": tmp_path_factory.mktemp("dask-cwd")}
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **common)]
    try:
        wait_for_port(port, procs[0], "dask scheduler")
        procs += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                    "--name", f"w{i}"], **common) for i in range(2)]
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=300)      # a loaded 2-core machine is slow
        yield address, slow
    finally:
        stop(procs)
