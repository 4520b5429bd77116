"""``python -m router`` is ``mcp-router``."""

import sys

from router.tools.cli import main

sys.exit(main())
