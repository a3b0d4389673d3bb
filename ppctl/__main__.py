import sys

from ppctl.cli import main

sys.exit(main())
