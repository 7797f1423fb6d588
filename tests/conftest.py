"""Shared fixtures: the real SmolLM2 tokenizer and vocabulary, a tiny random model, the real model."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

import guided
from guided import compiler, models

# CI runs the property tests with a fixed seed so that main stays reproducibly green; local runs
# explore new examples every time (and keep failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session", autouse=True)
def every_compiled_ir_is_validated():
    """Each IR `guided.compile` lowers during the tests must meet `guided.ir.validate`."""
    original = compiler.lower
    compiler.lower = lambda spec: original(spec).validate()
    yield
    compiler.lower = original


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    return models.load_tokenizer()


@pytest.fixture(scope="session")
def smollm2_vocab(smollm2_tokenizer):
    return guided.Vocabulary.from_tokenizer(smollm2_tokenizer)


@pytest.fixture(scope="session")
def tiny_model():
    """SmolLM2's architecture and tokenizer with 2 randomly initialised layers: fast, deterministic."""
    return models.random_model(num_layers=2, seed=0)


@pytest.fixture(scope="session")
def smollm2_model():
    return models.load_model()
