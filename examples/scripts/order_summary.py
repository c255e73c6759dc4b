"""Summarise an order for a support agent: totals, tax and a shipping estimate."""

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal


@dataclass
class Line:
    sku: str
    quantity: int
    unit_price: float


@dataclass
class Order:
    order_id: int
    customer: str
    lines: list[Line] = field(default_factory=list)


def main(
    order: Order,
    shipping: Literal["standard", "express"] = "standard",
    ordered_on: date | None = None,
    tax_rate: float = 0.2,
) -> dict:
    """Total an order and estimate its delivery date.

    Args:
        order: the order, with its lines
        shipping: how the order ships
        ordered_on: the order date (today when empty)
        tax_rate: VAT as a fraction
    """
    subtotal = sum(line.quantity * line.unit_price for line in order.lines)
    days = 2 if shipping == "express" else 5
    start = ordered_on or date.today()
    print(f"order {order.order_id} for {order.customer}: {len(order.lines)} lines")
    return {
        "order_id": order.order_id,
        "items": sum(line.quantity for line in order.lines),
        "subtotal": round(subtotal, 2),
        "tax": round(subtotal * tax_rate, 2),
        "total": round(subtotal * (1 + tax_rate), 2),
        "delivery_by": start + timedelta(days=days),
    }
