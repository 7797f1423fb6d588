"""Tool calls in each model family's wire format: tool_format="hermes", "llama3", "mistral" or "auto".

Run: python examples/tool_formats.py   (the default SmolLM2 model; GUIDED_EXAMPLE_RANDOM=1 for a tiny
random model, which is what the test suite runs)
"""

from __future__ import annotations

import os

import guided

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}


def main() -> None:
    model = guided.models.random_model(seed=0) if os.environ.get("GUIDED_EXAMPLE_RANDOM") else guided.load_model()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    for family in ("hermes", "llama3", "mistral"):
        g = guided.generate(model, messages, tools=[WEATHER], tool_choice="required", tool_format=family,
                            max_new_tokens=200, details=True)
        print(f"{family}: {g.text.strip()!r}")     # the wire text, as that family's parser reads it
        print(f"  -> {g.value}")                   # read back: [ToolCall(name='get_weather', ...)]
    # "auto" (the default) takes the format from the model's chat template (SmolLM2's: hermes)
    print("auto:", guided.frontends.tools.tool_format_from_template(model.tokenizer.chat_template))


if __name__ == "__main__":
    main()
