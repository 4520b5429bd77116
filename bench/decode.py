"""What one reading of a body costs: ``core.decode.parse_body`` against bare ``orjson.loads``.

``parse_body`` adds to orjson a duplicate-key check (a walk of the parsed
body when it has an object) and an exact reading of integers orjson would
round (only when the body has a run of 19 digits).  For each body shape this
prints the time per call of both and the difference, best of five runs:

    python -m bench.decode [--number 20000]
"""

from __future__ import annotations

import argparse
import functools

import orjson

from bench.microtable import best_us, print_rows
from router.core.decode import parse_body

ORDER = {
    "order_id": "6f1c2a7e-3b1d-4c1a-9a0e-2f4b5c6d7e8f", "customer_id": "c-1042",
    "created_at": "2026-12-01T08:40:00Z", "currency": "EUR", "total_amount": 1234.5,
    "lines": [{"sku": f"SKU-{i}", "quantity": i + 1, "unit_price": 9.99} for i in range(5)],
    "shipping": {"street": "1 Main St", "city": "Lyon", "postcode": "69001", "country": "FR"},
}

BODIES: dict[str, bytes] = {
    "order (500 B, 1 object per line)": orjson.dumps(ORDER),
    "small event (80 B)": orjson.dumps({"id": "e-1", "type": "ping", "at": 1733040000, "ok": True}),
    "1,000 objects (60 kB)": orjson.dumps([{"id": i, "name": f"n{i}", "t": "10:00"}
                                            for i in range(1000)]),
    "10,000 numbers (no object)": orjson.dumps(list(range(10_000))),
    "snowflake id as a string (19 digits)": orjson.dumps({**ORDER, "id": "1234567890123456789"}),
    "integer past 2**64 (exact reading)":
        orjson.dumps(ORDER)[:-1] + b',"big":18446744073709551616}',
}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per run")
    args = parser.parse_args()
    rows = []
    for name, body in BODIES.items():
        number = max(1, args.number // max(1, len(body) // 1000))
        bare = best_us(functools.partial(orjson.loads, body), number)
        ours = best_us(functools.partial(parse_body, body), number)
        rows.append({"body": name, "bytes": len(body), "orjson_us": round(bare, 2),
                     "parse_body_us": round(ours, 2), "added_us": round(ours - bare, 2),
                     "ratio": round(ours / bare, 2)})
    print_rows(rows, {"body": "body", "bytes": "bytes", "orjson_us": "orjson µs",
                      "parse_body_us": "parse_body µs", "added_us": "added µs",
                      "ratio": "ratio"})


if __name__ == "__main__":
    main()
