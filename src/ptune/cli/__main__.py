"""``python -m ptune.cli`` (e.g. under ``accelerate launch``)."""

import sys

from ptune.cli import main

sys.exit(main())
