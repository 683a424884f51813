"""A small shop API in the shape of the FastAPI project templates: FastAPI and SQLModel."""
