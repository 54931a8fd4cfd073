"""Suite-wide settings."""

import os

# Every test checks in its own process: a resident server a developer runs (or
# RNNLINT_SERVER=auto in their shell) must not answer for it. tests/test_server.py builds
# its own environments and turns the server on where it tests it.
os.environ["RNNLINT_SERVER"] = "off"
