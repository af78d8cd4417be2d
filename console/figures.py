"""Figures for people: rates, percentages and latencies as short text, `N/A` where the backend
has nothing to say (no traffic, no telemetry)."""

from __future__ import annotations

from console.money import usd

NA = "N/A"


def ms(value: float | None) -> str:
    if value is None:
        return NA
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def rate(value: float, unit: str = "") -> str:
    if value == 0:
        return f"0{unit}"
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.2f}{unit}" if value >= 1 else f"{value:.3f}{unit}"


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0.0%"


def share(value: float | None) -> str:
    """0..1 as a percentage."""
    return NA if value is None else f"{100 * value:.0f}%"


def margin(bps: int | None) -> str:
    """Profit over revenue; beyond ±999% it stops being a useful number."""
    if bps is None:
        return NA
    if bps < -99_900:
        return "<-999%"
    return f"{bps / 100:.0f}%"


def per_hour(nano: int) -> str:
    return usd(nano)


def uptime(requests: int, failures: int, min_requests: int) -> str:
    """A model's uptime as OpenRouter counts it, rounded down to 0.1 % (a single failure never shows as
    100 %); below OpenRouter's threshold, N/A with the requests counted so far."""
    if requests < min_requests or requests <= 0:
        return f"{NA} ({requests} req)"
    permille = (requests - failures) * 1000 // requests
    return f"{permille // 10}.{permille % 10}%"
