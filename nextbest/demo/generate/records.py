"""What the identity-bearing exports share: each person's native id per system, noisy
addresses and phones, the truth row of each record (the person it belongs to), and an
export in its file's row order."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.demo.generate.arrays import _choose, _str_table, _take, _with_nulls
from nextbest.demo.generate.noise import _PHONE_PROBS, _phone_forms
from nextbest.demo.generate.people import _CITIES, _STREET_SUFFIX, _STREETS, _Population
from nextbest.demo.generate.writer import _Writer


@dataclass
class _Ids:
    """Native ids per person (null where the person has no record in that system)."""

    crm: pa.Array
    has_crm: np.ndarray
    crm_dup_of: np.ndarray  # person index of each duplicate CRM record
    crm_dup: pa.Array
    loyalty: pa.Array
    has_loyalty: np.ndarray
    app: pa.Array
    has_app: np.ndarray
    device_owner: np.ndarray  # person index per device
    device_start: np.ndarray  # first device index per person
    n_devices: np.ndarray
    device: pa.Array
    crm_created_s: np.ndarray
    records: list[pa.Table] = field(default_factory=list)


def _address(pop: _Population, persons: np.ndarray, rng: np.random.Generator) -> dict:
    """Street, city and postcode of the persons' households, with format noise."""
    hh = pop.household[persons]
    m = persons.size
    abbrev = rng.random(m) < 0.3
    suffix_names = _str_table([s for pair in _STREET_SUFFIX for s in pair])
    suffix = _take(suffix_names, pop.suffix[hh].astype(np.int64) * 2 + abbrev)
    street = pc.binary_join_element_wise(
        pc.cast(pa.array(pop.street_no[hh]), pa.string()),
        _take(_str_table(_STREETS), pop.street[hh]),
        suffix,
        " ",
    )
    street = pc.choose(
        pa.array(_choose(rng, m, [0.85, 0.1, 0.05])),
        street,
        pc.utf8_upper(street),
        pc.utf8_lower(street),
    )
    city = _take(_str_table([c[0] for c in _CITIES]), pop.city[hh])
    city = pc.choose(pa.array(_choose(rng, m, [0.9, 0.1])), city, pc.utf8_upper(city))
    postcode = pc.take(pop.postcode, pa.array(hh.astype(np.int64)))
    postcode = pc.choose(
        pa.array(_choose(rng, m, [0.75, 0.15, 0.1])),
        postcode,
        pc.replace_substring(postcode, " ", ""),
        pc.utf8_lower(postcode),
    )
    return {"street": street, "city": city, "postcode": postcode}


def _phone_for(
    pop: _Population, persons: np.ndarray, rng: np.random.Generator, p_missing: float, p_land: float
) -> pa.Array:
    """A phone per record: the mobile, or the shared household landline, or missing."""
    use_land = (pop.landline[persons] >= 0) & (
        (rng.random(persons.size) < p_land) | ~pop.has_mobile[persons]
    )
    number = np.where(use_land, pop.landline[persons], pop.mobile[persons])
    missing = (~pop.has_mobile[persons] & ~use_land) | (rng.random(persons.size) < p_missing)
    return _with_nulls(_phone_forms(number, rng, _PHONE_PROBS), missing)


def _record_truth(source: str, ids: pa.Array, persons: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "record_id": pc.binary_join_element_wise(f"{source}:", ids, ""),
            "source": pa.array(np.full(persons.size, source)),
            "person_id": _person_ids(persons),
        }
    )


def _person_ids(persons: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        "P", pc.utf8_lpad(pc.cast(pa.array(persons), pa.string()), 7, "0"), ""
    )


def _per_person(ids: pa.Array, persons: np.ndarray, has: np.ndarray) -> pa.Array:
    """Each person's id among ``ids`` (one per person of the sorted ``persons``), null for
    persons without one (``~has``)."""
    at = np.searchsorted(persons, np.arange(has.size)).clip(0, max(persons.size - 1, 0))
    return pc.take(ids, pa.array(at, mask=~has))


@dataclass
class _Export:
    """One identity-bearing export in its file's row order, and its records' truth."""

    name: str
    table: pa.Table
    records: pa.Table

    def write(self, w: _Writer, records: list[pa.Table]) -> None:
        w.write(self.name, self.table)
        records.append(self.records)


def _shuffled(name: str, table: pa.Table, records: pa.Table, order: np.ndarray) -> _Export:
    idx = pa.array(order)
    return _Export(name, table.take(idx), records.take(idx))
