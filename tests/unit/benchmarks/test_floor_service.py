"""The floor of the HTTP benchmark is configured as the product is, and the ratios to it
are judged against the targets."""

from __future__ import annotations

from benchmarks import floor_service, http_bench
from nextbest.core.settings import Settings
from serving.service import service_options


def test_the_floor_has_the_products_service_options() -> None:
    product = service_options(Settings())
    floor = floor_service.OPTIONS
    for key in ("workers", "threads", "traffic", "logging", "tracing"):
        assert floor[key] == product[key], key


def _figures(p50: float, p99: float, rate: float, load_p99: float) -> dict:
    seq = {"p50_ms": p50, "p99_ms": p99, "server_cpu_ms_per_request": p50}
    return {
        "sequential": seq,
        "sequential_wrk": seq,
        "load": {"decisions_per_s": rate, "p99_ms": load_p99, "server_cpu_ms_per_decision": 1.0},
    }


def test_floor_ratios_say_which_targets_are_met() -> None:
    floor = _figures(1.0, 2.0, 1000.0, 10.0)
    out = http_bench.floor_ratios(_figures(1.4, 3.2, 650.0, 20.0), floor)
    assert out["sequential_p50_x_floor"] == 1.4
    assert out["met"] == {
        "sequential_p50_x_floor": True,
        "sequential_p99_x_floor": False,  # 1.6x
        "throughput_share_of_floor": False,  # 65 %
        "load_p99_x_floor": True,  # 2.0x
    }
