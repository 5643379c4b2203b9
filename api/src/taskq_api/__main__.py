"""`python -m taskq_api`: the same as `taskq-api`."""

import sys

from taskq_api.server.main import main

sys.exit(main())
