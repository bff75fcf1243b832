"""The playground's views, driven in a real browser: shared by ``tests/test_playground.py`` (which checks
what each view shows against the server's JSON) and ``scripts/screenshots.py`` (which saves a PNG of
each view for the docs). Headless Chromium from Debian's packages through its own chromedriver, so no
driver is ever downloaded; ``browser_problem()`` says why a machine cannot run them.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch

CHROMIUM = os.environ.get("PTUNE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PTUNE_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_S = 300  # a first request loads the tasks' prompts; a busy 2-core machine is slow

SENTENCE = "Peter Blackburn visited Brussels and loved the film"
QUESTION = "Where did Peter fly to?"
CONTEXT = "Peter Blackburn flew from London to Brussels on Monday to meet the committee."
STORY = "Once upon a time"
# name -> (kind, method, labels, metric, seed): the prompt files the playground's server serves
PROMPTS = {
    "sentiment": ("classification", "deep", ["negative", "positive"], "accuracy", 1),
    "topic": ("classification", "prompt", ["world", "sports", "business", "science"], "accuracy", 2),
    "ner": ("tagging", "deep", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"], "entity_f1", 3),
    "squad": ("qa", "prompt", [], "squad", 4),
}


def make_prompts(backbone, folder: Path, prompts: dict = PROMPTS) -> Path:
    """Prompt files for ``prompts`` on ``backbone`` in ``folder``: initialised as ``ptune train`` starts them,
    then nudged by a seeded draw so that each task answers differently (never trained: the views show the
    server's answers, whatever they are)."""
    from ptune.config import MethodConfig
    from ptune.model.prompt_model import PromptModel
    from ptune.storage.prompt_files import save_prompt

    folder.mkdir(parents=True, exist_ok=True)
    for name, (kind, method, labels, metric, seed) in prompts.items():
        torch.manual_seed(seed)
        model = PromptModel(backbone, MethodConfig(method=method, length=4), labels, kind=kind)
        model.initialise(seed=seed)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.trainable_parameters():
                p.add_(0.5 * p.std().nan_to_num(1.0) * torch.randn(p.shape, generator=generator))
        save_prompt(folder / f"{name}.safetensors", model, task_name=name, metric=metric)
    return folder


# -- the server, as a client sees it --------------------------------------------------------------
def call(port: int, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON) of a GET (no body) or POST to the server on loopback."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# -- the browser ----------------------------------------------------------------------------------
def browser_problem() -> str | None:
    """Why no browser test can run here (None when Chromium, its driver and selenium are present)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is missing: apt-get install chromium chromium-driver (scripts/setup.sh does, as root)"
    return None


def browser(width: int = 1400, height: int = 900):
    """Headless Chromium driven through Debian's chromedriver (never a downloaded one), logging every
    network request (``requested_urls``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync",
                     "--disable-component-update", "--disable-default-apps"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    return driver


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def wait(driver, condition, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def found(selector: str):
    """A wait condition: the first element matching ``selector``, once one is displayed."""
    from selenium.webdriver.common.by import By

    def check(driver):
        elements = [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]
        return elements[0] if elements else False
    return check


def open_playground(driver, port: int) -> None:
    """Load ``/`` and wait until the task list is filled from GET /tasks."""
    driver.get(f"http://127.0.0.1:{port}/")
    wait(driver, found("#task-list input[type=checkbox]"))


def pick(driver, *tasks: str) -> None:
    """Tick exactly ``tasks`` in the task list, in the list's order."""
    from selenium.webdriver.common.by import By

    for box in driver.find_elements(By.CSS_SELECTOR, "#task-list input[type=checkbox]"):
        if box.is_selected() != (box.get_attribute("data-task") in tasks):
            box.click()


def fill(driver, element_id: str, value: str) -> None:
    """Set an input's value as a paste would (one input event: typing 4,000 characters takes minutes)."""
    driver.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                          "e.dispatchEvent(new Event('input', {bubbles: true}));", element_id, value)


def press(driver, button_id: str, expect: str) -> None:
    """Click ``button_id`` and wait until ``expect`` (a CSS selector) is displayed or an error is shown."""
    from selenium.webdriver.common.by import By

    driver.execute_script("document.getElementById('results').replaceChildren();"
                          "document.getElementById('error').hidden = true;")
    driver.find_element(By.ID, button_id).click()
    wait(driver, lambda d: found(expect)(d) or found("#error")(d))
    wait(driver, lambda d: d.find_element(By.ID, button_id).is_enabled())  # the request has finished


def cards(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#results .result")


def error_text(driver) -> str | None:
    """The error the page shows (None when the error box is hidden)."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "error")
    return box.text if box.is_displayed() else None


# -- the views: each leaves the page showing one thing (the test checks it, the script photographs it)
def view_classification(driver, port: int) -> None:
    open_playground(driver, port)
    pick(driver, "sentiment")
    fill(driver, "text", "a gripping, beautifully acted film")
    press(driver, "run", ".result[data-task=sentiment] .probability-row")


def view_tagging(driver, port: int) -> None:
    open_playground(driver, port)
    pick(driver, "ner")
    fill(driver, "text", SENTENCE)
    press(driver, "run", ".result[data-task=ner] .tagged")


def view_qa(driver, port: int) -> None:
    open_playground(driver, port)
    pick(driver, "squad")
    fill(driver, "question", QUESTION)
    fill(driver, "context", CONTEXT)
    press(driver, "run", ".result[data-task=squad] .context")


def view_side_by_side(driver, port: int) -> None:
    open_playground(driver, port)
    pick(driver, "sentiment", "topic", "ner", "squad")
    fill(driver, "text", SENTENCE)
    fill(driver, "question", QUESTION)
    fill(driver, "context", CONTEXT)
    press(driver, "run", ".result[data-task=squad] .context")


def view_neighbours(driver, port: int) -> None:
    open_playground(driver, port)
    pick(driver, "topic", "squad")  # input prompts: a deep prompt's neighbours take a pass over the vocabulary
    fill(driver, "neighbours-k", "4")
    press(driver, "neighbours", ".result[data-task=squad] table.neighbours")


def view_error(driver, port: int, max_text_chars: int) -> None:
    open_playground(driver, port)
    pick(driver, "sentiment")
    fill(driver, "text", "too long " * (max_text_chars // 9 + 1))
    press(driver, "run", "#error")


def view_generation(driver, port: int, task: str = "story") -> None:
    open_playground(driver, port)
    pick(driver, task)
    fill(driver, "text", STORY)
    fill(driver, "max-new-tokens", "16")
    press(driver, "generate", f".result[data-task={task}][data-finish]")
