"""``python -m router`` is ``mcp-router``."""

import sys

from router.cli import main

sys.exit(main())
