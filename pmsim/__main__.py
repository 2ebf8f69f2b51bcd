import sys

from pmsim.cli import main

sys.exit(main())
