import sys

from torch.distributed.elastic.multiprocessing.errors import record

from train.cli import main

# under torchrun, an uncaught error of a rank is written where the launcher reports it, naming the rank
sys.exit(record(main)())
