import sys

from torchdeck.cli import main

sys.exit(main())
