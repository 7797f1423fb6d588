"""Rules for the whole repository's tests and doctests.

Compiled IR is cached on disk in a folder of this test run only, so that runs neither read nor
fill the user's cache (and every run exercises the store). Modules that need an optional serving
engine are only collected (for their doctests) where that engine is installed (`make test-vllm`).
"""

import atexit
import importlib.util
import os
import shutil
import tempfile

_ir_cache = tempfile.mkdtemp(prefix="guided-test-ir-")
os.environ["GUIDED_IR_CACHE"] = _ir_cache
atexit.register(shutil.rmtree, _ir_cache, ignore_errors=True)

collect_ignore = [path for module, path in [("vllm", "guided/integrations/vllm.py"),
                                              ("sglang", "guided/integrations/sglang.py")]
                  if importlib.util.find_spec(module) is None]
