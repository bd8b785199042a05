"""Curation on Spark (`--engine spark`): the engine layer beside `pipeline.beam`, as thin. `read`: sources through
the unit processor, one unit per task; `dedup`: unique ids, exact and MinHash deduplication with connected
components; `curate`: a whole recipe, its shards written through `pipeline.output.shards`; `session`: starting Spark
and the checks that make a bad setup one clear line. PySpark is imported only when a run starts."""
