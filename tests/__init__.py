"""pytest-alchemy's own test suite (a package, so its modules import ``tests.helpers``)."""
