import sys

sys.exit("python -m model: the model package has no command; train with `python -m train --config configs/demo.toml`.")
