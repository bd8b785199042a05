"""lmforge model: the Llama-style transformer and its configuration (torch only, no parallelism, no training)."""

from model.model import KVCache, ModelConfig, Transformer

__all__ = ["KVCache", "ModelConfig", "Transformer"]
