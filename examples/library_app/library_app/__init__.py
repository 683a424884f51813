"""A small library of articles: users, tokens, articles, tags, comments and search."""
