"""``python -m cli``: the ``facebench`` command from this source tree (no install needed)."""

import sys

from cli.app import main

sys.exit(main(prog_name="facebench"))
