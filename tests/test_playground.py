"""The playground page in a real browser (headless Chromium from Debian's packages, through its own
chromedriver) against a live ``ptune serve`` on loopback: what each view shows is what ``/predict``,
``/generate`` and ``/tasks/{task}/neighbours`` answer; the server's error message is shown on the page;
``/``, ``/docs`` and ``/redoc`` request nothing outside the server. Screenshots go to tmp_path.
Skipped, with the reason, where no browser or driver is installed (scripts/setup.sh installs them as root).
"""

from __future__ import annotations

import pytest
import playground_steps as steps
from playground_steps import CONTEXT, QUESTION, SENTENCE, STORY, call

MAX_TEXT_CHARS = 300
problem = steps.browser_problem()
pytestmark = pytest.mark.skipif(problem is not None, reason=problem or "")


@pytest.fixture(scope="module")
def server(minilm, tmp_path_factory, ptune_server):
    folder = steps.make_prompts(minilm, tmp_path_factory.mktemp("playground"))
    with ptune_server(folder, "--max-text-chars", str(MAX_TEXT_CHARS)) as port:
        yield port


@pytest.fixture(scope="module")
def driver():
    browser = steps.browser()
    yield browser
    browser.quit()


@pytest.fixture
def shot(driver, tmp_path):
    """Saves the page as tmp_path/NAME.png (a record of what the test saw)."""
    def save(name: str) -> None:
        assert driver.save_screenshot(str(tmp_path / f"{name}.png"))
    return save


def card(driver, task):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"#results .result[data-task='{task}']")


def shown_label(node) -> tuple[str, dict[str, float]]:
    """The label a card shows and each class's probability (the number and the bar's width agree)."""
    from selenium.webdriver.common.by import By

    label = node.find_element(By.CSS_SELECTOR, ".label").text
    rows = {}
    for row in node.find_elements(By.CSS_SELECTOR, ".probability-row"):
        p = float(row.get_attribute("data-probability"))
        assert row.find_element(By.CSS_SELECTOR, ".value").text == f"{100 * p:.1f}%"
        assert row.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style") == f"width: {100 * p:.1f}%;"
        rows[row.get_attribute("data-label")] = p
    return label, rows


def shown_entities(node) -> list[dict]:
    from selenium.webdriver.common.by import By

    return [{"text": mark.get_attribute("data-text"), "type": mark.get_attribute("data-type"),
             "start": int(mark.get_attribute("data-start")), "end": int(mark.get_attribute("data-end"))}
            for mark in node.find_elements(By.CSS_SELECTOR, "mark.entity")]


def shown_answer(node) -> tuple[str, int, int]:
    from selenium.webdriver.common.by import By

    mark = node.find_element(By.CSS_SELECTOR, ".context mark.answer")
    return mark.text, int(mark.get_attribute("data-start")), int(mark.get_attribute("data-end"))


def entities_of(record) -> list[dict]:
    return [{key: entity[key] for key in ("text", "type", "start", "end")} for entity in record["entities"]]


def test_labels_a_sentence(server, driver, shot):
    steps.view_classification(driver, server)
    shot("classification")
    label, probabilities = shown_label(card(driver, "sentiment"))
    status, body = call(server, "/predict", {"task": "sentiment", "texts": ["a gripping, beautifully acted film"]})
    (record,) = body["predictions"]
    assert status == 200 and label == record["label"]
    assert probabilities == pytest.approx(record["probabilities"], abs=1e-6) and len(probabilities) == 2


def test_tags_a_sentence(server, driver, shot):
    steps.view_tagging(driver, server)
    shot("tagging")
    node = card(driver, "ner")
    (record,) = call(server, "/predict", {"task": "ner", "texts": [SENTENCE]})[1]["predictions"]
    assert record["entities"], "the fixture's tagger should mark some entity in the sentence"
    assert shown_entities(node) == entities_of(record)
    words = driver.execute_script("return [...arguments[0].querySelectorAll('.tagged mark.entity, .tagged span.word')]"
                                  ".map((e) => e.dataset.text || e.textContent).join(' ')", node)
    assert words == SENTENCE  # every word shown once, in order


def test_answers_a_question(server, driver, shot):
    steps.view_qa(driver, server)
    shot("qa")
    text, start, end = shown_answer(card(driver, "squad"))
    (record,) = call(server, "/predict", {"items": [{"task": "squad", "question": QUESTION,
                                                     "context": CONTEXT}]})[1]["predictions"]
    assert (text, start, end) == (record["answer"], record["start"], record["end"]) and text
    assert CONTEXT[start:end] == text


def test_several_tasks_side_by_side(server, driver, shot):
    before = call(server, "/health")[1]
    steps.view_side_by_side(driver, server)
    shot("side-by-side")
    after = call(server, "/health")[1]
    assert after["requests"] - before["requests"] == 1 and after["mixed_batches"] > before["mixed_batches"]
    nodes = steps.cards(driver)
    assert [n.get_attribute("data-task") for n in nodes] == ["ner", "sentiment", "squad", "topic"]
    first_row = [n for n in nodes if n.rect["y"] == nodes[0].rect["y"]]
    assert len(first_row) >= 2 and sorted(n.rect["x"] for n in first_row) == [n.rect["x"] for n in first_row]
    items = [{"task": "ner", "text": SENTENCE}, {"task": "sentiment", "text": SENTENCE},
             {"task": "squad", "question": QUESTION, "context": CONTEXT}, {"task": "topic", "text": SENTENCE}]
    ner, sentiment, squad, topic = call(server, "/predict", {"items": items})[1]["predictions"]
    assert shown_entities(nodes[0]) == entities_of(ner)
    for node, record in ((nodes[1], sentiment), (nodes[3], topic)):
        label, probabilities = shown_label(node)
        assert label == record["label"] and probabilities == pytest.approx(record["probabilities"], abs=1e-6)
    assert shown_answer(nodes[2]) == (squad["answer"], squad["start"], squad["end"])


def test_a_text_over_the_limit_shows_the_servers_error(server, driver, shot):
    steps.view_error(driver, server, MAX_TEXT_CHARS)
    shot("error")
    too_long = "too long " * (MAX_TEXT_CHARS // 9 + 1)
    status, body = call(server, "/predict", {"items": [{"task": "sentiment", "text": too_long}]})
    assert status == 413 and f"the limit is {MAX_TEXT_CHARS}" in body["error"]
    shown = steps.error_text(driver)
    assert shown is not None and body["error"] in shown and "413" in shown
    assert steps.cards(driver) == []


def test_no_task_picked_is_an_error_on_the_page(server, driver):
    steps.open_playground(driver, server)
    steps.pick(driver)
    steps.press(driver, "run", "#error")
    assert steps.error_text(driver) == "pick at least one task"


def test_nearest_tokens(server, driver, shot):
    from selenium.webdriver.common.by import By

    steps.view_neighbours(driver, server)
    shot("neighbours")
    for task in ("topic", "squad"):
        status, body = call(server, f"/tasks/{task}/neighbours?k=4")
        assert status == 200
        rows = card(driver, task).find_elements(By.CSS_SELECTOR, "table.neighbours tr[data-position]")
        shown = [[cell.get_attribute("data-token") for cell in row.find_elements(By.CSS_SELECTOR, "td.token")]
                 for row in rows]
        assert shown == [p["tokens"] for p in body["positions"]] and len(shown) == 4


def test_pages_request_nothing_outside_the_server(server, driver):
    """What the browser itself asks for on /, /docs and /redoc (Chrome's network log), once each page has drawn."""
    base = f"http://127.0.0.1:{server}"
    steps.requested_urls(driver)  # drop what earlier tests requested
    steps.open_playground(driver, server)
    driver.get(f"{base}/docs")
    steps.wait(driver, steps.found(".swagger-ui .info .title"))
    driver.get(f"{base}/redoc")
    steps.wait(driver, steps.found("redoc h1"))
    urls = steps.requested_urls(driver)
    assert f"{base}/openapi.json" in urls and f"{base}/static-offline-docs/swagger-ui-bundle.js" in urls
    outside = [u for u in urls if not u.startswith((f"{base}/", "data:", f"blob:{base}/"))]
    assert outside == []


@pytest.fixture(scope="module")
def llama_server(tiny_llama, tmp_path_factory, ptune_server):
    folder = steps.make_prompts(tiny_llama, tmp_path_factory.mktemp("playground-llama"), {
        "story": ("classification", "prompt", ["negative", "positive"], "accuracy", 1)})
    with ptune_server(folder) as port:
        yield port


def test_generation_streams_into_the_page(llama_server, driver, shot):
    from selenium.webdriver.common.by import By

    steps.view_generation(driver, llama_server)
    shot("generation")
    node = card(driver, "story")
    status, body = call(llama_server, "/generate", {"task": "story", "texts": [STORY], "max_new_tokens": 16})
    (record,) = body["generations"]
    assert status == 200 and node.get_attribute("data-finish") == record["finish"]
    generated = node.find_element(By.CSS_SELECTOR, ".generated .new-text").get_attribute("textContent")
    assert generated == record["generated"] and generated
    # it came as server-sent events: pieces shown as they arrived, which add up to the final text
    assert int(node.get_attribute("data-pieces")) > 1 and node.get_attribute("data-pieces-match") == "true"
