"""Files ptune writes and reads back: atomic writes, and prompt files (safetensors + a JSON header)."""
