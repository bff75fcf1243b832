"""The Ray Serve deployment (``ptune serve --ray``) on a local cluster with two CPU replicas: the same
answers as the single-process server, and each task routed to a replica that already holds it."""

from __future__ import annotations

import socket

import pytest
from test_server import TEXTS, make_prompt, request

ray = pytest.importorskip("ray", reason="Ray Serve is an optional extra: pip install 'ptune[ray]'")
pytestmark = pytest.mark.slow  # a local Ray cluster and two backbone replicas take a minute or more

TASKS = ["alpha", "beta", "gamma", "delta"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(tmp_path, "minilm", replicas=2, limits=Limits(max_resident_mb=64)), name="ptune")
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
    finally:
        serve.shutdown()
        ray.shutdown()
