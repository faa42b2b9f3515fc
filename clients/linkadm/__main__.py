"""`python3 -m clients.linkadm`: the same program as the `linkadm` console script."""

from __future__ import annotations

import sys

from clients.linkadm.main import main

sys.exit(main())
