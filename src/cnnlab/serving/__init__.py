"""The web page and JSON API of ``cnnlab serve`` (FastAPI, uvicorn)."""
