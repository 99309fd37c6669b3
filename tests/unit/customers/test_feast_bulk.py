"""The bulk encoders produce Feast's own bytes and texts, value by value."""

from __future__ import annotations

import numpy as np
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from customers.feast_bulk import encode_by_unique, encode_doubles, entity_keys


def _feast(values: np.ndarray, kind: ValueType) -> tuple[list[bytes], list[str | None]]:
    protos = python_values_to_proto_values(values, kind)
    return [p.SerializeToString() for p in protos], [
        extract_text_and_num(p, False)[0] for p in protos
    ]


def test_doubles_match_feasts_value_protos_and_texts() -> None:
    values = np.array(
        [0.0, -0.0, 1.0, -2.5, 1e-310, 1e300, np.inf, -np.inf, np.nan, 451.10542824074076, 2.0]
    )
    assert encode_doubles(values) == _feast(values, ValueType.DOUBLE)


def test_ints_and_strings_match_feast_including_nulls() -> None:
    ints = np.array([0, 1, -1, 2**40, -(2**62), 1, 0], dtype=np.int64)
    assert encode_by_unique(ints, ValueType.INT64) == _feast(ints, ValueType.INT64)
    strings = np.array(["C1", None, "", "é", "C1"], dtype=object)
    got = encode_by_unique(strings, ValueType.STRING)
    want = _feast(strings, ValueType.STRING)
    assert got == want
    assert got[0][1] == b""  # None is Feast's null


@pytest.mark.parametrize("value", ["C5640de6091af", "", "x" * 300, "ünï\x00"])
def test_entity_keys_match_serialize_entity_key(value: str) -> None:
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=value)])
    want = serialize_entity_key(key, entity_key_serialization_version=3)
    assert entity_keys("customer_id", [value], 3) == [want]
