"""A small todo-list API: FastAPI on top of SQLAlchemy 2.0 (sync)."""
