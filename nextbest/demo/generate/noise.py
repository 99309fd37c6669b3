"""How source systems misspell and misformat what they hold: name spellings and typos, email
and phone formats, and the record-level noise (:data:`RECORD_NOISE`: date typos, nicknames,
swapped or missing names, ...) applied to each export."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.demo.generate.arrays import _choose, _rng, _str_table


def _typo(name: str, rng: np.random.Generator) -> str:
    """A one-character edit (substitute, delete, insert or swap) of ``name``."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = int(rng.integers(1, len(name)))
    op = int(rng.integers(0, 4))
    if op == 0:
        return name[:i] + letters[int(rng.integers(0, 26))] + name[i + 1 :]
    if op == 1 and len(name) > 3:
        return name[:i] + name[i + 1 :]
    if op == 2:
        return name[:i] + letters[int(rng.integers(0, 26))] + name[i:]
    if i < len(name) - 1 and name[i] != name[i + 1]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return name[:i] + letters[int(rng.integers(0, 26))] + name[i + 1 :]


_NAME_FORMS = 7  # clean, upper, lower, padded, three typos

#: Record-level noise real exports carry, per record of a source that has the field
#: (rates stated in docs/data-dictionary.md). Drawn from their own random streams, so
#: every other generated value is the same as without them.
RECORD_NOISE: dict[str, float] = {
    "dob_digit_typo": 0.02,
    "dob_day_month_swap": 0.01,
    "postcode_typo": 0.02,
    "nickname": 0.02,
    "swapped_names": 0.01,
    "missing_last_name": 0.02,
    "missing_dob": 0.02,
    "missing_street": 0.03,
}
_NICKNAMES = {
    "James": "Jim", "Robert": "Bob", "John": "Jack", "Michael": "Mike", "William": "Bill",
    "Elizabeth": "Liz", "David": "Dave", "Richard": "Rick", "Joseph": "Joe",
    "Jessica": "Jess", "Thomas": "Tom", "Charles": "Charlie", "Daniel": "Dan",
    "Matthew": "Matt", "Anthony": "Tony", "Margaret": "Maggie", "Steven": "Steve",
    "Andrew": "Andy", "Kenneth": "Ken", "Kimberly": "Kim", "Edward": "Ed",
    "Timothy": "Tim", "Jeffrey": "Jeff", "Nicholas": "Nick", "Jonathan": "Jon",
    "Stephen": "Steve", "Rebecca": "Becky", "Deborah": "Debbie", "Pamela": "Pam",
    "Patricia": "Pat", "Susan": "Sue", "Catherine": "Kate", "Oliver": "Ollie",
    "Frederick": "Fred", "Alexander": "Alex", "Samuel": "Sam", "Benjamin": "Ben",
    "Jennifer": "Jenny", "Cynthia": "Cindy", "Kathleen": "Kathy", "Stephanie": "Steph",
    "Sandra": "Sandy", "Dorothy": "Dot", "Ronald": "Ron", "Donald": "Don",
    "Lawrence": "Larry", "Joshua": "Josh", "Nicole": "Nikki", "Brandon": "Brad",
}  # fmt: skip


def _digit_typo(value: str, rng: np.random.Generator) -> str:
    """One digit of a YYYY-MM-DD date replaced (year's last two digits, month or day),
    keeping a valid date: an invalid one would be dropped by any reader, not mislead it."""
    for _ in range(10):
        pos = int(rng.choice([2, 3, 5, 6, 8, 9]))
        digit = str((int(value[pos]) + int(rng.integers(1, 10))) % 10)
        typo = value[:pos] + digit + value[pos + 1 :]
        try:
            date.fromisoformat(typo)
        except ValueError:
            continue
        return typo
    return value


def _postcode_typo(value: str, rng: np.random.Generator) -> str:
    """One letter or digit of a postcode replaced by another of its kind."""
    spots = [i for i, c in enumerate(value) if c.isalnum()]
    i = spots[int(rng.integers(1, len(spots)))]
    pool = "0123456789" if value[i].isdigit() else "ABCDEFGHJKLMNPRSTUWXY"
    return value[:i] + pool[int(rng.integers(0, len(pool)))] + value[i + 1 :]


def _record_noise(table: pa.Table, seed: int, source: str) -> pa.Table:
    """Apply :data:`RECORD_NOISE` to the name, date-of-birth and address columns present."""
    rng = _rng(seed, f"noise-{source}")
    noisy = ("first_name", "last_name", "date_of_birth", "postcode", "street")
    cols = {c: table.column(c).to_pylist() for c in noisy if c in table.column_names}
    n = table.num_rows

    def pick(rate: str) -> np.ndarray:
        return np.flatnonzero(rng.random(n) < RECORD_NOISE[rate])

    if "date_of_birth" in cols:
        dob = cols["date_of_birth"]
        for i in pick("dob_digit_typo"):
            if dob[i]:
                dob[i] = _digit_typo(dob[i], rng)
        for i in pick("dob_day_month_swap"):
            if dob[i] and int(dob[i][8:10]) <= 12:
                dob[i] = f"{dob[i][:4]}-{dob[i][8:10]}-{dob[i][5:7]}"
        for i in pick("missing_dob"):
            dob[i] = None
    if "postcode" in cols:
        for i in pick("postcode_typo"):
            if cols["postcode"][i]:
                cols["postcode"][i] = _postcode_typo(cols["postcode"][i], rng)
    if "first_name" in cols:
        first = cols["first_name"]
        for i in pick("nickname"):
            nick = _NICKNAMES.get((first[i] or "").strip().title())
            if nick:
                first[i] = nick
        if "last_name" in cols:
            last = cols["last_name"]
            for i in pick("swapped_names"):
                first[i], last[i] = last[i], first[i]
            for i in pick("missing_last_name"):
                last[i] = None
    if "street" in cols:
        for i in pick("missing_street"):
            cols["street"][i] = None
    for c, values in cols.items():
        i = table.column_names.index(c)
        table = table.set_column(i, c, pa.array(values, type=table.schema.field(c).type))
    return table


def _name_variants(names: list[str], rng: np.random.Generator) -> pa.Array:
    """Flattened [len(names), _NAME_FORMS] table of spellings of each name."""
    out: list[str] = []
    for name in names:
        out += [name, name.upper(), name.lower(), f" {name} "]
        out += [_typo(name, rng) for _ in range(3)]
    return _str_table(out)


# Probabilities of the clean, upper, lower, padded and typo spellings of a name.
_NAME_CLEAN = [1.0, 0, 0, 0, 0, 0, 0]
_NAME_NOISY = [0.78, 0.06, 0.05, 0.03, 0.027, 0.027, 0.026]


def _name_idx(base: np.ndarray, rng: np.random.Generator, probs: list[float]) -> np.ndarray:
    return base.astype(np.int64) * _NAME_FORMS + _choose(rng, base.size, probs)


def _email_forms(email: pa.Array, rng: np.random.Generator, probs: list[float]) -> pa.Array:
    """Same address in another form: upper-cased, capitalised or padded with spaces."""
    which = _choose(rng, len(email), probs)
    return pc.choose(
        pa.array(which),
        email,
        pc.utf8_upper(email),
        pc.utf8_capitalize(email),
        pc.binary_join_element_wise(" ", email, "  ", ""),
    )


def _phone_forms(number: np.ndarray, rng: np.random.Generator, probs: list[float]) -> pa.Array:
    """Format 10-digit UK national numbers as +44 7700 900123, 07700900123, ... ."""
    s = pc.cast(pa.array(number), pa.string())
    head = pc.utf8_slice_codeunits(s, 0, 4)
    tail = pc.utf8_slice_codeunits(s, 4, 10)
    mid = pc.utf8_slice_codeunits(s, 4, 7)
    end = pc.utf8_slice_codeunits(s, 7, 10)
    which = _choose(rng, number.size, probs)
    return pc.choose(
        pa.array(which),
        pc.binary_join_element_wise("+44 ", head, " ", tail, ""),
        pc.binary_join_element_wise("0", s, ""),
        pc.binary_join_element_wise("0", head, "-", mid, "-", end, ""),
        pc.binary_join_element_wise("44", s, ""),
    )


_PHONE_PROBS = [0.3, 0.4, 0.15, 0.15]
