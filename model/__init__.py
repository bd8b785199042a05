"""lmforge model: the Llama-style transformer and its configuration (torch only, no parallelism)."""
