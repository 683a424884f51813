"""A small lending library API: FastAPI, SQLAlchemy 2.0 asyncio, engine made at start-up."""
