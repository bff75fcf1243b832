"""Serving many tasks over real loopback HTTP: prompts indexed by header at startup, loaded on first use
into a bounded least-recently-used set, damaged files listed as failed while the rest serve, lazily
loaded answers equal to eagerly loaded ones, and one load for concurrent first requests."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from test_server import TEXTS, request

from ptune.config import MethodConfig
from ptune.data import TaggedExample, TextExample
from ptune.infer.predict import predict
from ptune.model.prompt_model import PromptModel
from ptune.serve.lazy_prompts import INDEX_BYTES, OVERHEAD_BYTES
from ptune.serve.read_ahead import MIN_FILES, ReadAhead
from ptune.serve.registry import TaskRegistry
from ptune.storage.prompt_files import load_prompt, save_prompt

DEEP = [f"d{i}" for i in range(6)]
MB = 1024 * 1024
FILES = len(DEEP) + 6 + MIN_FILES  # what scale_server writes, failed files included: each is charged INDEX_BYTES
BUDGET_MB = round(0.25 + FILES * INDEX_BYTES / MB, 3)  # the index, then two of these deep prompts (about 93 KB
                                                       # charged each), not three


def make_prompt(backbone, folder, name, method, *, tagging=False, seed=0, **options):
    """A prompt file of random tensors (no fitted initialisation: a P-tuning LSTM's takes minutes here)."""
    labels = ["O", "B-PER", "I-PER", "B-LOC"] if tagging else ["negative", "positive"]
    torch.manual_seed(seed)
    model = PromptModel(backbone, MethodConfig(method=method, length=4, **options), labels,
                        kind="tagging" if tagging else "classification")
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.copy_(torch.randn_like(p))
    path = folder / f"{name}.safetensors"
    save_prompt(path, model, task_name=name, metric="entity_f1" if tagging else "accuracy")
    return path


@pytest.fixture(scope="module")
def scale_server(minilm, tmp_path_factory, ptune_server):
    folder = tmp_path_factory.mktemp("many")
    for i, name in enumerate(DEEP):
        make_prompt(minilm, folder, name, "deep", seed=10 + i)
    make_prompt(minilm, folder, "soft", "prompt", seed=20)
    make_prompt(minilm, folder, "cold", "deep", seed=21)
    make_prompt(minilm, folder, "ner", "ptuning", tagging=True, seed=22, encoder="lstm")
    (folder / "bad_header.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    cut = make_prompt(minilm, folder, "cut_short", "deep", seed=23)
    cut.write_bytes(cut.read_bytes()[:-100])
    damaged = make_prompt(minilm, folder, "bad_data", "deep", seed=24)
    data = bytearray(damaged.read_bytes())
    data[-50:] = bytes(50)  # the header still reads; the tensors no longer match their checksum
    damaged.write_bytes(bytes(data))
    for i in range(MIN_FILES):  # enough files for the server to read the headers ahead in a child process
        os.link(folder / "d0.safetensors", folder / f"copy{i:03d}.safetensors")
    with ptune_server(folder, "--max-resident-mb", str(BUDGET_MB)) as port:
        yield port, folder


def eager_records(minilm, folder, name, texts):
    """What the prompt file gives loaded the ordinary way: its records as `ptune predict` prints them."""
    return predict(load_prompt(folder / f"{name}.safetensors", minilm), [TextExample(t) for t in texts], scores=True)


def health(port):
    status, body = request(port, "/health")
    assert status == 200
    return body


def test_startup_reads_headers_only_and_lists_bad_files(scale_server):
    port, _ = scale_server
    body = health(port)
    assert body["read_ahead_s"] is not None  # the headers came from the read-ahead child
    assert body["loads"] == 0 and body["resident"] == 0  # nothing loaded before a request asks for it
    assert body["max_resident_mb"] == BUDGET_MB and body["index_mb"] == round(FILES * INDEX_BYTES / MB, 3)
    assert {"bad_header", "cut_short"} <= set(body["failed"]), body["failed"]
    assert "cut short" in body["failed"]["cut_short"]
    status, listed = request(port, "/tasks")
    names = {t["task"] for t in listed["tasks"]}
    assert set(DEEP) | {"soft", "cold", "ner", "bad_data", "copy000"} <= names and "bad_header" not in names
    assert not any(t["resident"] for t in listed["tasks"])


def index_of(registry):
    return ({name: (e.path, e.mtime_ns, e.shape.key, e.data_bytes, e.digest) for name, e in registry.entries.items()},
            dict(registry.failed))


def test_headers_read_ahead_in_a_child_index_as_the_server_reads_them(scale_server, minilm, tmp_path):
    _, served = scale_server
    folder = tmp_path / "copy"
    folder.mkdir()
    for path in served.iterdir():
        os.link(path, folder / path.name)
    (folder / "other.safetensors").write_bytes((served / "d1.safetensors").read_bytes())
    ahead = ReadAhead.start(folder, min_files=1)
    # after the child read them: one file replaced by another prompt, one added, one removed
    (folder / "other.safetensors").unlink()
    make_prompt(minilm, folder, "other", "prompt", seed=30)
    make_prompt(minilm, folder, "late", "deep", seed=31)
    (folder / "d2.safetensors").unlink()
    registry = TaskRegistry(folder, minilm, BUDGET_MB, read_ahead=ahead)
    assert registry.read_ahead_s is not None
    assert index_of(registry) == index_of(TaskRegistry(folder, minilm, BUDGET_MB))
    assert registry.entries["other"].shape.method["method"] == "prompt" and "late" in registry.entries
    assert "d2" not in registry.entries and "cut short" in registry.failed["cut_short"]
    small = tmp_path / "small"
    small.mkdir()
    os.link(served / "d0.safetensors", small / "d0.safetensors")
    assert ReadAhead.start(small) is None  # fewer files than MIN_FILES: the server reads them itself


def test_lazily_loaded_answers_equal_eager_ones(scale_server, minilm):
    port, folder = scale_server
    items = [{"task": task, "text": text} for task in ("d0", "soft", "d1") for text in TEXTS[:2]]
    status, body = request(port, "/predict", {"items": items})
    assert status == 200
    for item, got in zip(items, body["predictions"]):
        expected = eager_records(minilm, folder, item["task"], [item["text"]])[0]
        assert got["label"] == expected["label"]
        assert got["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
    status, body = request(port, "/predict", {"task": "ner", "texts": ["Peter Blackburn visited Brussels"]})
    words = tuple("Peter Blackburn visited Brussels".split())
    reference = predict(load_prompt(folder / "ner.safetensors", minilm), [TaggedExample(words)])
    assert status == 200 and body["predictions"][0]["tags"] == reference[0]


def test_tasks_loaded_from_files_of_one_shape_are_tokenized_in_one_call(scale_server, minilm, monkeypatch):
    """Copies of one prototype share its encoder, so a mixed pass encodes their examples together; a task of
    another shape ("soft": another method, so another encoder) gets its own call, and every feature is the one
    its own task gives alone."""
    from ptune.batch.encoding import Encoder
    from ptune.infer.bank import PromptBank

    _, folder = scale_server
    registry = TaskRegistry(folder, minilm)
    models = {name: registry.model(name) for name in ("d0", "d1", "d2", "soft")}
    assert models["d0"].encoder is models["d1"].encoder and models["soft"].encoder is not models["d0"].encoder
    bank = PromptBank(models)
    items = [(name, TextExample(text)) for name in ("d0", "soft", "d1", "d2") for text in TEXTS[:2]]
    calls = []
    encode = Encoder.encode
    monkeypatch.setattr(Encoder, "encode", lambda self, examples: calls.append(len(examples)) or encode(self, examples))
    encoded = bank.encode(items)
    assert sorted(calls) == [2, 6]
    monkeypatch.setattr(Encoder, "encode", encode)
    for (name, example), (task, feature) in zip(items, encoded):
        assert bank.names[task] == name and feature == models[name].encode([example])[0]


def test_eviction_keeps_the_resident_set_within_the_budget(scale_server, minilm):
    port, folder = scale_server
    before = health(port)
    for name in DEEP:
        status, body = request(port, "/predict", {"task": name, "texts": TEXTS[:1]})
        assert status == 200
        after = health(port)
        resident = {t["task"] for t in request(port, "/tasks")[1]["tasks"] if t["resident"]}
        assert after["resident_mb"] <= BUDGET_MB and len(resident & set(DEEP)) <= 2 and name in resident
    charged = (folder / "d0.safetensors").stat().st_size + OVERHEAD_BYTES
    assert after["resident_mb"] * 1024 * 1024 >= charged  # the latest task stays
    assert after["evictions"] - before["evictions"] >= len(DEEP) - 2
    # d0 was evicted long ago: asked again, it is loaded again and answers as before
    loads = after["loads"]
    status, body = request(port, "/predict", {"task": "d0", "texts": TEXTS})
    assert status == 200 and health(port)["loads"] == loads + 1
    assert [p["label"] for p in body["predictions"]] == [r["label"] for r in eager_records(minilm, folder, "d0", TEXTS)]


def test_the_index_is_charged_against_the_budget(scale_server, minilm, caplog):
    _, folder = scale_server
    cost = (folder / "d0.safetensors").stat().st_size + OVERHEAD_BYTES
    index = FILES * INDEX_BYTES  # about 1.8 prompts' worth here
    registry = TaskRegistry(folder, minilm, (index + 2.5 * cost) / MB)
    assert registry.index_bytes == index
    for name in DEEP[:4]:
        registry.model(name)
    assert registry.stats()["resident"] == 2  # with the index left out of the budget, 4 would fit
    assert registry.index_bytes + registry.resident_bytes <= registry.budget
    assert registry.resident("d3") is not None and registry.resident("d1") is None
    assert "raise --max-resident-mb" not in caplog.text
    crowded = TaskRegistry(folder, minilm, index * 1.5 / MB)  # the index takes most of it: said at startup
    assert "raise --max-resident-mb" in caplog.text and f"index of {FILES} prompt files" in caplog.text
    crowded.model("d0"), crowded.model("d1")
    assert crowded.stats()["resident"] == 1  # the latest stays, over the budget, rather than none


def test_cold_task_loads_on_first_use(scale_server):
    port, _ = scale_server
    loads = health(port)["loads"]
    assert not {t["task"]: t for t in request(port, "/tasks")[1]["tasks"]}["d2"]["resident"]  # evicted above
    status, _ = request(port, "/predict", {"task": "d2", "texts": TEXTS[:1]})
    assert status == 200
    listed = {t["task"]: t for t in request(port, "/tasks")[1]["tasks"]}
    assert listed["d2"]["resident"]
    assert health(port)["loads"] == loads + 1  # d2 had been evicted: one load now, then resident


def test_concurrent_first_requests_load_a_task_once(scale_server, minilm):
    port, folder = scale_server
    before = health(port)["loads"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: request(port, "/predict", {"task": "cold", "texts": [TEXTS[i % 4]]}),
                                range(8)))
    assert health(port)["loads"] == before + 1
    expected = eager_records(minilm, folder, "cold", TEXTS)
    for i, (status, body) in enumerate(answers):
        assert status == 200 and body["predictions"][0]["label"] == expected[i % 4]["label"]


def test_damaged_tensors_fail_on_first_use_and_others_serve(scale_server):
    port, _ = scale_server
    status, body = request(port, "/predict", {"task": "bad_data", "texts": TEXTS[:1]})
    assert status == 404 and "checksum" in body["error"] and "task 'bad_data'" in body["error"], body
    for path in ("/tasks", "/health"):
        assert "bad_data" in request(port, path)[1]["failed"]
    status, body = request(port, "/predict", {"items": [{"task": "d3", "text": TEXTS[0]}, {"task": "soft", "text": TEXTS[1]}]})
    assert status == 200 and len(body["predictions"]) == 2
    status, body = request(port, "/predict", {"task": "bad_data", "texts": TEXTS[:1]})
    assert status == 404 and "checksum" in body["error"]
    assert json.dumps(body)  # a JSON error, the server still up


def test_cold_tasks_load_in_loader_threads_and_a_slow_load_holds_up_only_its_request(minilm, tmp_path, monkeypatch):
    """A cold task's request joins the batch being formed while a loader thread maps its file (the event loop
    never loads); while one load is slow, requests for other tasks, cold or warm, are answered, and the slow
    one is answered when its load ends."""
    import threading
    import time

    from fastapi.testclient import TestClient

    from ptune.serve.app import create_app
    from ptune.serve.lazy_prompts import Loader

    for name, seed in (("warm", 1), ("slow", 2), ("cold", 3)):
        make_prompt(minilm, tmp_path, name, "deep", seed=seed)
    gate, threads_used, original = threading.Event(), {}, Loader.load

    def load(self, entry):
        threads_used[entry.name] = threading.current_thread().name
        if entry.name == "slow":
            assert gate.wait(60)
        return original(self, entry)

    monkeypatch.setattr(Loader, "load", load)
    body = {"task": "warm", "texts": TEXTS[:1]}
    with TestClient(create_app(tmp_path, minilm)) as client:
        assert client.post("/predict", json=body).status_code == 200
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(
            client.post("/predict", json={"items": [{"task": "slow", "text": TEXTS[0]}, {"task": "warm", "text": TEXTS[1]}]})))
        waiting.start()
        while "slow" not in threads_used:
            time.sleep(0.01)
        for _ in range(3):
            assert client.post("/predict", json=body).status_code == 200
        cold = client.post("/predict", json={"task": "cold", "texts": TEXTS[:2]})
        assert cold.status_code == 200 and len(cold.json()["predictions"]) == 2
        assert waiting.is_alive() and not answers  # still loading
        gate.set()
        waiting.join(60)
        assert answers[0].status_code == 200 and len(answers[0].json()["predictions"]) == 2
        alone = client.post("/predict", json={"task": "warm", "texts": TEXTS[1:2]}).json()["predictions"][0]
        together = answers[0].json()["predictions"][1]  # the same answer in another batch (padding differs)
        assert together["label"] == alone["label"]
        assert together["probabilities"] == pytest.approx(alone["probabilities"], rel=1e-4, abs=1e-6)
        assert all(name.startswith("ptune-load") for name in threads_used.values()), threads_used


ARENAS = """
import ctypes, os, sys, tempfile, threading
from ptune.serve.malloc import limit_malloc
limited = limit_malloc()["arenas"] if sys.argv[1] == "limit" else None
def work():
    kept = [bytes(4096 + i) for i in range(2000)]  # malloc'd by this thread
    del kept
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
handle = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(handle))
libc.fclose(ctypes.c_void_p(handle))
print(limited, open(path).read().count("<heap nr="))
"""
GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas and mmap are glibc's")


def python(code, *args, **env):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env).stdout.split()


@GLIBC
def test_the_server_process_keeps_to_two_malloc_arenas_unless_the_user_chose():
    def arenas(mode, **env):
        limited, heaps = python(ARENAS, mode, **env)
        return limited, int(heaps)

    assert arenas("limit") == ("True", 2)  # 8 allocating threads share the main arena and one more
    limited, heaps = arenas("default")
    assert heaps > 2  # what the limit prevents: glibc gives threads arenas of their own
    limited, heaps = arenas("limit", MALLOC_ARENA_MAX="4")
    assert limited == "False" and 2 < heaps <= 4  # the user's own setting stands


MAPPED = """
import ctypes, sys
from ptune.serve.malloc import limit_malloc
class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype, libc.malloc.restype = Info, ctypes.c_void_p
limited = limit_malloc()["mmap_threshold"] if sys.argv[1] == "limit" else None
size = 4 * 1024 * 1024  # a pass's gathered prefixes are blocks of a few MiB
libc.free(ctypes.c_void_p(libc.malloc(size)))  # mapped, and by default raises the threshold to 4 MiB
block = libc.malloc(size)
print(limited, libc.mallinfo2().hblkhd >= size)  # is the second block mapped (returned to the system when freed)?
"""


@GLIBC
def test_the_server_process_maps_blocks_of_a_mib_or_more_unless_the_user_chose():
    assert python(MAPPED, "limit") == ["True", "True"]
    assert python(MAPPED, "default") == ["None", "False"]  # glibc's own: the freed block raised the threshold
    assert python(MAPPED, "limit", MALLOC_MMAP_THRESHOLD_=str(64 * 1024 * 1024)) == ["False", "False"]


TRIMMED = """
import ctypes
from ptune.serve.malloc import Trim
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
def anon_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssAnon")) / 1024
start = anon_mb()
blocks = [libc.malloc(2048) for _ in range(20001)]  # 40 MiB of small blocks, from the heap
for block in blocks:
    ctypes.memset(block, 1, 2048)
for block in blocks[:-1]:  # the last stays: the heap's top cannot shrink past it, so free() keeps their pages
    libc.free(ctypes.c_void_p(block))
trim = Trim(every=0)
trim()  # no pass has run since it was made: nothing to do
trim.pending, trim.every = True, 3600
trim()  # not due yet
held = anon_mb()
print(trim.calls, round(held - start))
trim.every = 0
trim()
print(trim.calls, round(held - anon_mb()))
"""


@GLIBC
def test_the_server_hands_freed_heap_pages_back_when_a_trim_is_due():
    calls, kept, calls_after, freed = map(int, python(TRIMMED))
    assert calls == 0 and kept >= 35, kept  # free() alone kept the 40 MiB
    assert calls_after == 1 and freed >= 30, freed


@GLIBC
def test_an_idle_server_trims_its_heap_once_after_its_last_pass():
    import asyncio

    from ptune.serve.app import Limits
    from ptune.serve.batcher import Batcher

    async def scenario():
        batcher = Batcher(None, Limits())
        batcher.trim.every = 0.05
        batcher.queue.put_nowait("first")
        first = await batcher._next(asyncio.get_running_loop())  # nothing has run: no trim
        batcher.trim.pending = True  # as after a pass
        asyncio.get_running_loop().call_later(0.3, batcher.queue.put_nowait, "later")
        later = await batcher._next(asyncio.get_running_loop())  # idle 0.3 s: trimmed once while waiting
        calls = batcher.trim.calls
        batcher.queue.put_nowait("soon")
        soon = await batcher._next(asyncio.get_running_loop())  # no pass since: no trim
        return first, later, soon, calls, batcher.trim.calls

    assert asyncio.run(scenario()) == ("first", "later", "soon", 1, 1)
