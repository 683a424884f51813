"""A small shop API: FastAPI on top of SQLAlchemy 2.0's asyncio extension."""
