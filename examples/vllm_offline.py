"""guided inside an offline vLLM engine: one batch mixing a schema, a regex, a grammar, a choice and free text.

Run in the vLLM venv (`make test-vllm` creates it): `.venv-vllm/bin/python examples/vllm_offline.py`.
"""

from vllm import LLM, SamplingParams

from guided import models
from guided.integrations.vllm import GuidedLogitsProcessor

if __name__ == "__main__":  # vLLM starts its engine processes with spawn
    llm = LLM(str(models.default_model_dir()), logits_processors=[GuidedLogitsProcessor],
              max_model_len=2048, enforce_eager=True, kv_cache_memory_bytes=1 << 30)
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                               "population": {"type": "integer", "minimum": 0}},
              "required": ["city", "population"]}
    requests = [
        ("Describe a city as JSON.", {"guided_json": schema}),
        ("A date in ISO format:", {"guided_regex": r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"}),
        ("Write 2+3*4 as an arithmetic expression.", {"guided_grammar": "arithmetic"}),
        ("Is water wet?", {"guided_choice": ["yes", "no"]}),
        ("Say hello.", None),
    ]
    tokenizer = llm.get_tokenizer()
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p, _ in requests]
    params = [SamplingParams(max_tokens=80, temperature=0.7, seed=0, extra_args=extra) for _, extra in requests]
    for (prompt, extra), out in zip(requests, llm.generate(prompts, params)):
        print(f"{prompt}\n  {next(iter(extra)) if extra else 'free'}: {out.outputs[0].text!r}")
