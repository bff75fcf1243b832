"""The defaults of learned probes, shared by ``ptune probe`` and its ``--facts`` path (no imports: the CLI reads
them before torch loads)."""

# Learned probes default to the capital-of study's winner (`python benchmarks/sweeps.py sweep capital_of_ptuning`:
# 30 trials on the LAMA P36 facts, smollm2, chosen on dev P@1; benchmarks/results/sweeps/capital_of_ptuning): lr
# 4.4e-3, 2 [P] per side, an MLP encoder, at the study's 8 epochs (best epoch by dev). Confirmed on test over 3 seeds:
# P@1 74.0 +- 3.5, 10 points over the best manual wording. Prompt tuning keeps 8 tokens in front (not searched).
LEARNED_DEFAULTS = {"lr": 4.4e-3, "epochs": 8, "encoder": "mlp"}
DEFAULT_PROMPTS = {"ptuning": 2, "prompt": 8}
