import sys

from radsched.cli import main

sys.exit(main())
