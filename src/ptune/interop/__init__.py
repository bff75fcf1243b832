"""Other tools' formats: Hugging Face PEFT adapters, exported and imported."""
