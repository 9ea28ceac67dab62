from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema
import pytest
import uvloop

from shadoweval.records import pair_schema


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests run on uvloop, the loop the proxy runs on in production."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
def validate_pair() -> Any:
    validator = jsonschema.Draft202012Validator(pair_schema())

    def check(record: dict[str, Any]) -> None:
        errors = list(validator.iter_errors(json.loads(json.dumps(record))))
        assert not errors, errors[0]

    return check
