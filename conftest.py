"""For every test and doctest: compiled IR is cached on disk in a folder of this test run only,
so that runs neither read nor fill the user's cache (and every run exercises the store)."""

import atexit
import os
import shutil
import tempfile

_ir_cache = tempfile.mkdtemp(prefix="guided-test-ir-")
os.environ["GUIDED_IR_CACHE"] = _ir_cache
atexit.register(shutil.rmtree, _ir_cache, ignore_errors=True)
