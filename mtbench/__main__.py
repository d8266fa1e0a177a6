import sys

from mtbench.cli import main

sys.exit(main())
