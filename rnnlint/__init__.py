"""rnnlint: a linter for recurrent-network training code.

The static path (this package minus ``rnnlint.runtime``) never imports torch,
tensorflow or the code it checks.
"""

__version__ = "0.1.0"
