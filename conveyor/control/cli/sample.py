"""The sample shop database the README's first command migrates (SQLite, about 100k rows)."""

from __future__ import annotations

import random
import sqlite3
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

FIRST = [
    "Ana",
    "Björn",
    "Chloé",
    "Dmitri",
    "Eun-ji",
    "Fatima",
    "Gonzalo",
    "Hiroshi",
    "Ingrid",
    "José",
    "Kwame",
    "Léa",
    "Mårten",
    "Nguyễn",
    "Olga",
    "Priya",
    "Quentin",
    "Rūta",
    "Søren",
    "Zoë",
]
LAST = ["Silva", "Müller", "O'Brien", "Kowalski", "Yılmaz", "Дмитриев", "山田", "García", "Nørgaard", "Smith"]
WORDS = [
    "lamp",
    "chair",
    "kettle",
    "mug",
    "desk",
    "cable",
    "sofa",
    "tent",
    "ruler",
    "scarf",
    "☕ cup",
    "🚲 bell",
    "blender",
    "café table",
    "piñata",
]

SCHEMA = """
CREATE TABLE customers (
  id INTEGER PRIMARY KEY,
  email VARCHAR(120) NOT NULL UNIQUE,
  name VARCHAR(100) NOT NULL,
  birth_date DATE,
  signed_up DATETIME NOT NULL,
  loyalty_points INTEGER,
  notes TEXT
);
CREATE TABLE products (
  id INTEGER PRIMARY KEY,
  sku CHAR(12) NOT NULL,
  title VARCHAR(200) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  weight_kg REAL,
  in_stock BOOLEAN NOT NULL,
  thumbnail BLOB
);
CREATE UNIQUE INDEX products_sku ON products (sku);
CREATE TABLE orders (
  id INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers (id),
  ordered_at DATETIME NOT NULL,
  status VARCHAR(20) NOT NULL,
  total DECIMAL(12,2) NOT NULL,
  shipping_note TEXT
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE order_items (
  order_id INTEGER NOT NULL REFERENCES orders (id),
  line_no INTEGER NOT NULL,
  product_id INTEGER NOT NULL REFERENCES products (id),
  quantity INTEGER NOT NULL,
  unit_price DECIMAL(10,2) NOT NULL,
  PRIMARY KEY (order_id, line_no)
);
"""


def generate(path: Path, rows: int = 100_000, seed: int = 7) -> dict[str, int]:
    """Write the shop database; ``rows`` is the approximate total over all tables."""
    rng = random.Random(seed)
    path.unlink(missing_ok=True)
    n_customers = max(10, rows // 10)
    n_products = max(10, rows // 50)
    n_orders = max(10, rows * 3 // 10)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    start = datetime(2020, 1, 1)
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (
                i,
                f"customer{i}@example.com",
                f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                (date(1950, 1, 1) + timedelta(days=rng.randrange(20000))).isoformat() if rng.random() > 0.2 else None,
                (start + timedelta(seconds=rng.randrange(10**8), microseconds=rng.randrange(10**6))).isoformat(" "),
                rng.randrange(10_000) if rng.random() > 0.3 else None,
                rng.choice(["", None, "VIP ⭐", "prefers e-mail", "多谢"]),
            )
            for i in range(1, n_customers + 1)
        ),
    )
    conn.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            (
                i,
                f"SKU{i:09d}",
                f"{rng.choice(WORDS)} #{i}",
                str(Decimal(rng.randrange(100, 100_000)) / 100),
                round(rng.uniform(0.05, 40), 3) if rng.random() > 0.1 else None,
                rng.random() > 0.2,
                rng.randbytes(rng.randrange(0, 2048)) if rng.random() > 0.3 else None,
            )
            for i in range(1, n_products + 1)
        ),
    )
    prices = {i: Decimal(rng.randrange(100, 100_000)) / 100 for i in range(1, n_products + 1)}
    items = []
    orders = []
    for o in range(1, n_orders + 1):
        total = Decimal(0)
        for line in range(1, rng.randrange(1, 4) + 1):
            product = rng.randrange(1, n_products + 1)
            quantity = rng.randrange(1, 5)
            total += prices[product] * quantity
            items.append((o, line, product, quantity, str(prices[product])))
        orders.append(
            (
                o,
                rng.randrange(1, n_customers + 1),
                (start + timedelta(seconds=rng.randrange(10**8))).isoformat(" "),
                rng.choice(["new", "paid", "shipped", "returned"]),
                str(total),
                rng.choice([None, "leave at the door", "fragile — handle with care", ""]),
            )
        )
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", orders)
    conn.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?)", items)
    conn.commit()
    conn.close()
    return {"customers": n_customers, "products": n_products, "orders": n_orders, "order_items": len(items)}
