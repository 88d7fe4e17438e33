"""``python -m clir_ot`` is the ``clir-ot`` command."""
import sys

from clir_ot.cli import main

sys.exit(main())
