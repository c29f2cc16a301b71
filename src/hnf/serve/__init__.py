"""The REST service and its web page (``hnf serve``): see :mod:`hnf.serve.app`."""

from __future__ import annotations

from hnf.serve.app import ServeSettings, create_app, sniff_image_type

__all__ = ["ServeSettings", "create_app", "sniff_image_type", "run_server"]


def run_server(checkpoint: str, host: str = "127.0.0.1", port: int = 8000,
               settings: ServeSettings | None = None, log_level: str = "info", device: str = "auto") -> None:
    """Load ``checkpoint`` once onto ``device`` (auto, cpu, cuda, cuda:N) and serve it with uvicorn
    until interrupted."""
    import uvicorn

    from hnf.predict import Predictor

    app = create_app(Predictor.from_checkpoint(checkpoint, device=device), settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
