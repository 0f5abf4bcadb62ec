"""Loaded by pytest before any test module.

Import the real `listener` package first: under `--import-mode=importlib`, pytest names
`listener/tests/test_x.py` "listener.tests.test_x" and, if `listener` is not imported yet, creates it
as a namespace package from the checkout's `listener/` folder, which hides `listener/src/listener`.
"""

import listener  # noqa: F401
