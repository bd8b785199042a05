"""What the other packages share with curation: settings and errors, the document schema, the one corpus reader,
remote files, report page helpers and the generated sample. `tokenizer/` and `train/` import from here and from
nowhere else in `pipeline/`; these modules import nothing heavy (no Beam, no torch, no extraction libraries), and
tests/test_layout.py keeps both rules."""
