"""Small generated corpora for the tokenizer and training tests."""

import random

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.common import synthetic


def corpus_texts(count=300, seed=0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        language = rng.choice(["en", "de", "fr", "es"])
        texts.append("\n\n".join(synthetic.article_paragraphs(rng, language)))
    return texts


def write_shards(folder, texts, shards=3):
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        rows = [(f"doc-{i:05d}", text) for i, text in enumerate(texts) if i % shards == shard]
        pq.write_table(
            pa.table({"id": [r[0] for r in rows], "text": [r[1] for r in rows]}),
            folder / f"part-{shard:05d}-of-{shards:05d}.parquet",
        )
    return sorted(str(p) for p in folder.glob("part-*.parquet"))
