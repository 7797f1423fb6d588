"""Collection rules for the whole repository: modules that need an optional serving engine are
only collected (for their doctests) where that engine is installed (`make test-vllm`)."""

import importlib.util

collect_ignore = [path for module, path in [("vllm", "guided/integrations/vllm.py"),
                                              ("sglang", "guided/integrations/sglang.py")]
                  if importlib.util.find_spec(module) is None]
