"""``python -m gpubox``: the same as the ``gpubox`` command."""

import sys

from gpubox.cli import main

sys.exit(main())
