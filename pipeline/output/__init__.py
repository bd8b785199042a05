"""What a run leaves in its output folder: shards written atomically (`sinks`), the funnel behind `stats.json`
(`stats`), the dataset card `README.md` (`card`) and `report.html` (`report`). No Beam: the Beam layer
(`pipeline.beam.write`) calls these."""
