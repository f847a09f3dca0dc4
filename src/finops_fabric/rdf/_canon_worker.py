"""Child process: read N-Quads (or N-Triples) on stdin, write RDFC-1.0 canonical N-Quads on stdout.

Run by canon.py under a time budget, so that a graph whose canonicalization explodes is
killed instead of hanging the caller.
"""

from __future__ import annotations

import sys

import pyoxigraph as ox

from finops_fabric.rdf.canon import _canonicalize_in_process


def main() -> None:
    data = sys.stdin.buffer.read()
    quads = list(ox.parse(data, ox.RdfFormat.N_QUADS))
    sys.stdout.buffer.write(_canonicalize_in_process(quads))


if __name__ == "__main__":
    main()
