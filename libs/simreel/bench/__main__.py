"""`python -m simreel.bench [render|compare|scenes] ...` — the same as `simreel bench ...`."""
import sys

from simreel.bench.cli import main

sys.exit(main())
