"""Tool calls with guided: the model must call one of the tools with valid arguments.

Run: python examples/tool_calls.py   (uses the default SmolLM2 model; GUIDED_EXAMPLE_RANDOM=1 for a
tiny random model, which is what the test suite runs)
"""

from __future__ import annotations

import os

import guided
from guided import Tools


def get_weather(city: str, unit: str = "celsius") -> str:
    """Current weather in a city."""
    return f"It is 18 degrees {unit} in {city}."


def get_time(timezone: str) -> str:
    """Current time in a timezone."""
    return f"It is 12:00 in {timezone}."


SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}


def main() -> None:
    if os.environ.get("GUIDED_EXAMPLE_RANDOM"):
        model = guided.models.random_model(num_layers=2, seed=0)
    else:
        model = guided.load_model()
    tools = Tools([get_weather, get_time, SEARCH])
    prompt = [{"role": "system", "content": "You can call tools: get_weather(city, unit), get_time(timezone), "
                                            "search(query). Answer with <tool_call>{...}</tool_call>."},
              {"role": "user", "content": "What's the weather like in Paris?"}]
    calls = guided.generate(model, prompt, tools=tools, tool_choice="required", max_new_tokens=96)
    for call in calls:
        print(f"call: {call.name}({call.arguments})")
        if tools.functions.get(call.name):
            print("  ->", tools.dispatch(call))
    answer = guided.generate(model, "Say hello.", tools=tools, tool_choice="auto", max_new_tokens=24)
    print("auto:", answer)


if __name__ == "__main__":
    main()
