"""Typed partial objects while streaming: stream="objects" and on_field=.

Run: python examples/partial_objects.py   (the default SmolLM2 model; GUIDED_EXAMPLE_RANDOM=1 for a tiny
random model, which is what the test suite runs).  The command line does the same:
guided generate --schema person.json --stream objects "..."  prints one JSON line per update.
"""

from __future__ import annotations

import os

from pydantic import BaseModel

import guided


class Pet(BaseModel):
    name: str
    kind: str


class Person(BaseModel):
    name: str
    age: int
    pets: list[Pet]


def main() -> None:
    model = guided.models.random_model(seed=0) if os.environ.get("GUIDED_EXAMPLE_RANDOM") else guided.load_model()
    prompt = ('Ada is 36 and has a cat named Tom and a dog named Rex. Describe her as JSON like '
              '{"name": ..., "age": ..., "pets": [{"name": ..., "kind": ...}]}.')
    # each item: a Person with the fields completed so far (typed: age is an int the moment it is
    # complete); the last item is the validated Person
    for person in guided.generate(model, prompt, schema=Person, stream="objects", max_new_tokens=150):
        print("partial:", repr(person))
    # on_field fires the moment the grammar completes a value: its path from the root and its
    # JSON value, in document order (a container after its members, the root last)
    guided.generate(model, prompt, schema=Person, max_new_tokens=150,
                    on_field=lambda path, value: print("field:", "/".join(map(str, path)) or "(root)", value))


if __name__ == "__main__":
    main()
