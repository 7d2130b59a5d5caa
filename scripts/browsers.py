#!/usr/bin/env python3
"""Simulate N open dashboards against a running tokenwatch: each keeps the
live feed (/live/stream, server-sent events) open and polls the overview
(/partials/overview, as the page does every 5 s, plus /api/v1/overview).
Stdlib only. Prints one JSON line of results when DURATION is over.

  scripts/browsers.py --url http://127.0.0.1:8080 --key KEY --browsers 50 --duration 30
"""
import argparse, asyncio, json, statistics, time, urllib.parse


async def request(host, port, path, key, stream=False):
    r, w = await asyncio.open_connection(host, port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Accept: {'text/event-stream' if stream else '*/*'}\r\nConnection: {'keep-alive' if stream else 'close'}\r\n\r\n".encode())
    await w.drain()
    status = int((await r.readline()).split()[1])
    while (await r.readline()) not in (b"\r\n", b""):
        pass
    return status, r, w


async def live(args, host, port, stats, stop):
    try:
        status, r, w = await request(host, port, "/live/stream", args.key, stream=True)
    except OSError:
        stats["errors"] += 1
        return
    if status != 200:
        stats["errors"] += 1
        return
    mine = {"stats": 0, "item": 0, "lagged": 0}
    event = None
    while time.monotonic() < stop:
        try:
            line = await asyncio.wait_for(r.readline(), timeout=max(0.1, stop - time.monotonic()))
        except asyncio.TimeoutError:
            break
        if not line:
            break
        line = line.decode(errors="replace").strip()
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event in mine:
            mine[event] += 1
            if event == "stats":
                s = json.loads(line[5:])
                stats["eps"].append(s["events_per_second"])
    w.close()
    stats["clients"].append(mine)


async def poll(args, host, port, stats, stop, offset):
    await asyncio.sleep(offset)
    while time.monotonic() < stop:
        for path in ("/partials/overview", "/api/v1/overview"):
            t = time.monotonic()
            try:
                status, r, w = await request(host, port, path, args.key)
                await r.read()
                w.close()
            except OSError:
                stats["errors"] += 1
                continue
            stats["latency_ms"].append((time.monotonic() - t) * 1000)
            if status != 200:
                stats["errors"] += 1
        await asyncio.sleep(5)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--browsers", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30)
    args = ap.parse_args()
    u = urllib.parse.urlparse(args.url)
    host, port = u.hostname, u.port
    for _ in range(600):  # wait for the dashboard
        try:
            _, r, w = await request(host, port, "/healthz", args.key)
            w.close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    stats = {"clients": [], "latency_ms": [], "errors": 0, "eps": []}
    stop = time.monotonic() + args.duration
    tasks = [live(args, host, port, stats, stop) for _ in range(args.browsers)]
    tasks += [poll(args, host, port, stats, stop, 5 * i / args.browsers) for i in range(args.browsers)]
    await asyncio.gather(*tasks)
    lat = sorted(stats["latency_ms"]) or [0]
    c = stats["clients"] or [{"stats": 0, "item": 0, "lagged": 0}]
    print(json.dumps({
        "browsers": args.browsers,
        "duration_s": args.duration,
        "live_connected": len(stats["clients"]),
        "stats_events_per_client_min": min(x["stats"] for x in c),
        "items_per_client_min": min(x["item"] for x in c),
        "items_per_client_max": max(x["item"] for x in c),
        "lagged_total": sum(x["lagged"] for x in c),
        "overview_requests": len(stats["latency_ms"]),
        "overview_p50_ms": round(statistics.median(lat), 1),
        "overview_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "overview_max_ms": round(lat[-1], 1),
        "max_events_per_second_seen": round(max(stats["eps"] or [0])),
        "errors": stats["errors"],
    }))


asyncio.run(main())
