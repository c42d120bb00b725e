"""``python -m medcodec`` runs the command line."""

import sys

from medcodec.cli import main

sys.exit(main())
