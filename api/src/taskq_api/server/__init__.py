"""The API server process: settings, logging, the database pool, uvicorn and the gRPC server."""
