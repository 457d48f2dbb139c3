"""Session-wide test settings.

Every Ray the tests start or join is on loopback and runs without Ray 2.60's token authentication
(``RAY_AUTH_MODE=disabled``, as ``tests/scale``'s cluster is started). Ray reads the mode once per process, at its
first ``ray.init``: set it before any test starts Ray, or a later test that joins the loopback cluster inherits the
mode of an earlier local Ray and its actors never start.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
