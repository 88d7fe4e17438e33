"""Build one study step in its own process: ``python -m clir_ot.study.worker CONFIG ROOT STEP_ID``.

The study runner starts it under ``torchrun`` for training steps when several GPUs are present; every
process joins the process group inside the training call and only rank 0 records the artifact. The
launcher holds the artifact's lock (:func:`clir_ot.study.runner.run_step_by_id`), so the ranks take none.
"""
from __future__ import annotations

import logging
import sys

# `python -m clir_ot.study.worker` imports the parent package clir_ot first, which installs the JVM
# hook before anything imports pyserini, so the runner can be imported here at the top.
from clir_ot.study.runner import execute_step_by_id


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        sys.stderr.write("usage: python -m clir_ot.study.worker CONFIG ROOT STEP_ID\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    execute_step_by_id(*args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
