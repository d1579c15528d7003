"""--metrics: Prometheus's text format at /metrics (parsed by prometheus_client's own parser),
counters that survive a worker's death, /healthz and /readyz on the metrics and stats
addresses, and --shutdown-delay (not ready at once, serving on, then the graceful drain)."""
import os
import signal
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from helpers import fifo_send, get, wait_log, wait_until

APP = "metricsapp"


def scrape(addr):
    """/metrics as {(sample name, frozenset of labels): value}, and the families' types."""
    r = get(addr, "/metrics")
    assert r.status == 200, r
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    samples, types = {}, {}
    for family in text_string_to_metric_families(r.body.decode("utf-8")):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"sample {key} twice"
            samples[key] = s.value
    return samples, types


def val(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def metric(addr, name, **labels):
    return val(scrape(addr)[0], name, **labels)


def start(apus, *args, processes=1, **kw):
    mport = free_port()
    srv = apus(APP, "--metrics", f"127.0.0.1:{mport}", "--processes", str(processes), *args, **kw)
    return srv, mport


def in_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:  # noqa: BLE001 (reported by the test)
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_text_format_counts_and_histogram(apus):
    srv, m = start(apus, processes=2)
    before, types = scrape(m)
    assert types["apus_requests"] == "counter"
    assert types["apus_request_duration_seconds"] == "histogram"
    for gauge in ("apus_requests_in_flight", "apus_workers", "apus_connections_open", "apus_ready", "apus_generation"):
        assert types[gauge] == "gauge", gauge
    for counter in ("apus_reloads", "apus_harakiri", "apus_worker_respawns", "apus_exceptions", "apus_response_body_bytes"):
        assert types[counter] == "counter", counter

    bodies = 0
    for path, status in [("/", 200)] * 5 + [("/status/404", 404)] * 3 + [("/status/500", 500)] * 2 + [("/sleep/0.3", 200)]:
        r = srv.get(path)
        assert r.status == status
        bodies += len(r.body)
    assert srv.get("/boom").status == 500

    def diff(s, name, **labels):
        return val(s, name, **labels) - val(before, name, **labels)

    # Counted after the answer is sent: wait for the last one.
    after = wait_until(lambda: (lambda s: s if diff(s, "apus_request_duration_seconds_count") == 12 else None)(scrape(m)[0]),
                       10, what="12 requests in the histogram")
    assert diff(after, "apus_requests_total", status_class="2xx") == 6
    assert diff(after, "apus_requests_total", status_class="4xx") == 3
    assert diff(after, "apus_requests_total", status_class="5xx") == 3
    assert diff(after, "apus_requests_total", status_class="1xx") == 0
    assert diff(after, "apus_requests_total", status_class="3xx") == 0
    assert diff(after, "apus_exceptions_total") == 1
    assert diff(after, "apus_response_body_bytes_total") >= bodies

    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                      if k[0] == "apus_request_duration_seconds_bucket"))
    assert buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"buckets not cumulative: {buckets}"
    assert buckets[-1][1] == val(after, "apus_request_duration_seconds_count")
    # The 0.3 s request is above 0.25 and within 0.5.
    le = dict(buckets)
    assert le[0.5] - le[0.25] >= 1
    assert diff(after, "apus_request_duration_seconds_sum") >= 0.3
    assert val(after, "apus_workers", state="ready") == 2
    for state in ("starting", "recycling", "retiring"):
        assert val(after, "apus_workers", state=state) == 0
    assert val(after, "apus_ready") == 1
    assert val(after, "apus_generation") == 1
    assert val(after, "apus_requests_in_flight") == 0
    rss = [v for k, v in after.items() if k[0] == "apus_worker_resident_memory_bytes"]
    assert len(rss) == 2 and all(v > 1_000_000 for v in rss)


def test_counters_survive_a_killed_worker(apus):
    srv, m = start(apus)
    for _ in range(4):
        assert srv.get("/").status == 200
    assert srv.get("/status/404").status == 404
    ok = wait_until(lambda: (lambda v: v if v >= 5 else None)(metric(m, "apus_requests_total", status_class="2xx")),
                    10, what="5 2xx answers")
    assert metric(m, "apus_worker_respawns_total") == 0
    [worker] = srv.workers()
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: metric(m, "apus_worker_respawns_total") == 1, 10, what="a respawn")
    wait_until(lambda: metric(m, "apus_workers", state="ready") == 1 and srv.workers() != [worker], 30, what="a new ready worker")
    s, _ = scrape(m)
    # The new worker zeroed the slot: the dead one's answers are in the master's totals.
    assert val(s, "apus_requests_total", status_class="2xx") == ok
    assert val(s, "apus_requests_total", status_class="4xx") == 1
    assert val(s, "apus_request_duration_seconds_count") == ok + 1
    assert srv.get("/").status == 200
    wait_until(lambda: metric(m, "apus_requests_total", status_class="2xx") == ok + 1, 10, what="one more 2xx")


def test_chain_reload_counted(apus, tmp_path):
    fifo = tmp_path / "master.fifo"
    srv, m = start(apus, "--master-fifo", str(fifo), processes=2)
    assert metric(m, "apus_reloads_total", method="chain", outcome="done") == 0
    for _ in range(6):
        assert srv.get("/").status == 200
    ok = wait_until(lambda: (lambda v: v if v >= 7 else None)(metric(m, "apus_requests_total", status_class="2xx")),
                    10, what="7 2xx answers")
    fifo_send(fifo, "c")
    wait_until(lambda: metric(m, "apus_reloads_total", method="chain", outcome="done") == 1, 60, what="chain reload done")
    wait_until(lambda: metric(m, "apus_workers", state="retiring") == 0 and len(srv.workers()) == 2, 30,
               what="the old workers gone")
    s, _ = scrape(m)
    # Both old workers exited: their answers stay counted.
    assert val(s, "apus_requests_total", status_class="2xx") == ok
    assert val(s, "apus_worker_respawns_total") == 0
    assert val(s, "apus_generation") == 2
    for method in ("graceful", "workers", "upgrade"):
        for outcome in ("done", "failed"):
            assert val(s, "apus_reloads_total", method=method, outcome=outcome) == 0
    assert val(s, "apus_reloads_total", method="chain", outcome="failed") == 0


def test_harakiri_counted(apus):
    srv, m = start(apus, "--harakiri", "1", "--reload-mercy", "3")
    t, out = in_thread(lambda: get(srv.port, "/sleep/3", timeout=15))
    wait_until(lambda: metric(m, "apus_harakiri_total") == 1, 20, what="a harakiri")
    t.join(15)
    wait_until(lambda: metric(m, "apus_workers", state="ready") == 1, 30, what="the replacement ready")
    assert srv.get("/").status == 200


def test_in_flight_and_busy_workers(apus):
    srv, m = start(apus, "--threads", "2")
    t, out = in_thread(lambda: get(srv.port, "/sleep/2", timeout=15))
    wait_until(lambda: metric(m, "apus_requests_in_flight") == 1, 5, what="one request in flight")
    assert metric(m, "apus_workers_busy") == 1
    t.join(15)
    assert out["value"].status == 200
    wait_until(lambda: metric(m, "apus_requests_in_flight") == 0, 5, what="no request in flight")
    assert metric(m, "apus_workers_busy") == 0


def test_connections_open(apus):
    srv, m = start(apus)
    wait_until(lambda: metric(m, "apus_connections_open") == 0, 5, what="no connection")
    with srv.conn() as c:
        assert c.request("GET", "/", {"Host": "x"}).status == 200
        wait_until(lambda: metric(m, "apus_connections_open") == 1, 5, what="one connection open")
    wait_until(lambda: metric(m, "apus_connections_open") == 0, 5, what="the connection closed")


def test_metrics_over_a_unix_socket(apus, tmp_path):
    path = tmp_path / "metrics.sock"
    srv = apus(APP, "--metrics", f"unix:{path}", "--processes", "1")
    assert srv.get("/").status == 200
    wait_until(lambda: metric(f"unix:{path}", "apus_requests_total", status_class="2xx") >= 2, 10, what="2xx over unix")
    assert get(f"unix:{path}", "/healthz").status == 200
    assert get(f"unix:{path}", "/readyz").status == 200
    assert get(f"unix:{path}", "/nothing").status == 404


def test_probes_on_metrics_and_stats_addresses(apus):
    sport = free_port()
    srv, m = start(apus, "--stats", f"127.0.0.1:{sport}", "--stats-http")
    for addr in (m, sport):
        r = get(addr, "/healthz")
        assert (r.status, r.body) == (200, b"ok\n")
        r = get(addr, "/readyz")
        assert (r.status, r.body) == (200, b"ready\n")


def test_not_ready_while_the_app_imports(apus):
    srv, m = start(apus, env={"IMPORT_SLEEP": "3"}, wait=False)
    r = wait_until(lambda: _try(lambda: get(m, "/readyz")), 10, what="the metrics address")
    assert r.status == 503 and b"no worker is ready" in r.body, r
    assert get(m, "/healthz").status == 200
    assert metric(m, "apus_ready") == 0
    wait_until(lambda: get(m, "/readyz").status == 200, 30, what="ready after the import")
    assert srv.get("/").status == 200
    assert metric(m, "apus_ready") == 1


def _try(fn):
    try:
        return fn()
    except OSError:
        return None


def test_shutdown_delay_serves_then_drains(apus):
    srv, m = start(apus, "--shutdown-delay", "2")
    srv.signal(signal.SIGTERM)
    t0 = time.monotonic()
    wait_until(lambda: get(m, "/readyz").status == 503, 1, what="not ready at once")
    assert b"shutting down" in get(m, "/readyz").body
    wait_log(srv.log, r"SIGTERM: not ready from now on .*--shutdown-delay", 5)
    served = 0
    while time.monotonic() - t0 < 1.5:
        assert srv.get("/").status == 200
        served += 1
        time.sleep(0.1)
    assert served >= 5
    assert srv.wait_exit(20) == 0, srv.describe()
    assert time.monotonic() - t0 >= 1.9
    wait_log(srv.log, r"--shutdown-delay passed: graceful shutdown", 1)


def test_second_sigterm_skips_the_delay(apus):
    srv, m = start(apus, "--shutdown-delay", "60")
    srv.signal(signal.SIGTERM)
    wait_until(lambda: get(m, "/readyz").status == 503, 1, what="not ready at once")
    assert srv.get("/").status == 200
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0, srv.describe()


def test_not_ready_during_the_drain(apus):
    srv, m = start(apus, "--threads", "2")
    assert get(m, "/readyz").status == 200
    t, out = in_thread(lambda: get(srv.port, "/sleep/3", timeout=15))
    wait_until(lambda: metric(m, "apus_requests_in_flight") == 1, 5, what="the slow request in the app")
    srv.signal(signal.SIGTERM)
    wait_until(lambda: get(m, "/readyz").status == 503, 1, what="not ready during the drain")
    assert metric(m, "apus_ready") == 0
    t.join(15)
    assert out["value"].status == 200
    assert srv.wait_exit(15) == 0, srv.describe()
