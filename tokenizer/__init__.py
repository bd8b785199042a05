"""lmforge tokenizer: byte-level BPE training on curated shards and memory-mapped token bins."""
