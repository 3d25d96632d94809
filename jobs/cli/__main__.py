"""`python -m jobs.cli ...`: the same as `relay ...`."""

import sys

from jobs.cli.app import main

sys.exit(main())
