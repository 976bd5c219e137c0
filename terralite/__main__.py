import sys

from terralite.cli import main

sys.exit(main())
