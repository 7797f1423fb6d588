"""Demo: a real constrained generation with the default model (SmolLM2-135M-Instruct).

Run with `make demo`. The first run converts the model once (~25 s) and caches it.
"""

import time

import guided

model = guided.load_model()
prompts = [
    ("When did the Apollo 11 mission land on the Moon? Answer with the date.", r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"),
    ("Give me a US phone number for a pizza place.", r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}"),
    ("Is Paris the capital of France?", r"(yes|no)"),
    ("Write an email address for Ada Lovelace.", r"[a-z]+\.[a-z]+@[a-z]+\.(com|org|net)"),
]
for prompt, regex in prompts:
    start = time.perf_counter()
    answer = guided.generate(model, prompt, regex=regex, max_new_tokens=40)
    print(f"{prompt}\n  regex  {regex}\n  answer {answer!r}   ({time.perf_counter() - start:.2f} s)\n")
