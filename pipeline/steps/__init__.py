"""The per-document work, without Beam: HTTP bodies decoded to HTML (`html`), main text extracted (`extract`),
wikitext cleaned (`wikitext`), language identified (`langid`), quality filters (`filters`), and the one unit
processor that runs a source's documents through the ordered steps under one guard (`process`). A new step is a
small class here, its thresholds constructor arguments with published defaults, tested without a pipeline."""
