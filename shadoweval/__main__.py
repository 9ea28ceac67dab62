import sys

from shadoweval.cli import main

sys.exit(main())
