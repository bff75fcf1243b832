"""The Ray Serve deployment (``ptune serve --ray``) on a local cluster with two CPU replicas: the same
answers as the single-process server, and each task routed to a replica that already holds it."""

from __future__ import annotations

import socket

import pytest
import httpx
from test_serve_pages import assert_offline
from test_server import TEXTS, make_prompt, request

ray = pytest.importorskip("ray", reason="Ray Serve is an optional extra: pip install 'ptune[ray]'")

TASKS = ["alpha", "beta", "gamma", "delta"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_replica_on_cuda_asks_ray_for_one_gpu_and_others_for_none():
    from ptune.serve.ray_app import replica_resources

    assert replica_resources({"device": "cuda:1", "dtype": "bf16"}, 2.0) == {"num_cpus": 2.0, "num_gpus": 1}
    assert replica_resources({"device": "cuda"}, 1.0) == {"num_cpus": 1.0, "num_gpus": 1}
    assert replica_resources({"device": "auto", "device_map": "auto"}, 1.0)["num_gpus"] == 1
    for device in ("cpu", "auto", "mps"):
        assert replica_resources({"device": device}, 1.0) == {"num_cpus": 1.0}


@pytest.mark.slow  # a local Ray cluster and two backbone replicas take a minute or more
def test_two_replicas_answer_as_the_single_process_server(minilm, tmp_path):
    from fastapi.testclient import TestClient
    from ray import serve

    from ptune.serve.app import Limits, create_app
    from ptune.serve.ray_app import build_app

    for i, name in enumerate(TASKS):
        make_prompt(minilm, tmp_path, name, "deep" if i % 2 == 0 else "prompt", seed=30 + i)
    (tmp_path / "broken.safetensors").write_bytes(b"not a prompt file")
    items = [{"task": task, "text": text} for text in TEXTS[:2] for task in TASKS]
    with TestClient(create_app(tmp_path, minilm)) as client:  # the single-process server's app, in process
        answer = client.post("/predict", json={"items": items})
        assert answer.status_code == 200
        single = answer.json()
        single_unknown = client.post("/predict", json={"task": "nope", "texts": ["x"]}).json()
        single_neighbours = {task: client.get(f"/tasks/{task}/neighbours?k=3").json() for task in TASKS[:2]}

    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(tmp_path, "minilm", replicas=2, limits=Limits(max_resident_mb=64),
                            load={"device": "cpu", "dtype": "fp32"}), name="ptune")
        status, got = request(port, "/predict", {"items": items})
        assert status == 200
        for mine, theirs in zip(got["predictions"], single["predictions"]):
            assert mine["label"] == theirs["label"]
            assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-5)
        status, body = request(port, "/predict", {"task": "nope", "texts": ["x"]})
        assert status == 404 and body == single_unknown
        status, body = request(port, "/tasks")
        assert sorted(t["task"] for t in body["tasks"]) == sorted(TASKS) and "broken" in body["failed"]
        for _ in range(3):  # repeated requests go where their task already is: no task loads twice
            for task in TASKS:
                assert request(port, "/predict", {"task": task, "texts": TEXTS[:1]})[0] == 200
        health = request(port, "/health")[1]
        assert health["loads"] == len(TASKS), health
        assert all(r["resident_mb"] <= 64 for r in health["replicas"])
        assert all((r["device"], r["dtype"]) == ("cpu", "float32") for r in health["replicas"]), health
        for task, theirs in single_neighbours.items():  # the playground's neighbours view, through the router
            status, body = request(port, f"/tasks/{task}/neighbours?k=3")
            assert status == 200 and body["task"] == task and body["space"] == theirs["space"]
            assert [p["tokens"] for p in body["positions"]] == [p["tokens"] for p in theirs["positions"]]
        assert request(port, "/tasks/nope/neighbours")[0] == 404
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for page in ("/", "/docs", "/redoc"):  # the playground and offline API docs, as the single server's
                assert_offline(client, page)
    finally:
        serve.shutdown()
        ray.shutdown()
