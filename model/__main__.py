import sys

sys.exit("python -m model: the model package has no command; train it with `python -m train` (issue #6).")
