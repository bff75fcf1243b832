"""The HTTP server: one frozen backbone, every prompt file in a folder a task, requests batched
across tasks."""
