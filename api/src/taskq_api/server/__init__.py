"""The API server process: settings, logging, the database pool and uvicorn."""
