"""The stock table: read by product id, validated with errors naming file and column."""

from __future__ import annotations

import pandas as pd
import pytest

from nextbest.core.settings import Settings
from nextbest.decisions.catalog import ConfigError
from nextbest.decisions.runtime import load_stock


def test_stock_is_read_by_product_and_extra_columns_are_ignored(tmp_path):
    path = tmp_path / "stock.parquet"
    pd.DataFrame({"product_id": ["a", "b"], "stock": [3, 0], "name": ["A", "B"]}).to_parquet(path)
    assert load_stock(path) == {"a": 3.0, "b": 0.0}
    assert load_stock(tmp_path / "absent.parquet") == {}


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"product_id": ["a"]}), "missing column(s) stock"),
        (pd.DataFrame({"product_id": ["a", "a"], "stock": [1, 2]}), "'product_id': repeated a"),
        (pd.DataFrame({"product_id": ["a", None], "stock": [1, 2]}), "'product_id': 1 empty"),
        (pd.DataFrame({"product_id": ["a", "b"], "stock": [1, -2]}), "'stock': not a finite"),
    ],
)
def test_invalid_stock_tables_are_refused_naming_file_and_column(tmp_path, frame, message):
    path = tmp_path / "stock.parquet"
    frame.to_parquet(path)
    with pytest.raises(ConfigError, match=r"stock\.parquet: .*") as err:
        load_stock(path)
    assert message in str(err.value)


def test_stock_path_defaults_to_the_demo_export_and_can_be_set(tmp_path):
    assert Settings(home=tmp_path).stock_path == tmp_path.resolve() / "raw" / "products.parquet"
    own = tmp_path / "erp_stock.parquet"
    assert Settings(home=tmp_path, stock_file=own).stock_path == own
