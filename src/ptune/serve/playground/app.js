// The ptune playground: picks tasks from GET /tasks, sends the input to POST /predict (every picked task
// in one request, so the server batches them together), streams POST /generate, and shows
// GET /tasks/{task}/neighbours. Plain JS, no build step, nothing fetched from another origin.
// Every text that came from the user or the server is set with textContent (never parsed as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
let TASKS = [];  // GET /tasks' "tasks": {task, kind, method, labels, metric, resident}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(text) { $("status").textContent = text; }

// The server's {"error": ...} message (OpenAI-shaped errors carry it in error.message), or the status line.
async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch (ignored) { /* not JSON */ }
  const error = body && body.error !== undefined ? body.error : body && body.detail;
  const message = typeof error === "string" ? error : error && error.message ? error.message : JSON.stringify(error);
  return `${response.status} ${response.statusText || "error"}: ${message || "the server gave no message"}`;
}

async function fetchJSON(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new Error(`cannot reach the server (${error.message})`);
  }
  if (!response.ok) throw new Error(await failure(response));
  return response.json();
}

function picked() {
  return [...document.querySelectorAll("#task-list input[type=checkbox]:checked")]
    .map((box) => TASKS.find((t) => t.task === box.dataset.task)).filter(Boolean);
}

function updateFields() {
  const kinds = new Set(picked().map((t) => t.kind));
  $("qa-fields").hidden = !kinds.has("qa");
  $("predicate-field").hidden = !kinds.has("tagging");
  $("text-field").hidden = kinds.size > 0 && [...kinds].every((kind) => kind === "qa");
}

async function loadTasks() {
  const [health, listed] = await Promise.all([fetchJSON("/health"), fetchJSON("/tasks")]);
  $("backbone").textContent = health.backbone;
  TASKS = listed.tasks;
  const list = $("task-list");
  $("tasks-loading").remove();
  if (!TASKS.length) list.append(element("p", {id: "no-tasks", text: "No servable prompt files in the folder."}));
  TASKS.forEach((task, i) => {
    const box = element("input", {type: "checkbox", id: `task-${task.task}`, "data-task": task.task,
                                  "data-kind": task.kind});
    box.checked = i === 0;
    box.addEventListener("change", updateFields);
    list.append(element("label", {className: "task-option", for: box.id}, box, task.task,
                        element("span", {className: "kind", text: `${task.kind} · ${task.method}`})));
  });
  const failed = Object.entries(listed.failed || {});
  if (failed.length) {
    $("failed").hidden = false;
    $("failed").textContent = `Not served: ${failed.map(([name, why]) => `${name} (${why})`).join("; ")}`;
  }
  updateFields();
}

function item(task) {
  if (task.kind === "qa") return {task: task.task, question: $("question").value, context: $("context").value};
  const row = {task: task.task, text: $("text").value};
  const predicate = $("predicate").value.trim();
  if (task.kind === "tagging" && predicate !== "") row.predicate = Number(predicate);
  return row;
}

function card(task, index) {
  return element("article", {className: "result", "data-task": task.task, "data-kind": task.kind, "data-index": index},
                 element("h2", {}, task.task, element("span", {className: "kind", text: `${task.kind} · ${task.method}`})));
}

function percent(p) { return `${(100 * p).toFixed(1)}%`; }

function renderLabel(node, record) {
  node.append(element("div", {className: "label", "data-label": record.label, text: record.label}));
  const probabilities = record.probabilities || {};
  for (const [label, p] of Object.entries(probabilities)) {
    const fill = element("span", {className: "fill"});
    fill.style.width = percent(p);
    node.append(element("div", {className: `probability-row${label === record.label ? " top" : ""}`,
                                "data-label": label, "data-probability": p},
                        element("span", {className: "name", text: label}),
                        element("span", {className: "bar"}, fill), element("span", {className: "value", text: percent(p)})));
  }
}

function renderTags(node, record) {
  const tokens = record.tokens, text = element("p", {className: "tagged"});
  const starts = new Map(record.entities.map((entity) => [entity.start, entity]));
  for (let i = 0; i < tokens.length;) {
    if (i > 0) text.append(" ");
    const entity = starts.get(i);
    if (entity) {
      text.append(element("mark", {className: "entity", "data-type": entity.type, "data-start": entity.start,
                                   "data-end": entity.end, "data-text": entity.text, title: entity.type},
                          entity.text, element("span", {className: "entity-type", text: entity.type})));
      i = entity.end;
    } else {
      text.append(element("span", {className: "word", "data-tag": record.tags[i], text: tokens[i]}));
      i += 1;
    }
  }
  node.append(text);
  const list = element("ul", {className: "entities"});
  for (const entity of record.entities) {
    const score = typeof entity.score === "number" ? ` (${percent(entity.score)})` : "";
    list.append(element("li", {text: `${entity.type}: ${entity.text}${score}`}));
  }
  if (!record.entities.length) list.append(element("li", {className: "no-entities", text: "no entities"}));
  node.append(list);
}

function renderAnswer(node, record, context) {
  const text = element("p", {className: "context"});
  if (record.start === null || record.start === undefined || record.answer === "") {
    text.append(context);
    node.append(element("div", {className: "label no-answer", text: "no answer"}), text);
  } else {
    text.append(context.slice(0, record.start),
                element("mark", {className: "answer", "data-start": record.start, "data-end": record.end,
                                 text: context.slice(record.start, record.end)}),
                context.slice(record.end));
    node.append(element("div", {className: "label answer-text", text: record.answer}), text);
  }
  if (typeof record.score === "number") node.append(element("p", {className: "meta", text: `span score ${record.score.toFixed(2)}`}));
}

function render(node, task, record, sent) {
  if (Array.isArray(record.tags)) renderTags(node, record);
  else if ("answer" in record && "question" in record) renderAnswer(node, record, sent.context);
  else if ("label" in record) renderLabel(node, record);
  else if (typeof record.score === "number") {
    node.append(element("div", {className: "label score", "data-score": record.score, text: record.score.toFixed(3)}));
  }
  else node.append(element("pre", {className: "record", text: JSON.stringify(record, null, 2)}));
  if (record.truncated) node.append(element("p", {className: "meta", text: `cut to fit: ${record.truncated} tokens`}));
}

async function busy(action) {
  clearError();
  const buttons = document.querySelectorAll("#actions button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await action();
  } catch (error) {
    showError(error.message);
    setStatus("");
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function chosen() {
  const tasks = picked();
  if (!tasks.length) throw new Error("pick at least one task");
  return tasks;
}

async function predict() {
  const tasks = chosen(), items = tasks.map(item), started = performance.now();
  setStatus("predicting…");
  const body = await fetchJSON("/predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify({items})});
  const results = $("results");
  results.replaceChildren();
  body.predictions.forEach((record, i) => {
    const node = card(tasks[i], i);
    render(node, tasks[i], record, items[i]);
    results.append(node);
  });
  setStatus(`${tasks.length} task(s) in one request, ${Math.round(performance.now() - started)} ms`);
}

async function generate() {
  const tasks = chosen(), text = $("text").value;
  setStatus("generating…");
  let response;
  try {
    response = await fetch("/generate", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({items: tasks.map((t) => ({task: t.task, text})), stream: true,
                            max_new_tokens: Number($("max-new-tokens").value) || 24})});
  } catch (error) {
    throw new Error(`cannot reach the server (${error.message})`);
  }
  if (!response.ok) throw new Error(await failure(response));
  const results = $("results"), outputs = [];
  results.replaceChildren();
  tasks.forEach((task, i) => {
    const generated = element("span", {className: "new-text"});
    const node = card(task, i);
    node.append(element("p", {className: "generated", "data-task": task.task},
                        element("span", {className: "prompt-text", text}), generated));
    outputs.push({node, generated});
    results.append(node);
  });
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut).replace(/^data: /, "");
      buffer = buffer.slice(cut + 2);
      if (event === "[DONE]") { setStatus("done"); return; }
      const chunk = JSON.parse(event);
      if (chunk.error !== undefined) throw new Error(typeof chunk.error === "string" ? chunk.error : chunk.error.message);
      const out = outputs[chunk.index];
      if (!out) continue;
      if (chunk.piece !== undefined) {
        out.generated.textContent += chunk.piece;
        out.node.dataset.pieces = Number(out.node.dataset.pieces || 0) + 1;
      }
      if (chunk.finish !== undefined) {  // the text's record: the whole text, as /generate answers it
        out.node.dataset.piecesMatch = String(out.generated.textContent === chunk.generated);
        out.generated.textContent = chunk.generated;
        out.node.dataset.finish = chunk.finish;
        out.node.append(element("p", {className: "meta", text: `${chunk.generated_tokens} tokens, finish: ${chunk.finish}`}));
      }
    }
  }
  setStatus("done");
}

async function neighbours() {
  const tasks = chosen(), k = Number($("neighbours-k").value) || 5;
  setStatus("finding nearest tokens…");
  const answers = await Promise.all(tasks.map((t) => fetchJSON(`/tasks/${encodeURIComponent(t.task)}/neighbours?k=${k}`)));
  const results = $("results");
  results.replaceChildren();
  answers.forEach((answer, i) => {
    const table = element("table", {className: "neighbours", "data-task": answer.task},
                          element("caption", {className: "meta", text: `nearest tokens by cosine, in ${answer.space}`}));
    table.append(element("tr", {}, element("th", {text: "position"}),
                         ...answer.positions[0].tokens.map((_, j) => element("th", {text: `#${j + 1}`}))));
    for (const row of answer.positions) {
      table.append(element("tr", {"data-position": row.position}, element("td", {text: `P${row.position}`}),
        ...row.tokens.map((token, j) => element("td", {className: "token", "data-token": token},
          token, element("span", {className: "similarity", text: row.similarities[j].toFixed(2)})))));
    }
    const node = card(tasks[i], i);
    node.append(table);
    results.append(node);
  });
  setStatus("done");
}

window.addEventListener("error", (event) => showError(`playground error: ${event.message}`));
window.addEventListener("unhandledrejection", (event) => showError(`playground error: ${event.reason}`));
document.addEventListener("DOMContentLoaded", () => {
  $("run").addEventListener("click", () => busy(predict));
  $("generate").addEventListener("click", () => busy(generate));
  $("neighbours").addEventListener("click", () => busy(neighbours));
  busy(loadTasks);
});
