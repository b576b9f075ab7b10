"""Built-in tasks, tokenizers and the Lightning data module."""
