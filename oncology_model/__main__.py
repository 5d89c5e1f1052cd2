"""`python -m oncology_model`."""

import sys

from oncology_model.cli import main

sys.exit(main())
