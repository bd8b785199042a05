"""Encoding as a Beam transform, so a Dataflow (or Flink, Spark) job can tokenize a whole crawl: each bin
shard (a group of input files) is one element, encoded on whichever worker gets it with the same code as
`python -m tokenizer encode`, then `meta.json` is written once every shard is done.

    groups = plan_shards(paths, 4)  # four input files per bin shard
    meta = p | beam.Create(list(enumerate(groups))) | EncodeToBins(tokenizer_dir, bin_dir, CorpusSpec(paths), groups)

`tokenizer_dir` and `bin_dir` must be paths every worker can open (the bins are memory-mapped later, so a
local disk or a mounted bucket); the inputs can live on any Beam filesystem.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from tokenizer import corpus, encode


class _EncodeShardFn(beam.DoFn):
    def __init__(self, tokenizer_dir: str, output_dir: str, spec: corpus.CorpusSpec, config: encode.EncodeConfig):
        self.tokenizer_dir = tokenizer_dir
        self.output_dir = output_dir
        self.spec = spec
        self.config = config

    def setup(self):
        from tokenizer.encoding import Encoder

        self.encoder = Encoder(self.tokenizer_dir, self.config.backend)

    def process(self, element):
        index, inputs = element
        info = encode.encode_shard(
            self.encoder, self.spec, inputs, self.output_dir, index, self.config, encode.in_process(self.encoder)
        )
        beam.metrics.Metrics.counter("tokenizer", "tokens").inc(info["train"]["tokens"] + info["val"]["tokens"])
        yield index, info


def _write_meta(indexed_infos, tokenizer_dir, output_dir, groups, config):
    from tokenizer.encoding import Encoder

    infos = [info for _, info in sorted(indexed_infos, key=lambda item: item[0])]
    return encode.write_meta(output_dir, Encoder(tokenizer_dir, "hf"), groups, config, infos)


class EncodeToBins(beam.PTransform):
    """(shard index, input paths) elements → bin shards; returns a PCollection holding the bin directory's
    metadata (written to `meta.json`)."""

    def __init__(
        self,
        tokenizer_dir: str,
        output_dir: str,
        spec: corpus.CorpusSpec,
        groups: list[list[str]],
        config: encode.EncodeConfig | None = None,
    ):
        super().__init__()
        self.tokenizer_dir = tokenizer_dir
        self.output_dir = output_dir
        self.spec = spec
        self.groups = groups
        self.config = dataclasses.replace(config or encode.EncodeConfig(), workers=1)

    def expand(self, indexed_groups):
        return (
            indexed_groups
            | "Spread" >> beam.Reshuffle()
            | "Encode" >> beam.ParDo(_EncodeShardFn(self.tokenizer_dir, self.output_dir, self.spec, self.config))
            | "All" >> beam.combiners.ToList()
            | "Meta" >> beam.Map(_write_meta, self.tokenizer_dir, self.output_dir, self.groups, self.config)
        )
