from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from shadoweval.records import pair_schema


@pytest.fixture
def validate_pair() -> Any:
    validator = jsonschema.Draft202012Validator(pair_schema())

    def check(record: dict[str, Any]) -> None:
        errors = list(validator.iter_errors(json.loads(json.dumps(record))))
        assert not errors, errors[0]

    return check
