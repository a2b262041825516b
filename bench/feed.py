"""Event delivery at fleet scale: server CPU per delivered event, commit-to-watcher delay, and the
replicas a 5,000-node cluster needs, at 100, 500 and 2,000 watchers of one server process
(``bench.feed_scale``, the watchers in a process of their own)."""

from __future__ import annotations

from typing import Any

from bench import database, feed_scale

WATCHERS = (100, 500, 2000)
QUICK_WATCHERS = (1, 100, 500)


async def measure(base: str | None, quick: bool) -> dict[str, Any]:
    """Return, for each watcher count N, ``median_ms_N``, ``p99_ms_N``, ``cpu_us_N`` (server CPU
    per delivery) and ``per_cpu_second_N``; the replicas from the largest N; and a summary. The
    feed has a database of its own (its ranges could overlap ours)."""
    counts, writes = (QUICK_WATCHERS, 20) if quick else (WATCHERS, 200)
    figures: dict[str, Any] = {"watchers": list(counts), "writes": writes}
    lines = []
    try:
        async with database.fresh_database(base) as url:
            for count in counts:
                row = await feed_scale.delivery(url, count, writes)
                figures[f"median_ms_{count}"] = row["p50_ms"]
                figures[f"p99_ms_{count}"] = row["p99_ms"]
                figures[f"cpu_us_{count}"] = row["cpu_us_per_delivery"]
                figures[f"per_cpu_second_{count}"] = row["deliveries_per_cpu_second"]
                lines.append(
                    f"{count} watchers: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
                    f"{row['cpu_us_per_delivery']:.1f} us CPU per delivery"
                )
    except Exception as exc:  # the other figures stand; this one says why it is missing
        return {"status": "failed", "summary": f"failed: {exc!r}"}
    cluster = feed_scale.replicas(figures[f"per_cpu_second_{counts[-1]}"])
    figures["cluster"] = cluster
    lines.append(
        f"{feed_scale.CLUSTER_NODES} nodes at {feed_scale.CLUSTER_CHANGES_PER_SECOND} changes/s: "
        f"{cluster['server_cores']} server cores"
    )
    figures["summary"] = "; ".join(lines)
    return figures
