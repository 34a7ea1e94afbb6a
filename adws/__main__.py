from __future__ import annotations

import sys

from adws.cli import main

sys.exit(main())
