import sys

from blueno.cli import main

sys.exit(main())
