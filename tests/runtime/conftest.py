from __future__ import annotations

from runtime_support import quiet_env

quiet_env()
