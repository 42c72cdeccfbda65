"""The daemon's HTTP app and the operator's console (Starlette, served by uvicorn).

app.py      build_app: /healthz, /metrics, the console's routes, behind guard.Guard
guard.py    bearer token (and its cookie), loopback Host names, JSON-only same-origin writes
api.py      the JSON API (a contract: /api/events, /api/events/{id}, /api/cameras, verdicts)
pages.py    server-rendered pages (templates/) and media: snapshot, heat-map, clip as MP4, live frame
media.py    heat-map drawing (OpenCV), Matroska → MP4 remux (PyAV), luma JPEG
charts.py   inline SVG timelines and sparklines
console.py  the console's shared state: event store, media directory, caches
context.py  ConsoleContext: what the console reads (store, media, the daemon's live view)
server.py   WebServer: uvicorn on its own thread, on a socket bound up front
"""
