import sys

from kulak.cli import main

sys.exit(main())
