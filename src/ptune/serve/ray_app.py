"""Past one machine: the server's HTTP API on Ray Serve, replicas routed by task (``ptune serve --ray``).

Every ``PromptReplica`` holds the backbone and a bounded set of prompts (a ``TaskRegistry``) and
batches the calls it gets across tasks, as the single-process server does. The ``Router`` (no model)
parses a request as that server does, splits it by task and calls the replicas once per task with the
task as Ray Serve's multiplexed model id: Ray routes the call to a replica that already holds that
task when one does (``@serve.multiplexed``), so each task is loaded on few replicas. The folder of
prompt files must be readable at the same path on every node (a shared file system). The Router also
serves the playground (``/``, as far as /predict and the neighbours go: generation is not deployed on
Ray) and the offline ``/docs`` and ``/redoc``.

Devices: each replica loads the backbone with the server's ``--device``/``--dtype``/``--quantize``; a
replica on ``cuda`` asks Ray for one GPU (Ray shows an actor only the GPUs it asked for, so ``auto``
resolves to the CPU in a replica that asked for none).
"""

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import Query, Request
from ray import serve

from ptune.errors import PtuneError
from ptune.model import placement
from ptune.serve.app import MAX_NEIGHBOURS, Limits, prompt_neighbours
from ptune.serve.pages import add_pages, offline_app
from ptune.serve.batcher import Batcher
from ptune.serve.malloc import limit_malloc
from ptune.serve.read_ahead import TASK_NAME
from ptune.serve.registry import MB, TaskRegistry
from ptune.serve.requests import ClientError, example, items, json_error, parse, unknown, unservable


def rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux; None elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return None


def routing_slots(folder: Path, max_resident_mb: float | None, floor: int = 16) -> int:
    """How many tasks a replica reports as held to Ray's router: the budget over the folder's mean file
    size (every file when there is no budget)."""
    sizes = [entry.stat().st_size for entry in os.scandir(folder) if entry.name.endswith(".safetensors")]
    if not sizes:
        return floor
    if max_resident_mb is None:
        return max(floor, len(sizes))
    return max(floor, int(max_resident_mb * MB / (sum(sizes) / len(sizes))))


def replica_resources(load: dict, replica_cpus: float) -> dict[str, float]:
    """Ray's actor resources for a replica that loads the backbone with ``load`` (``load_backbone``'s device
    options): one GPU for ``cuda``/``cuda:N`` (Ray numbers the GPUs it hands an actor from 0, so ``cuda:N``
    becomes that GPU), none otherwise."""
    gpu = str(load.get("device", "auto")).startswith("cuda") or load.get("device_map") is not None
    return {"num_cpus": replica_cpus, **({"num_gpus": 1} if gpu else {})}


def build_app(folder: str | Path, backbone: str, *, replicas: int = 2, limits: Limits | None = None,
              replica_cpus: float = 1.0, trust_remote_code: bool = False, load: dict | None = None):
    """The Ray Serve application (``serve.run`` it): a Router in front of ``replicas`` PromptReplicas,
    each loading ``backbone`` by name with ``load`` (``load_backbone``'s device, dtype, quantize and
    device_map) and serving the prompt files in ``folder``."""
    folder, limits = Path(folder).resolve(), limits or Limits()
    slots = routing_slots(folder, limits.max_resident_mb)
    load = dict(load or {})
    if str(load.get("device", "")).startswith("cuda:"):
        load["device"] = "cuda"  # the replica's own GPU: Ray shows each actor its GPUs as cuda:0..

    @serve.deployment(name="PromptReplica", num_replicas=replicas,
                      ray_actor_options=replica_resources(load, replica_cpus),
                      max_ongoing_requests=max(64, limits.max_batch * 2))
    class PromptReplica:
        def __init__(self) -> None:
            import torch

            from ptune.model.backbones import load_backbone

            limit_malloc()  # Ray's own threads have theirs already; the replica's loads and passes share two
            torch.set_num_threads(max(1, int(replica_cpus)))
            self.backbone = load_backbone(backbone, trust_remote_code=trust_remote_code, **load)
            self.registry = TaskRegistry(folder, self.backbone, limits.max_resident_mb)
            self.batcher = Batcher(self.registry, limits)
            self.loaders = ThreadPoolExecutor(max_workers=limits.loaders, thread_name_prefix="ptune-load")
            self.runner: asyncio.Task | None = None
            self.id = serve.get_replica_context().replica_id.unique_id

        @serve.multiplexed(max_num_models_per_replica=slots)
        async def task_model(self, task: str):
            return await asyncio.get_running_loop().run_in_executor(self.loaders, self.registry.model, task)

        async def served(self, task: str):
            """The model of ``task`` (loaded if cold; the folder re-read for a task not seen yet), or a
            ClientError 404 for an unknown task or a file that turns out damaged."""
            if task not in self.registry:
                await asyncio.get_running_loop().run_in_executor(None, self.registry.refresh)
            if task not in self.registry:
                raise unknown(self.registry, [task])
            try:
                return await self.task_model(task)
            except PtuneError as error:
                raise unservable(task, error) from None

        async def predict(self, rows: list[tuple[int, dict]], top_k: int | None) -> dict[str, Any]:
            """Records for the (item index, row) pairs of the task named by the call's multiplexed model id."""
            if self.runner is None:
                self.runner = asyncio.get_running_loop().create_task(self.batcher.run())
            task = serve.get_multiplexed_model_id()
            try:
                model = await self.served(task)
                batch = [(task, example(model.kind, task, row, i), model) for i, row in rows]
                try:
                    records = await self.batcher.submit(batch, top_k)
                except PtuneError as error:
                    raise ClientError(422, str(error)) from None
            except ClientError as error:
                return {"status": error.status, "error": error.message, "replica": self.stats()}
            return {"predictions": records, "replica": self.stats()}

        async def neighbours(self, k: int) -> dict[str, Any]:
            """The nearest tokens of the prompt of the call's multiplexed model id (the task)."""
            task = serve.get_multiplexed_model_id()
            try:
                model = await self.served(task)
                try:
                    found = await asyncio.get_running_loop().run_in_executor(self.loaders, prompt_neighbours, model, k)
                except PtuneError as error:
                    raise ClientError(422, f"task {task!r}: {error}") from None
            except ClientError as error:
                return {"status": error.status, "error": error.message}
            return {"task": task, **found}

        def stats(self) -> dict[str, Any]:
            parameter = next(self.backbone.model.parameters())
            return {"replica": self.id, "device": str(placement.input_device(self.backbone.model)),
                    "dtype": str(parameter.dtype).removeprefix("torch."), "rss_mb": rss_mb(),
                    "tasks": len(self.registry), "failed": self.registry.failed,
                    "batches": self.batcher.batches, "mixed_batches": self.batcher.mixed_batches,
                    "requests": self.batcher.requests, "trim_s": round(self.batcher.trim.seconds, 3),
                    **self.registry.stats()}

        def tasks(self) -> dict[str, Any]:
            self.registry.refresh()
            return {"tasks": self.registry.describe(), "failed": self.registry.failed}

    http = offline_app(title="ptune (Ray Serve)", description="Prompt-tuned tasks on replicas of one frozen "
                                                               "backbone, routed by task.")
    add_pages(http)  # / (the playground) and its assets

    @serve.deployment(name="Router", ray_actor_options={"num_cpus": 0})
    @serve.ingress(http)
    class Router:
        def __init__(self, replica_handle) -> None:
            self.replicas = replica_handle
            self.seen: dict[str, dict] = {}  # each replica's numbers as its latest answer gave them

        @http.post("/predict")
        async def predict(self, raw: Request):
            try:
                request = parse(await raw.body())
                pairs = items(request, max_texts=limits.max_texts, max_text_chars=limits.max_text_chars)
            except ClientError as error:
                return json_error(error.status, error.message)
            rows: dict[str, list[int]] = {}
            for i, (task, _) in enumerate(pairs):
                rows.setdefault(task, []).append(i)
            calls = {task: self.replicas.options(multiplexed_model_id=task).predict.remote(
                [(i, pairs[i][1]) for i in found], request.top_k) for task, found in rows.items()}
            answers = {task: await call for task, call in calls.items()}
            out: list = [None] * len(pairs)
            for task, answer in answers.items():
                self.seen[answer["replica"]["replica"]] = answer["replica"]
                if "error" in answer:
                    return json_error(answer["status"], answer["error"])
                for i, record in zip(rows[task], answer["predictions"]):
                    out[i] = record
            return {"predictions": out}

        @http.get("/tasks/{task}/neighbours")
        async def neighbours(self, task: str, k: int = Query(5, ge=1, le=MAX_NEIGHBOURS)):
            """As the single-process server's: the k nearest vocabulary tokens of each prompt vector."""
            if not TASK_NAME.match(task):
                return json_error(404, f"unknown task {task[:64]!r}; GET /tasks lists the loaded ones")
            answer = await self.replicas.options(multiplexed_model_id=task).neighbours.remote(k)
            return json_error(answer["status"], answer["error"]) if "error" in answer else answer

        @http.get("/tasks")
        async def tasks(self) -> dict:
            return await self.replicas.tasks.remote()

        @http.get("/health")
        async def health(self) -> dict:
            latest = await self.replicas.stats.remote()
            self.seen[latest["replica"]] = latest
            replicas = list(self.seen.values())
            total = {key: sum(r[key] for r in replicas) for key in ("batches", "mixed_batches", "requests", "loads",
                                                                     "evictions", "resident")}
            return {"status": "ok", "backbone": backbone, "tasks": latest["tasks"], "failed": latest["failed"],
                    **total, "replicas": replicas}

    return Router.bind(PromptReplica.bind())
