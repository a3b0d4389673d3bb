"""never_ready: hangs while its module is imported, so its worker never serves PPP.

The supervisor's readiness probe gives up at the allocation deadline: 504 allocation_timeout.
"""

import time

from plugins.hostile import hostile_plugin

time.sleep(3600)

plugin = hostile_plugin("never_ready", "Never becomes ready.")
