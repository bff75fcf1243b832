"""The frozen backbone and what prompts do to it: per-family facts, prefix injection, prompt
modules, the cache of un-prompted bottom layers, and PromptModel (backbone + prompt + a task kind's head)."""
