"""`span serve`: the app under uvicorn, with the header protections, until SIGTERM/SIGINT; then
drain (readiness 503 first, the listener closes after drain_delay_s, in-flight work finishes)."""
from __future__ import annotations

import logging
import threading

import uvicorn

from service.admission import Service
from service.app import create_app
from service.protections import header_timeout_protocol
from service.settings import get_settings

log = logging.getLogger("span.app")


def serve(host: str, port: int, log_level: str = "info") -> None:
    """Run the app under uvicorn until SIGTERM/SIGINT, then drain: readiness turns 503 at once,
    the listener closes after `drain_delay_s`, in-flight requests get `shutdown_grace_s` to finish."""
    settings = get_settings()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_level=log_level,
        http=header_timeout_protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    DrainingServer(config, application.state.service, settings.drain_delay_s).run()


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal starts draining before the listener closes."""

    def __init__(self, config: uvicorn.Config, service: Service, drain_delay_s: float):
        super().__init__(config)
        self.service = service
        self.drain_delay_s = drain_delay_s

    def handle_exit(self, sig, frame) -> None:
        first = not self.service.draining
        self.service.begin_drain()
        if first and self.drain_delay_s > 0:
            log.info("signal %s: the listener closes in %.1f s", sig, self.drain_delay_s)
            threading.Timer(self.drain_delay_s, super().handle_exit, (sig, frame)).start()
            return
        super().handle_exit(sig, frame)  # a second signal, or no delay: stop now
