"""`python -m vampnet.cli`: the `vampnet` command."""
from . import run

run()
