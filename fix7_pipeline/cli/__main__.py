"""`python -m fix7_pipeline.cli`: the same as the `fix7` console script."""

import sys

from fix7_pipeline.cli.main import main

sys.exit(main())
