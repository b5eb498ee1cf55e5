"""Who may call the service and what it leaves behind: API keys, per-client rate limits,
one structured log line per request, security headers. Each module is pure of the app and
tested alone; service/app.py wires them in."""
