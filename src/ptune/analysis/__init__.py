"""Looking inside: nearest-token interpretation of prompts, knowledge probing, and the
side-by-side training-step benchmark."""
