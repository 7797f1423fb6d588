"""OpenAI request shapes: response_format= and tools= with tool_choice=, parallel_tool_calls= and strict.

Run: python examples/openai_shapes.py   (the default SmolLM2 model; GUIDED_EXAMPLE_RANDOM=1 for a tiny
random model, which is what the test suite runs)
"""

from __future__ import annotations

import os

import guided

# response_format as in OpenAI's Chat Completions API (strict mode: every property required,
# additionalProperties false; a schema OpenAI would refuse is refused with OpenAI's reason)
CITY_FORMAT = {"type": "json_schema", "json_schema": {"name": "city", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["name", "country"],
    "properties": {"name": {"type": "string"}, "country": {"type": "string"}}}}}

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city.", "strict": True,
        "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                       "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Current time in a timezone.",
        "parameters": {"type": "object", "required": ["timezone"], "properties": {"timezone": {"type": "string"}}}}},
]


def main() -> None:
    model = guided.models.random_model(seed=0) if os.environ.get("GUIDED_EXAMPLE_RANDOM") else guided.load_model()
    city = guided.generate(model, "Name the capital of Japan as JSON.", response_format=CITY_FORMAT,
                           max_new_tokens=60)
    print("json_schema:", city)                     # a dict valid against the schema
    anything = guided.generate(model, "Describe a cat as a JSON object.", response_format={"type": "json_object"},
                               max_new_tokens=60)
    print("json_object:", anything)                 # any JSON object

    try:  # strict mode refuses what OpenAI refuses, with OpenAI's reason
        guided.generate(model, "q", response_format={"type": "json_schema", "json_schema": {
            "name": "loose", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}})
    except guided.StrictSchemaError as error:
        print("refused:", error)

    messages = [{"role": "user", "content": "What's the weather in Paris, and the time in Tokyo?"}]
    calls = guided.generate(model, messages, tools=TOOLS, tool_choice="required", parallel_tool_calls=True,
                            max_new_tokens=200)
    print("required:", calls)                       # one or more guided.ToolCall
    named = guided.generate(model, messages, tools=TOOLS, max_new_tokens=200,
                            tool_choice={"type": "function", "function": {"name": "get_time"}})
    print("named:", named)                          # exactly one call to get_time
    print("none:", repr(guided.generate(model, messages, tools=TOOLS, tool_choice="none", max_new_tokens=20)))


if __name__ == "__main__":
    main()
